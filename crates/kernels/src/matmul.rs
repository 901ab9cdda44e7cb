//! Dense matmuls through the `gemm` crate. Weights are stored `(out, in)` row-major as in GGUF and
//! PyTorch, so the forward of a linear layer is `matmul_nt` and its two backward products are
//! `matmul_nn` (input gradient) and `matmul_tn` (weight gradient):
//!
//! ```text
//! forward:   y (T, OC) = x (T, C) · W (OC, C)^T        matmul_nt(x, W, T, C, OC, y)
//! backward:  dx (T, C) += dy (T, OC) · W (OC, C)       matmul_nn(dy, W, T, OC, C, dx, true)
//!            dW (OC, C) += dy (T, OC)^T · x (T, C)     matmul_tn(dy, x, OC, T, C, dW, true)
//! ```

use crate::Float;
use gemm::Parallelism;

/// Below this many multiply-adds a product runs on the calling thread: waking the pool costs
/// microseconds, more than a decode-sized product (T = 1) takes.
const PAR_MIN_FLOPS: usize = 1 << 18;

#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided<F: Float>(
    allow_par: bool,
    m: usize,
    n: usize,
    k: usize,
    c: &mut [F],
    accumulate: bool,
    a: &[F],
    (a_rs, a_cs): (usize, usize),
    b: &[F],
    (b_rs, b_cs): (usize, usize),
) {
    assert!(c.len() >= m * n, "c holds {} < m*n = {}", c.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(F::ZERO);
        }
        return;
    }
    // Bounds of the largest element each operand is read at; the callers' asserts use the
    // same shapes, this keeps the unsafe call below self-evidently in bounds.
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs, "a too short");
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs, "b too short");
    let par = if allow_par && m * n * k >= PAR_MIN_FLOPS && rayon::current_num_threads() > 1 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: `gemm` reads lhs at `i*a_rs + p*a_cs` (i < m, p < k), rhs at `p*b_rs + j*b_cs`
    // (p < k, j < n) and writes dst at `i*n + j`; the asserts above bound all three by the
    // slice lengths. `c` is borrowed mutably, so it aliases neither input. `F` is f32 or f64
    // (sealed), the types `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            F::ONE,
            F::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

/// `c (m, n) (+)= a (m, k) · b (n, k)^T`: the forward of a linear layer with `b` the `(out, in)`
/// weight. `accumulate` adds into `c` instead of overwriting it.
pub fn matmul_nt<F: Float>(
    a: &[F],
    b: &[F],
    m: usize,
    k: usize,
    n: usize,
    c: &mut [F],
    accumulate: bool,
) {
    nt(true, a, b, m, k, n, c, accumulate);
}

#[allow(clippy::too_many_arguments)]
fn nt<F: Float>(par: bool, a: &[F], b: &[F], m: usize, k: usize, n: usize, c: &mut [F], acc: bool) {
    assert_eq!(a.len(), m * k, "a is not (m, k)");
    assert_eq!(b.len(), n * k, "b is not (n, k)");
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    gemm_strided(par, m, n, k, c, acc, a, (k, 1), b, (1, k));
}

/// `c (m, n) (+)= a (m, k) · b (k, n)`: the input gradient of a linear layer (`dy · W`).
pub fn matmul_nn<F: Float>(
    a: &[F],
    b: &[F],
    m: usize,
    k: usize,
    n: usize,
    c: &mut [F],
    accumulate: bool,
) {
    nn(true, a, b, m, k, n, c, accumulate);
}

#[allow(clippy::too_many_arguments)]
fn nn<F: Float>(par: bool, a: &[F], b: &[F], m: usize, k: usize, n: usize, c: &mut [F], acc: bool) {
    assert_eq!(a.len(), m * k, "a is not (m, k)");
    assert_eq!(b.len(), k * n, "b is not (k, n)");
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    gemm_strided(par, m, n, k, c, acc, a, (k, 1), b, (n, 1));
}

/// `c (m, n) (+)= a (k, m)^T · b (k, n)`: the weight gradient of a linear layer (`dy^T · x`),
/// summing over the `k` tokens.
pub fn matmul_tn<F: Float>(
    a: &[F],
    b: &[F],
    m: usize,
    k: usize,
    n: usize,
    c: &mut [F],
    accumulate: bool,
) {
    tn(true, a, b, m, k, n, c, accumulate);
}

#[allow(clippy::too_many_arguments)]
fn tn<F: Float>(par: bool, a: &[F], b: &[F], m: usize, k: usize, n: usize, c: &mut [F], acc: bool) {
    assert_eq!(a.len(), k * m, "a is not (k, m)");
    assert_eq!(b.len(), k * n, "b is not (k, n)");
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    gemm_strided(par, m, n, k, c, acc, a, (1, m), b, (n, 1));
}

/// The same three products on the calling thread only, for callers that already run
/// independent blocks in parallel (a nested pool split would only add overhead).
pub mod serial {
    use crate::Float;

    /// `c (m, n) (+)= a (m, k) · b (n, k)^T`, as [`super::matmul_nt`].
    pub fn matmul_nt<F: Float>(
        a: &[F],
        b: &[F],
        m: usize,
        k: usize,
        n: usize,
        c: &mut [F],
        acc: bool,
    ) {
        super::nt(false, a, b, m, k, n, c, acc);
    }

    /// `c (m, n) (+)= a (m, k) · b (k, n)`, as [`super::matmul_nn`].
    pub fn matmul_nn<F: Float>(
        a: &[F],
        b: &[F],
        m: usize,
        k: usize,
        n: usize,
        c: &mut [F],
        acc: bool,
    ) {
        super::nn(false, a, b, m, k, n, c, acc);
    }

    /// `c (m, n) (+)= a (k, m)^T · b (k, n)`, as [`super::matmul_tn`].
    pub fn matmul_tn<F: Float>(
        a: &[F],
        b: &[F],
        m: usize,
        k: usize,
        n: usize,
        c: &mut [F],
        acc: bool,
    ) {
        super::tn(false, a, b, m, k, n, c, acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, contract, fd_grad, randn, randn64};

    fn naive(
        a: &dyn Fn(usize, usize) -> f64,
        b: &dyn Fn(usize, usize) -> f64,
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a(i, p) * b(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn all_three_layouts_match_naive_f32_and_f64() {
        // Includes a shape big enough to take the parallel path.
        for &(m, k, n) in &[(1, 1, 1), (1, 7, 5), (3, 5, 2), (17, 33, 9), (64, 80, 96)] {
            let a = randn(m * k, 1);
            let b = randn(k * n, 2);
            let c0 = randn(m * n, 3);
            let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
            let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
            // nt: b is (n, k)
            let want = naive(&|i, p| a64[i * k + p], &|p, j| b64[j * k + p], m, k, n);
            let mut c = c0.clone();
            matmul_nt(&a, &b, m, k, n, &mut c, false);
            assert_close(&c, &want, 1e-5, "nt");
            let mut c = c0.clone();
            matmul_nt(&a, &b, m, k, n, &mut c, true);
            let want_acc: Vec<f64> = want.iter().zip(&c0).map(|(w, &c)| w + c as f64).collect();
            assert_close(&c, &want_acc, 1e-5, "nt acc");
            let mut c64 = vec![0.0f64; m * n];
            matmul_nt(&a64, &b64, m, k, n, &mut c64, false);
            assert_close(&c64, &want, 1e-12, "nt f64");
            // nn: b is (k, n)
            let want = naive(&|i, p| a64[i * k + p], &|p, j| b64[p * n + j], m, k, n);
            let mut c = c0.clone();
            matmul_nn(&a, &b, m, k, n, &mut c, false);
            assert_close(&c, &want, 1e-5, "nn");
            // tn: a is (k, m)
            let want = naive(&|i, p| a64[p * m + i], &|p, j| b64[p * n + j], m, k, n);
            let mut c = c0.clone();
            matmul_tn(&a, &b, m, k, n, &mut c, true);
            let want_acc: Vec<f64> = want.iter().zip(&c0).map(|(w, &c)| w + c as f64).collect();
            assert_close(&c, &want_acc, 1e-5, "tn acc");
        }
    }

    #[test]
    fn k_zero_clears_or_keeps() {
        let mut c = vec![1.0f32; 6];
        matmul_nt(&[], &[], 2, 0, 3, &mut c, true);
        assert_eq!(c, vec![1.0; 6]);
        matmul_nt(&[], &[], 2, 0, 3, &mut c, false);
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    fn linear_backward_products_match_finite_differences() {
        // y = x·W^T (matmul_nt); the module doc's backward products must be its gradients.
        let (t, c, oc) = (3, 5, 4);
        let x = randn64(t * c, 1);
        let w = randn64(oc * c, 2);
        let gy = randn64(t * oc, 3);
        let loss = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; t * oc];
            matmul_nt(x, w, t, c, oc, &mut y, false);
            contract(&y, &gy)
        };
        let mut dx = vec![0.0; t * c];
        matmul_nn(&gy, &w, t, oc, c, &mut dx, true);
        let mut dw = vec![0.0; oc * c];
        matmul_tn(&gy, &x, oc, t, c, &mut dw, true);
        assert_close(&dx, &fd_grad(&x, 1e-5, |xs| loss(xs, &w)), 1e-9, "dx");
        assert_close(&dw, &fd_grad(&w, 1e-5, |ws| loss(&x, ws)), 1e-9, "dw");
    }
}
