//! The entry points of a bf16 product: [`gemm_bf16`] and [`gemm_bf16_strided`] pick the AMX
//! tiles, AVX-512 BF16 or the f32 fallback ([`gemm_fallback`], the reference arithmetic), and
//! [`accelerated`] / [`amx_enabled`] tell a caller which it will get.

use super::operands::{BfRows, PackedB};
use super::{amx, dot};
use crate::matmul::gemm_strided;

/// Whether products will run on AMX tiles (CPU, kernel and `SMOLT_AMX` permitting).
pub fn amx_enabled() -> bool {
    amx::available()
}

/// Whether products will run on bf16 hardware, AMX tiles or AVX-512 BF16 (`SMOLT_AMX` and
/// `SMOLT_BF16_DOT` permitting), rather than the f32 fallback: the bf16 base then beats
/// f32 gemm over the decoded weights. Both hardware paths sum each column of `c` in the same
/// order whatever block of columns a call computes (the fallback's gemm may not).
pub fn accelerated() -> bool {
    amx::available() || dot::available()
}

/// `iters` rounds of four AMX bf16 tile products on tiles of ones (no memory traffic in the
/// loop): the tile unit's peak, for `limits`. Returns the sum of the four 16 × 16 C tiles
/// (= 4 · 256 · 32 · iters, exact for iters ≤ 2¹⁹). Panics without AMX.
pub fn amx_peak_loop(iters: u64) -> f32 {
    assert!(amx::available(), "no AMX-BF16 here");
    // SAFETY: `available()` means AMX-BF16 exists and the tile state is granted.
    unsafe { amx::peak_loop(iters) }
}

/// `c (m, n) (+)= a (m, k) · b (k, n)` in bf16 with f32 accumulation; `accumulate` adds to
/// `c` instead of overwriting it. `parallel` lets it split the columns over rayon's pool.
pub fn gemm_bf16(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.m, a.k, b.n);
    assert_eq!(b.k, k, "a is (m, {k}) but b is ({}, n)", b.k);
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    if m == 0 || n == 0 {
        return;
    }
    if amx::available() && k > 0 {
        amx::gemm(a, b, c, n, accumulate, parallel);
    } else if dot::available() && k > 0 {
        dot::gemm(a, b, c, n, accumulate, parallel);
    } else {
        gemm_fallback(a, b, c, accumulate, parallel);
    }
}

/// [`gemm_bf16`] into the first `n` columns of a wider `c`, whose rows are `ldc ≥ n` apart
/// (`c.len() ≥ (m − 1)·ldc + n`): a column block of a product computed piece by piece. Each
/// element is computed exactly as by `gemm_bf16` on the whole (a column block of `c` depends
/// only on the same columns of `b`).
pub fn gemm_bf16_strided(
    a: &BfRows,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.m, a.k, b.n);
    assert_eq!(b.k, k, "a is (m, {k}) but b is ({}, n)", b.k);
    assert!(ldc >= n, "ldc {ldc} < n {n}");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= (m - 1) * ldc + n,
        "c is not (m, n) at stride ldc"
    );
    if ldc == n {
        return gemm_bf16(a, b, &mut c[..m * n], accumulate, parallel);
    }
    if amx::available() && k > 0 {
        amx::gemm(a, b, c, ldc, accumulate, parallel);
    } else if dot::available() && k > 0 {
        dot::gemm(a, b, c, ldc, accumulate, parallel);
    } else {
        let mut t: Vec<f32> = if accumulate {
            (0..m)
                .flat_map(|i| c[i * ldc..][..n].iter().copied())
                .collect()
        } else {
            vec![0.0; m * n]
        };
        gemm_fallback(a, b, &mut t, accumulate, parallel);
        for (i, row) in t.chunks(n).enumerate() {
            c[i * ldc..][..n].copy_from_slice(row);
        }
    }
}

/// The reference arithmetic: the bf16 operands widened to f32, f32 gemm.
pub fn gemm_fallback(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.m, a.k, b.n);
    let af: Vec<f32> = (0..m).flat_map(|i| a.row_f32(i)).collect();
    let bf = b.unpack();
    gemm_strided(parallel, m, n, k, c, accumulate, &af, (k, 1), &bf, (n, 1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::randn;

    /// The bf16 product summed in f64: what both paths approximate.
    fn reference(a: &BfRows, b: &PackedB) -> Vec<f64> {
        let (m, k, n) = (a.m, a.k, b.n);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            let ar = a.row_f32(i);
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| ar[p] as f64 * b.get(p, j) as f64).sum();
            }
        }
        c
    }

    /// A product computed in column blocks into a wider `c` equals the whole product bit for
    /// bit (AMX where present, else the fallback).
    #[test]
    fn strided_column_blocks_equal_the_whole_product() {
        let (m, k, n) = (77, 96, 200);
        let a = BfRows::from_f32(&randn(m * k, 1), m, k, 1.0);
        let w = randn(n * k, 2);
        let c0 = randn(m * n, 3);
        for acc in [false, true] {
            let mut whole = c0.clone();
            gemm_bf16(
                &a,
                &PackedB::from_rows_transposed(&w, n, k),
                &mut whole,
                acc,
                false,
            );
            let mut blocks = c0.clone();
            for j0 in (0..n).step_by(64) {
                let j1 = (j0 + 64).min(n);
                let b = PackedB::from_rows_transposed(&w[j0 * k..j1 * k], j1 - j0, k);
                gemm_bf16_strided(&a, &b, &mut blocks[j0..], n, acc, false);
            }
            assert!(whole
                .iter()
                .zip(&blocks)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    /// Both paths (AMX where this CPU has it) against the f64 sum of the same bf16 values,
    /// overwrite and accumulate, with row counts that leave partial 32-row blocks.
    #[test]
    fn products_match_the_f64_reference() {
        eprintln!("AMX: {}, AVX-512 BF16: {}", amx_enabled(), dot::available());
        for &(m, k, n) in &[
            (1, 32, 32),
            (17, 64, 32),
            (32, 640, 64),
            (77, 256, 96),
            (330, 96, 128),
            (5, 7, 3),
            (40, 50, 45),
            // Several L2 row groups (128 and 256 rows at these k), the last one ragged.
            (200, 2048, 96),
            (409, 1024, 64),
        ] {
            let x = randn(m * k, 1);
            let w = randn(n * k, 2);
            let a = BfRows::from_f32(&x, m, k, 0.5);
            let b = PackedB::from_rows_transposed(&w, n, k);
            let want = reference(&a, &b);
            let c0 = randn(m * n, 3);
            for par in [false, true] {
                for (acc, base) in [(false, vec![0.0; m * n]), (true, c0.clone())] {
                    let mut got = if acc { c0.clone() } else { vec![7.0; m * n] };
                    gemm_bf16(&a, &b, &mut got, acc, par);
                    let mut fb = if acc { c0.clone() } else { vec![7.0; m * n] };
                    gemm_fallback(&a, &b, &mut fb, acc, par);
                    // AVX-512 BF16 where the CPU has it, even where AMX takes the products.
                    let mut dt = if acc { c0.clone() } else { vec![7.0; m * n] };
                    if dot::available() {
                        dot::gemm(&a, &b, &mut dt, n, acc, par);
                    }
                    for i in 0..m * n {
                        let w = want[i] + base[i] as f64;
                        let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                        assert!(
                            (got[i] as f64 - w).abs() < tol,
                            "({m},{k},{n}) acc {acc} par {par} [{i}]: {} vs {w}",
                            got[i]
                        );
                        assert!((fb[i] as f64 - w).abs() < tol, "fallback [{i}]");
                        if dot::available() {
                            assert!((dt[i] as f64 - w).abs() < tol, "AVX-512 BF16 [{i}]");
                        }
                    }
                }
            }
        }
    }

    /// Speed on the training shapes: `cargo test --release -p smolt-kernels bf16_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bf16_speed() {
        for &(m, k, n) in &[
            // In L2 (and in L1 per k-block).
            (256, 512, 256),
            // A receipt's projections (450 tokens).
            (450, 640, 1024),
            (450, 640, 2048),
            (450, 2048, 640),
            (450, 640, 256),
            (450, 1024, 640),
            // The LM head's products at 512 scored tokens (a softmax chunk, a logits slice).
            (512, 2048, 640),
            (512, 640, 128),
            (340, 640, 256),
            (330, 640, 2048),
            (330, 2048, 640),
            (336, 640, 1024),
            (112, 640, 2048),
            (112, 2048, 640),
        ] {
            let a = BfRows::from_f32(&randn(m * k, 1), m, k, 1.0);
            let b = PackedB::from_rows_transposed(&randn(n * k, 2), n, k);
            let mut c = vec![0f32; m * n];
            for par in [true, false] {
                let mut dt = f64::INFINITY;
                let reps = (1 << 24) / (m * k * n) + 1;
                for _ in 0..30 {
                    let t0 = std::time::Instant::now();
                    for _ in 0..reps {
                        gemm_bf16(&a, &b, &mut c, true, par);
                    }
                    dt = dt.min(t0.elapsed().as_secs_f64() / reps as f64);
                }
                eprintln!(
                    "({m},{k},{n}) par {par}: {:.3} ms, {:.0} GFLOP/s",
                    dt * 1e3,
                    2.0 * (m * k * n) as f64 / dt * 1e-9
                );
            }
        }
    }
}
