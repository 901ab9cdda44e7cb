//! Rough timings of the kernels at Gemma 3 270M shapes:
//! `cargo run -p smolt-kernels --example bench [filter]` (`SMOLT_SIMD=scalar` for the baseline path).

use smolt_kernels::*;
use std::time::Instant;

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Bench {
    filter: Option<String>,
}

impl Bench {
    /// The minimum over repetitions: the development machine is shared, and the fastest run
    /// is the one nobody preempted.
    fn time(&self, name: &str, flops: f64, reps: usize, mut f: impl FnMut()) {
        if self.filter.as_deref().is_some_and(|o| !name.contains(o)) {
            return;
        }
        f();
        let mut s = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            f();
            s = s.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<44} {:>10.3} ms {:>7.1} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }
}

fn main() {
    let b = Bench {
        filter: std::env::args().nth(1),
    };
    let (nq, nkv, d) = (4, 1, 256);
    let scale = 1.0 / 16.0;
    for (s, window) in [(512, None), (4096, None), (4096, Some(512))] {
        let q = fill(nq * d, 1);
        let k = fill(s * nkv * d, 2);
        let v = fill(s * nkv * d, 3);
        let mut out = vec![0.0; nq * d];
        let keys = window.unwrap_or(s).min(s) as f64;
        let name = format!("attn decode S={s} window={window:?}");
        b.time(&name, 4.0 * nq as f64 * keys * d as f64, 100, || {
            attention_forward(
                &q,
                &k,
                &v,
                &[s - 1],
                nq,
                nkv,
                d,
                window,
                scale,
                &mut out,
                None,
            )
        });
    }
    let t = 512;
    let pos: Vec<usize> = (0..t).collect();
    let q = fill(t * nq * d, 4);
    let k = fill(t * nkv * d, 5);
    let v = fill(t * nkv * d, 6);
    let mut out = vec![0.0; q.len()];
    let mut lse = vec![0.0; t * nq];
    let causal = 4.0 * nq as f64 * (t * (t + 1) / 2) as f64 * d as f64;
    b.time("attn prefill T=512", causal, 10, || {
        attention_forward(
            &q,
            &k,
            &v,
            &pos,
            nq,
            nkv,
            d,
            None,
            scale,
            &mut out,
            Some(&mut lse),
        )
    });
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    b.time("attn backward T=512 (5 products)", causal * 2.5, 5, || {
        attention_backward(
            &out, &q, &k, &v, &out, &lse, &pos, nq, nkv, d, None, scale, &mut dq, &mut dk, &mut dv,
        )
    });

    let x = fill(t * 2048, 9);
    let w = fill(640 * 2048, 10);
    let mut y = vec![0.0; t * 640];
    b.time(
        "matmul_nt 512x2048 -> 640",
        2.0 * (t * 2048 * 640) as f64,
        10,
        || matmul_nt(&x, &w, t, 2048, 640, &mut y, false),
    );
    let (a64, b64) = (fill(64 * 256, 1), fill(64 * 256, 2));
    let mut c64 = vec![0.0; 64 * 64];
    b.time(
        "matmul_nt 64x256 -> 64 (a score tile)",
        2.0 * 64.0 * 64.0 * 256.0,
        1000,
        || matmul_nt(&a64, &b64, 64, 256, 64, &mut c64, false),
    );
    let g = fill(t * 2048, 11);
    let mut o = vec![0.0; t * 2048];
    b.time("geglu fwd 512x2048", 0.0, 10, || {
        geglu_forward(&g, &x, &mut o)
    });
    let (mut dg, mut du) = (vec![0.0; t * 2048], vec![0.0; t * 2048]);
    b.time("geglu bwd 512x2048", 0.0, 10, || {
        geglu_backward(&o, &g, &x, &mut dg, &mut du)
    });
    let xn = fill(t * 640, 12);
    let wn = fill(640, 13);
    let mut yn = vec![0.0; t * 640];
    let mut rstd = vec![0.0; t];
    b.time("rms_norm fwd 512x640", 0.0, 10, || {
        rms_norm_forward(&xn, &wn, 1e-6, 640, &mut yn, Some(&mut rstd))
    });

    let (n, c, vocab) = (128, 640, 262_144);
    let h = fill(n * c, 7);
    let e = fill(8192 * c, 8);
    let targets: Vec<u32> = (0..n as u32).map(|i| i * 2003).collect();
    let rows = |v0: usize, v1: usize, out: &mut [f32]| {
        for (r, o) in (v0..v1).zip(out.chunks_mut(c)) {
            o.copy_from_slice(&e[(r % 8192) * c..][..c]);
        }
    };
    let mut dh = vec![0.0; n * c];
    b.time(
        "lm head + CE N=128 V=262144 chunk=4096",
        4.0 * (n * c * vocab) as f64,
        1,
        || {
            linear_cross_entropy(&h, &targets, c, vocab, 4096, rows, Some(&mut dh), 1.0);
        },
    );
}
