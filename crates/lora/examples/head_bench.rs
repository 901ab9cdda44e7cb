//! Time of the bf16 LM head + cross-entropy alone on the real model, lean against resident,
//! and whether they agree bit for bit.
//!
//! ```text
//! cargo run --release -p smolt-lora --example head_bench -- [n] [reps]
//! ```
//! `n` (default 128) answer positions; each call computes the loss and `dh`. Prints whether
//! the two agree bit for bit (and a digest of `dh`, to compare builds), the median ratio of
//! their process CPU times over back-to-back pairs (CPU-s / threads estimates the wall time on
//! idle cores, as in step_bench; pairs, so that load changes hit both), the best times, and
//! the lean head's own work on one thread: decoding the whole table, and decoding and packing
//! it as a call does.

use smolt_kernels::bf16::{pack_rows_into, pack_w_into, pack_w_q8_0_into, PackScratch, PackedB};
use smolt_lora::{BaseMatmul, Frozen, HeadCache};
use smolt_model::{Model, Precision};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (n, reps) = (arg(0, 128), arg(1, 10));
    let path =
        smolt_hub::model_for_tests().expect("the Gemma 3 270M model (SMOLT_MODEL, or fetched)");
    let model = Model::load(&path, Precision::Fast).expect("load the model (set SMOLT_MODEL)");
    let lean = Frozen::from_model_with_head(&model, BaseMatmul::Bf16, HeadCache::Lean);
    let resident = Frozen::from_model_with_head(&model, BaseMatmul::Bf16, HeadCache::Resident);
    let (vocab, d) = lean.head().shape();
    // Hidden states of the scale the final norm gives (|h| ≈ √d · O(1)), spread targets.
    let mut x = 7u64;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as f64 / (1u64 << 31) as f64
    };
    let h: Vec<f32> = (0..n * d).map(|_| (4.0 * next() - 2.0) as f32).collect();
    let targets: Vec<u32> = (0..n).map(|_| (next() * vocab as f64) as u32).collect();
    let call = |f: &Frozen<f32>| {
        let mut dh = vec![0f32; n * d];
        let loss = smolt_lora::linear_cross_entropy(f.head(), &h, &targets, 1.0, Some(&mut dh));
        (loss, dh)
    };
    let (l0, d0) = call(&resident);
    let (l1, d1) = call(&lean);
    let same =
        l0.to_bits() == l1.to_bits() && d0.iter().zip(&d1).all(|(a, b)| a.to_bits() == b.to_bits());
    // FNV-1a over dh's bits: to compare builds.
    let digest = d0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
        (h ^ v.to_bits() as u64).wrapping_mul(0x100_0000_01b3)
    });
    println!(
        "n {n}, vocab {vocab} x {d}, {} threads; loss {l0} (resident) vs {l1} (lean): bit-identical {same}; dh digest {digest:016x}",
        rayon::current_num_threads()
    );
    let mut best = [(f64::INFINITY, f64::INFINITY); 2];
    let mut ratios = Vec::new();
    for _ in 0..reps {
        let mut cpus = [0.0; 2];
        for (i, f) in [&resident, &lean].into_iter().enumerate() {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            std::hint::black_box(call(f));
            let (dt, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
            best[i] = (best[i].0.min(dt), best[i].1.min(cpu));
            cpus[i] = cpu;
        }
        ratios.push(cpus[1] / cpus[0]);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "lean / resident CPU time, median of {reps} back-to-back pairs: {:.3}",
        ratios[reps / 2]
    );
    // The lean head's own work, on one thread: decoding every chunk, and decoding and
    // packing it both ways.
    let head = lean.head();
    let chunk = smolt_lora::CHUNK;
    let mut rows = vec![0f32; chunk * d];
    let t_decode = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            for v0 in (0..vocab).step_by(chunk) {
                let v1 = (v0 + chunk).min(vocab);
                for r in (v0..v1).step_by(32) {
                    let r1 = (r + 32).min(v1);
                    head.rows_into(r, r1, &mut rows[..(r1 - r) * d]);
                }
            }
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let (mut fwd, mut bwd, mut scratch) =
        (PackedB::empty(), PackedB::empty(), PackScratch::default());
    let slice = 128;
    let mut time_pack = |with_bwd: bool| {
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                for v0 in (0..vocab).step_by(chunk) {
                    let len = (v0 + chunk).min(vocab) - v0;
                    bwd.reshape(len, d);
                    for r0 in (0..len).step_by(slice) {
                        let r1 = (r0 + slice).min(len);
                        let decode = |a: usize, b: usize, out: &mut [f32]| {
                            head.rows_into(v0 + r0 + a, v0 + r0 + b, out)
                        };
                        let b = with_bwd.then_some((&mut bwd, r0));
                        pack_rows_into(r1 - r0, d, decode, &mut fwd, b, &mut scratch);
                    }
                }
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let t_fwd = time_pack(false);
    let t_pack = time_pack(true);
    println!(
        "one thread, whole table in slices of {slice}: decode {:.1} ms, + forward packing {:.1} ms, + backward {:.1} ms",
        t_decode * 1e3,
        t_fwd * 1e3,
        t_pack * 1e3
    );
    // The backward packing alone (what the lean head does with int8 logits): through the
    // decoded rows, and straight from the Q8_0 bytes where the table is Q8_0.
    let time_bwd = |bwd: &mut PackedB, scratch: &mut PackScratch, direct: bool| {
        let q = model
            .output
            .as_ref()
            .unwrap_or(&model.token_embd)
            .quantized();
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                for v0 in (0..vocab).step_by(chunk) {
                    let v1 = (v0 + chunk).min(vocab);
                    let done = direct
                        && q.as_ref().is_some_and(|q| {
                            let rb = q.row_bytes();
                            q.ty == smolt_quant::GgmlType::Q8_0
                                && pack_w_q8_0_into(&q.data[v0 * rb..v1 * rb], v1 - v0, d, bwd)
                        });
                    if !done {
                        let decode = |a: usize, b: usize, out: &mut [f32]| {
                            head.rows_into(v0 + a, v0 + b, out)
                        };
                        pack_w_into(v1 - v0, d, decode, bwd, scratch);
                    }
                }
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let t_general = time_bwd(&mut bwd, &mut scratch, false);
    let t_direct = time_bwd(&mut bwd, &mut scratch, true);
    println!(
        "one thread, whole table, backward packing only: from decoded rows {:.1} ms, from the Q8_0 bytes {:.1} ms",
        t_general * 1e3,
        t_direct * 1e3
    );
    for (name, (dt, cpu)) in ["resident", "lean"].iter().zip(best) {
        println!(
            "{name:>8}: best {:.1} ms wall, {:.1} ms CPU ({:.1} ms / thread)",
            dt * 1e3,
            cpu * 1e3,
            cpu * 1e3 / rayon::current_num_threads() as f64
        );
    }
}
