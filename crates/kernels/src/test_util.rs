//! Shared test helpers: seeded random inputs, closeness checks and central finite differences.

use crate::Float;
use rand::{Rng, SeedableRng};

/// Standard normal samples (Box–Muller), reproducible from `seed`.
pub fn randn(n: usize, seed: u64) -> Vec<f32> {
    randn64(n, seed).into_iter().map(|x| x as f32).collect()
}

pub fn randn64(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = rng.gen_range(1e-12..1.0);
            let u2: f64 = rng.gen();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

pub fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `|got - want| <= tol * max(1, max|want|)` elementwise: a relative tolerance against the
/// scale of the whole tensor, so tiny entries do not demand impossible relative accuracy.
pub fn assert_close<F: Float>(got: &[F], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = g.to_f64();
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, want {w} (tol {tol} x scale {scale})"
        );
    }
}

/// Central-difference gradient of the scalar `f` with respect to every element of `x`.
pub fn fd_grad(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let fp = f(&x);
            x[i] = x0 - h;
            let fm = f(&x);
            x[i] = x0;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// `Σ w·y`: contracting an output with fixed random weights turns any kernel into a scalar loss
/// whose gradient with respect to the output is exactly `w`.
pub fn contract(y: &[f64], w: &[f64]) -> f64 {
    y.iter().zip(w).map(|(a, b)| a * b).sum()
}
