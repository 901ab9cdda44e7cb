//! The inner product every attention score goes through, at D = 256:
//! `cargo run -p smolt-kernels --example dotbench` (`SMOLT_SIMD=scalar` for the baseline path).
fn main() {
    let a: Vec<f32> = (0..256).map(|i| i as f32 * 0.001).collect();
    let b = a.clone();
    let mut best = f64::INFINITY;
    for _ in 0..2000 {
        let t = std::time::Instant::now();
        let mut s = 0.0;
        for _ in 0..1000 {
            s += smolt_kernels::float::__bench_dot(
                std::hint::black_box(&a),
                std::hint::black_box(&b),
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(s);
    }
    println!("dot256: {:.1} ns", best / 1000.0 * 1e9);
}
