//! GFLOP/s of `matmul_q` for the model's weight types and shapes, scalar vs each SIMD path.
//!
//! `cargo run --release -p smolt-quant --example qbench [-- --quick]`
//! GFLOP counts 2·m·n·k (activation quantization included in the time).

use std::time::Instant;

use smolt_quant::{matmul_q_on, quantize_row, GgmlType, QMatrix, SimdPath};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let types = [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K];
    // (n = out features, k = in features)
    let shapes = [(640usize, 2048usize), (2048, 640), (640, 1024)];
    let ms = [1usize, 512];
    println!("threads: {}", rayon::current_num_threads());
    println!(
        "{:<6} {:>5}x{:<5} {:>4} {:>9} {:>9} {:>9}",
        "type", "n", "k", "m", "scalar", "avx2", "avx512"
    );
    let mut seed = 42u64;
    for ty in types {
        for &(n, k) in &shapes {
            if k % ty.block_size() != 0 {
                // K-quants need k % 256 == 0; the model stores such tensors as Q5_0/Q8_0.
                println!(
                    "{:<6} {:>5}x{:<5}  (k not a multiple of {})",
                    ty.name(),
                    n,
                    k,
                    ty.block_size()
                );
                continue;
            }
            let wf: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed) * 0.1).collect();
            let rb = k / ty.block_size() * ty.type_size();
            let mut w = vec![0u8; n * rb];
            for (s, d) in wf.chunks(k).zip(w.chunks_mut(rb)) {
                quantize_row(ty, s, d).unwrap();
            }
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            for &m in &ms {
                let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
                let mut y = vec![0f32; m * n];
                let flops = 2.0 * (m * n * k) as f64;
                let mut cols = Vec::new();
                for path in SimdPath::ALL {
                    if !path.available() {
                        cols.push("-".to_string());
                        continue;
                    }
                    // Aim for ~0.15 s per measurement (less with --quick).
                    let budget = if quick { 0.03 } else { 0.15 };
                    matmul_q_on(path, &qm, &x, m, &mut y).unwrap();
                    let t0 = Instant::now();
                    let mut iters = 0;
                    while t0.elapsed().as_secs_f64() < budget || iters < 2 {
                        matmul_q_on(path, &qm, &x, m, &mut y).unwrap();
                        iters += 1;
                    }
                    let dt = t0.elapsed().as_secs_f64() / iters as f64;
                    cols.push(format!("{:.1}", flops / dt / 1e9));
                }
                println!(
                    "{:<6} {:>5}x{:<5} {:>4} {:>9} {:>9} {:>9}",
                    ty.name(),
                    n,
                    k,
                    m,
                    cols[0],
                    cols[1],
                    cols[2]
                );
            }
        }
    }
}
