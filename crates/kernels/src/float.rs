//! The element type the kernels are written over.
//!
//! Every kernel is generic over [`Float`] so that the very code the model runs in `f32` can be run
//! in `f64` by the finite-difference tests: a gradient check against a *reference* copy of a
//! kernel would only prove that two copies agree.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// `f32` (what the model runs) or `f64` (what the gradient checks run). Sealed: `gemm` only knows
/// these two real types.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Sum
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + sealed::Sealed
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_usize(x: usize) -> Self {
        Self::from_f64(x as f64)
    }
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    /// `tanh` for the GELU: in f32 a branch-free rational approximation (Eigen's, max error
    /// ~3e-7, a few ulp) that vectorises, where libm's `tanhf` is a scalar call costing
    /// ~15 ns (a 512 × 2048 GEGLU holds a million of them); in f64 the exact `tanh`, so the
    /// gradient checks see the true function.
    fn tanh_approx(self) -> Self;
    /// `exp` for softmaxes recomputed in bulk (the LM head's, the attention backward's): in
    /// f32 a branch-free polynomial (Cephes' `expf`, within 2 ulp of libm on `[-87, 88]`, 0
    /// below) that vectorises, where libm's `expf` is a scalar call (the head takes
    /// `n × 262,144` of them per step); in f64 the exact `exp`.
    fn exp_approx(self) -> Self;
    /// `max` that ignores NaN in neither argument: only used on finite scores and −∞.
    fn max(self, other: Self) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

macro_rules! impl_float {
    ($t:ty, $tanh_approx:path, $exp_approx:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn tanh_approx(self) -> Self {
                $tanh_approx(self)
            }
            #[inline(always)]
            fn exp_approx(self) -> Self {
                $exp_approx(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                if self >= other {
                    self
                } else {
                    other
                }
            }
        }
    };
}
impl_float!(f32, tanh_rational_f32, exp_poly_f32);
impl_float!(f64, f64::tanh, f64::exp);

/// Cephes' `expf`: `x = n·ln2 + r` with `|r| ≤ ln2/2`, `e^r` by a degree-7 polynomial
/// (`1 + r + r²·p(r)`), times `2^n` built in the exponent bits. Branch-free; below −87.3 (where
/// `expf` leaves the normal range) it returns 0, above 88 it saturates at `e^88`
/// (its callers pass `x − max ≤ 0`).
#[inline(always)]
fn exp_poly_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.0e-1,
    ];
    let xc = x.clamp(-87.336_55, 88.0);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = P[0];
    for &c in &P[1..] {
        p = p * r + c;
    }
    let e = 1.0 + r + r * r * p;
    let scale = pow2i(n);
    if x < -87.336_55 {
        0.0
    } else {
        e * scale
    }
}

/// `2^n` for an integer-valued `n` in `[-126, 127]`, built in the exponent bits. Adding
/// 1.5·2²³ puts `n` in the low mantissa bits (exactly, as `|n| < 2²²`), so no float-to-int cast
/// is needed: Rust's `as i32` saturates and maps NaN to 0, which the compiler does lane by
/// lane in scalar code, and that kept the softmax loops from vectorising.
#[inline(always)]
fn pow2i(n: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    let biased = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits() - 127);
    f32::from_bits(biased << 23)
}

/// Eigen's `generic_fast_tanh_float`: `x·p(x²)/q(x²)` on `x` clamped to ±7.9053, beyond which
/// tanh rounds to ±1 in f32.
#[inline(always)]
fn tanh_rational_f32(x: f32) -> f32 {
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = A[6];
    for &a in A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let mut q = B[3];
    for &b in B[..3].iter().rev() {
        q = q * x2 + b;
    }
    x * p / q
}

/// Dot product with 16 independent accumulators: a single running sum is a serial chain of
/// dependent adds that the compiler may not reorder, so it would neither vectorise nor pipeline.
/// The accumulators are a fixed array fed from fixed-size chunks and summed in lane order at
/// the end: written that way LLVM turns the loop into whole-register multiplies and adds (a
/// pairwise tree at the end made it fall back to 2-lane code, 3× slower). The summation order
/// is fixed, so results are deterministic and the same on every instruction set.
#[inline(always)]
pub(crate) fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    const N: usize = 16;
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [F::ZERO; N];
    let mut ca = a.chunks_exact(N);
    let mut cb = b.chunks_exact(N);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x: &[F; N] = x.try_into().expect("chunk of N");
        let y: &[F; N] = y.try_into().expect("chunk of N");
        for i in 0..N {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = F::ZERO;
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut s = F::ZERO;
    for a in acc {
        s += a;
    }
    s + tail
}

/// `Σ x` over 16 interleaved partial sums, for the same reason as [`dot`]: a running sum is a
/// chain of dependent adds that neither vectorises nor pipelines.
#[inline(always)]
pub(crate) fn sum_lanes<F: Float>(x: &[F]) -> F {
    const N: usize = 16;
    let mut acc = [F::ZERO; N];
    let mut chunks = x.chunks_exact(N);
    for c in &mut chunks {
        let c: &[F; N] = c.try_into().expect("chunk of N");
        for i in 0..N {
            acc[i] += c[i];
        }
    }
    let mut s = F::ZERO;
    for a in acc {
        s += a;
    }
    for &v in chunks.remainder() {
        s += v;
    }
    s
}

/// `max(init, max x)` over 16 interleaved lanes (as [`sum_lanes`]); for finite values and −∞.
#[inline(always)]
pub(crate) fn max_lanes<F: Float>(x: &[F], init: F) -> F {
    const N: usize = 16;
    let mut acc = [init; N];
    let mut chunks = x.chunks_exact(N);
    for c in &mut chunks {
        let c: &[F; N] = c.try_into().expect("chunk of N");
        for i in 0..N {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let mut m = init;
    for a in acc {
        m = m.max(a);
    }
    for &v in chunks.remainder() {
        m = m.max(v);
    }
    m
}

/// Partial sums of the f64 row reductions ([`sum_sq_f64`], [`dot3_f64`]): a left-to-right f64
/// sum is one dependent add (4 cycles) per element, which made the RMSNorm row sums
/// latency-bound (2.5% of a training step in the backward alone) and the gradient norm a serial
/// pass over millions; eight independent lanes vectorise.
const F64_LANES: usize = 8;

crate::simd::multiversion! {
/// `Σ x_i²` in f64, over [`F64_LANES`] interleaved partial sums.
pub(crate) fn sum_sq_f64<F: Float>(x: &[F]) -> f64 {
    let mut acc = [0f64; F64_LANES];
    let mut chunks = x.chunks_exact(F64_LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v.to_f64() * v.to_f64();
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    acc.iter().sum::<f64>() + tail
}
}

crate::simd::multiversion! {
/// `Σ (a_i·b_i)·c_i` with the products `a·b` in `F` and the rest in f64, over [`F64_LANES`]
/// interleaved partial sums.
pub(crate) fn dot3_f64<F: Float>(a: &[F], b: &[F], c: &[F]) -> f64 {
    assert!(a.len() == b.len() && b.len() == c.len(), "dot3 of slices of different lengths");
    let mut acc = [0f64; F64_LANES];
    let mut ca = a.chunks_exact(F64_LANES);
    let mut cb = b.chunks_exact(F64_LANES);
    let mut cc = c.chunks_exact(F64_LANES);
    for ((xa, xb), xc) in (&mut ca).zip(&mut cb).zip(&mut cc) {
        let xa: &[F; F64_LANES] = xa.try_into().expect("chunk of F64_LANES");
        let xb: &[F; F64_LANES] = xb.try_into().expect("chunk of F64_LANES");
        let xc: &[F; F64_LANES] = xc.try_into().expect("chunk of F64_LANES");
        for l in 0..F64_LANES {
            acc[l] += (xa[l] * xb[l]).to_f64() * xc[l].to_f64();
        }
    }
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder())
        .map(|((&x, &y), &z)| (x * y).to_f64() * z.to_f64())
        .sum();
    acc.iter().sum::<f64>() + tail
}
}

crate::simd::multiversion! {
/// `dot` (this module's portable dot product) compiled for the CPU's widest vectors: for
/// callers outside the multiversioned kernels (a row's `do·o` in the attention backward).
pub fn dot_product<F: Float>(a: &[F], b: &[F]) -> F {
    assert_eq!(a.len(), b.len(), "dot product of slices of different lengths");
    dot(a, b)
}
}

crate::simd::multiversion! {
/// `y[i] += alpha · (row i of w) · x` for `w (y.len(), x.len())` row-major: a matrix times one
/// vector with the rows' dot products in `dot`'s fixed order, for the thin products of a
/// LoRA term on a few rows (the gemm crate packed B on every such call: 53 µs a projection
/// at one decode row).
pub fn matvec_acc<F: Float>(w: &[F], x: &[F], alpha: F, y: &mut [F]) {
    assert_eq!(w.len(), x.len() * y.len(), "w is not (y.len(), x.len())");
    if x.is_empty() {
        return;
    }
    for (yi, wr) in y.iter_mut().zip(w.chunks_exact(x.len())) {
        *yi += alpha * dot(wr, x);
    }
}
}

crate::simd::multiversion! {
/// `y += Σ_j coef[j] · (row j of rows)` for `rows (coef.len(), y.len())` row-major: `Bᵀ`'s
/// rows weighted by a LoRA term's `u` (whole-row `axpy`s, which vectorise along `y`).
pub fn rows_combination_acc<F: Float>(rows: &[F], coef: &[F], y: &mut [F]) {
    assert_eq!(rows.len(), coef.len() * y.len(), "rows is not (coef.len(), y.len())");
    if y.is_empty() {
        return;
    }
    for (&c, r) in coef.iter().zip(rows.chunks_exact(y.len())) {
        axpy(c, r, y);
    }
}
}

/// `y += alpha * x`.
#[inline(always)]
pub(crate) fn axpy<F: Float>(alpha: F, x: &[F], y: &mut [F]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `y *= alpha`.
#[inline(always)]
pub(crate) fn scale_in_place<F: Float>(alpha: F, y: &mut [F]) {
    for yi in y.iter_mut() {
        *yi *= alpha;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::randn;

    crate::simd::multiversion! {
        fn sum_of_squares<F: Float>(x: &[F]) -> F {
            crate::float::dot(x, x)
        }
    }

    #[test]
    fn matrix_vector_kernels_match_the_obvious_sums() {
        for (rows, cols) in [(1, 1), (3, 17), (16, 640), (640, 16), (5, 0)] {
            let w = randn(rows * cols, 1);
            let x = randn(cols, 2);
            let y0 = randn(rows, 3);
            let mut y = y0.clone();
            matvec_acc(&w, &x, 0.5, &mut y);
            for i in 0..rows {
                let want = y0[i] as f64
                    + 0.5
                        * (0..cols)
                            .map(|j| (w[i * cols + j] * x[j]) as f64)
                            .sum::<f64>();
                assert!((y[i] as f64 - want).abs() < 1e-4, "({rows},{cols}) y[{i}]");
            }
            // The same products column by column: y += wᵀ·c over the rows of w.
            let c = randn(rows, 4);
            let z0 = randn(cols, 5);
            let mut z = z0.clone();
            rows_combination_acc(&w, &c, &mut z);
            for j in 0..cols {
                let want = z0[j] as f64
                    + (0..rows)
                        .map(|i| (c[i] * w[i * cols + j]) as f64)
                        .sum::<f64>();
                assert!((z[j] as f64 - want).abs() < 1e-4, "({rows},{cols}) z[{j}]");
            }
        }
    }

    #[test]
    fn dispatched_kernel_runs_and_agrees_with_the_baseline() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
        let want = crate::float::dot(&x, &x);
        // Same summation order on every path, and no FMA contraction: bit-identical.
        assert_eq!(sum_of_squares(&x).to_bits(), want.to_bits());
    }

    #[test]
    fn lane_sums_equal_the_plain_sums() {
        for n in [0, 1, 7, 8, 9, 256, 640, 1001] {
            let (a, b, c) = (randn(n, 3), randn(n, 4), randn(n, 5));
            let sq: f64 = a.iter().map(|&v| v as f64 * v as f64).sum();
            let d3: f64 = (0..n).map(|i| (a[i] * b[i]) as f64 * c[i] as f64).sum();
            let scale = 1e-12 * (1.0 + sq);
            assert!(
                (sum_sq_f64(&a) - sq).abs() <= scale,
                "n {n}: {} vs {sq}",
                sum_sq_f64(&a)
            );
            let mag: f64 = (0..n)
                .map(|i| ((a[i] * b[i]) as f64 * c[i] as f64).abs())
                .sum();
            let got = dot3_f64(&a, &b, &c);
            assert!(
                (got - d3).abs() <= 1e-12 * (1.0 + mag),
                "n {n}: {got} vs {d3}"
            );
        }
    }

    #[test]
    fn pow2i_is_the_exponent_built_by_a_cast() {
        for n in -126..=127i32 {
            let want = f32::from_bits(((n + 127) as u32) << 23);
            assert_eq!(pow2i(n as f32).to_bits(), want.to_bits(), "2^{n}");
            assert_eq!(want as f64, 2f64.powi(n), "2^{n}");
        }
    }

    #[test]
    fn exp_poly_is_within_2_ulp_of_exp() {
        let mut worst = 0f64;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let x = x as f32;
            let want = (x as f64).exp();
            let got = exp_poly_f32(x) as f64;
            let ulp = f32::EPSILON as f64 * want;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp_poly_f32(-100.0), 0.0);
        assert_eq!(exp_poly_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_poly_f32(0.0), 1.0);
    }

    #[test]
    fn dot_matches_naive_for_all_tail_lengths() {
        for n in 0..70 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.91).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-12, "n={n}");
        }
    }

    #[test]
    fn tanh_approx_f32_is_within_a_few_ulp() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5; // [-10, 10]
            let got = x.tanh_approx() as f64;
            let want = (x as f64).tanh();
            if x != 0.0 {
                worst = worst.max((got - want).abs() / want.abs());
            }
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(0.0f32.tanh_approx(), 0.0);
        assert_eq!(100.0f32.tanh_approx(), 1.0);
        assert_eq!((-100.0f32).tanh_approx(), -1.0);
    }
}

crate::simd::multiversion! {
    /// Exposed for `examples/dotbench.rs` only.
    #[doc(hidden)]
    pub fn __bench_dot<F: Float>(a: &[F], b: &[F]) -> F {
        dot(a, b)
    }
}
