//! Decode-shaped matvec timings: the 262,144 × 640 Q8_0 LM head and the body's shapes (small
//! ones that stay in cache, large ones read from memory),
//! m = 1, best of N runs (min is the figure to trust on a shared machine).
//! `cargo run --release -p smolt-quant --example headbench`
//! `-- --rows`: the same shapes at a few x rows (speculative drafts, forced runs, a served
//! batch): the decode layout's multi-row kernels against `matmul_q` (its panels from 4 rows).
//! `-- --prefill`: the body's shapes at m = 512.

use std::time::Instant;

use smolt_quant::{matmul_q, quantize_row, DecodePacked, GgmlType, PanelPacked, QMatrix};

fn main() {
    // On a pool thread, as the commands run: from outside, each product costs two thread
    // switches that would be counted as kernel time.
    rayon::scope(|_| run());
}

fn run() {
    if std::env::args().any(|a| a == "--prefill") {
        return prefill();
    }
    if std::env::args().any(|a| a == "--cold") {
        return cold();
    }
    let rows = std::env::args().any(|a| a == "--rows");
    let shapes = [
        (GgmlType::Q8_0, 262_144usize, 640usize),
        (GgmlType::Q8_0, 8192, 640),
        (GgmlType::Q8_0, 1536, 640),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q5_0, 131072, 640),
        (GgmlType::Q4K, 640, 2048),
        (GgmlType::Q4K, 65536, 1024),
        (GgmlType::Q6K, 640, 2048),
        (GgmlType::Q6K, 32768, 2048),
    ];
    let mut seed = 7u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    for (ty, n, k) in shapes {
        let rb = k / ty.block_size() * ty.type_size();
        let row: Vec<f32> = (0..k).map(|_| rnd()).collect();
        let mut w = vec![0u8; n * rb];
        for (i, d) in w.chunks_mut(rb).enumerate() {
            let r: Vec<f32> = row.iter().map(|v| v * (1.0 + (i % 7) as f32)).collect();
            quantize_row(ty, &r, d).unwrap();
        }
        let qm = QMatrix::new(ty, n, k, &w).unwrap();
        if rows {
            let packed = DecodePacked::pack(&qm);
            let panels = PanelPacked::pack(&qm);
            let reps = (400_000_000 / w.len()).clamp(3, 500);
            for m in [1usize, 2, 3, 4, 6, 8, 9, 12, 16] {
                let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
                let mut y = vec![0f32; m * n];
                let file = best_of(reps, || matmul_q(&qm, &x, m, &mut y).unwrap());
                let dec = packed
                    .as_ref()
                    .map(|p| best_of(reps, || p.matmul(&x, m, &mut y).unwrap()));
                let kept = panels
                    .as_ref()
                    .filter(|_| m >= PanelPacked::MIN_ROWS)
                    .map(|p| best_of(reps, || p.matmul(&x, m, &mut y).unwrap()));
                println!(
                    "{} {n}x{k} m={m}: matmul_q {:.3} ms{}{}",
                    ty.name(),
                    file * 1e3,
                    dec.map(|d| format!(", decode layout {:.3} ms", d * 1e3))
                        .unwrap_or_default(),
                    kept.map(|d| format!(", kept panels {:.3} ms", d * 1e3))
                        .unwrap_or_default()
                );
            }
            continue;
        }
        let x: Vec<f32> = (0..k).map(|_| rnd()).collect();
        let mut y = vec![0f32; n];
        let reps = (2_000_000_000 / w.len()).clamp(5, 2000);
        let report = |layout: &str, best: f64| {
            println!(
                "{} {n}x{k} m=1{layout}: best {:.3} ms, {:.1} GB/s of weights",
                ty.name(),
                best * 1e3,
                w.len() as f64 / best / 1e9
            )
        };
        report("", best_of(reps, || matmul_q(&qm, &x, 1, &mut y).unwrap()));
        // The decode layout (what a decode step uses for Q5_0 and Q8_0), where there is one.
        if let Some(p) = DecodePacked::pack(&qm) {
            let best = best_of(reps, || p.matmul(&x, 1, &mut y).unwrap());
            report(", decode layout", best);
        }
    }
}

/// The shortest of `reps` timed calls, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// The body's matmuls at m = 512 (one prefill layer's shapes), best of N, in GFLOP/s.
fn prefill() {
    let shapes = [
        (GgmlType::Q5_0, 1024usize, 640usize),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q8_0, 256, 640),
        (GgmlType::Q8_0, 2048, 640),
        (GgmlType::Q4K, 640, 1024),
        (GgmlType::Q6K, 640, 2048),
    ];
    let m = 512;
    let mut seed = 9u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut total = 0.0;
    for (ty, n, k) in shapes {
        let rb = k / ty.block_size() * ty.type_size();
        let mut w = vec![0u8; n * rb];
        for d in w.chunks_mut(rb) {
            let r: Vec<f32> = (0..k).map(|_| rnd()).collect();
            quantize_row(ty, &r, d).unwrap();
        }
        let qm = QMatrix::new(ty, n, k, &w).unwrap();
        let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let mut y = vec![0f32; m * n];
        let best = best_of(15, || matmul_q(&qm, &x, m, &mut y).unwrap());
        total += best;
        println!(
            "{} {n}x{k} m={m}: best {:.3} ms, {:.1} GFLOP/s",
            ty.name(),
            best * 1e3,
            2.0 * (m * n * k) as f64 / best / 1e9
        );
    }
    println!("sum {:.3} ms", total * 1e3);
}

/// Kept panels at 16 x rows, hot (one matrix again and again) against cold (64 copies in turn,
/// as a model's layers come one after another).
fn cold() {
    let (ty, n, k, m) = (GgmlType::Q5_0, 2048usize, 640usize, 16usize);
    let rb = k / ty.block_size() * ty.type_size();
    let mut seed = 3u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut w = vec![0u8; n * rb];
    for d in w.chunks_mut(rb) {
        let r: Vec<f32> = (0..k).map(|_| rnd()).collect();
        quantize_row(ty, &r, d).unwrap();
    }
    let qm = QMatrix::new(ty, n, k, &w).unwrap();
    let ncopies: usize = std::env::var("COPIES").map_or(64, |s| s.parse().unwrap());
    let copies: Vec<PanelPacked> = (0..ncopies)
        .map(|_| PanelPacked::pack(&qm).unwrap())
        .collect();
    let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let mut y = vec![0f32; m * n];
    let hot = best_of(200, || copies[0].matmul(&x, m, &mut y).unwrap());
    let t = Instant::now();
    for _ in 0..4 {
        for c in &copies {
            c.matmul(&x, m, &mut y).unwrap();
        }
    }
    let cold = t.elapsed().as_secs_f64() / (4 * copies.len()) as f64;
    println!(
        "Q5_0 {n}x{k} m={m} kept panels: hot {:.3} ms, cold {:.3} ms",
        hot * 1e3,
        cold * 1e3
    );
}
