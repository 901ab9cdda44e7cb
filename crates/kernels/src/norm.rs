//! Gemma's RMSNorm: `y = x / sqrt(mean(x²) + eps) * w`.
//!
//! Gemma's checkpoint computes `x·(1 + w)`; llama.cpp's converter stores `1 + w` in the GGUF, so
//! these kernels multiply by the stored weight as is.

use crate::float::{dot3_f64, sum_sq_f64};
use crate::simd::multiversion;
use crate::Float;
use rayon::prelude::*;

multiversion! {
    /// Forward line B for one row: `y = x · rs · w` (same operations, in the same order, as a
    /// plain loop: only the vector width depends on the CPU).
    fn scale_row<F: Float>(y: &mut [F], x: &[F], rs: F, w: &[F]) {
        for ((yi, &xi), &wi) in y.iter_mut().zip(x).zip(w) {
            *yi = xi * rs * wi;
        }
    }
}

multiversion! {
    /// The backward's row update: `dx += r · (dy · w − x · c)`.
    fn dx_row<F: Float>(dx: &mut [F], dy: &[F], w: &[F], x: &[F], r: F, c: F) {
        for (((dxi, &dyi), &wi), &xi) in dx.iter_mut().zip(dy).zip(w).zip(x) {
            *dxi += r * (dyi * wi - xi * c);
        }
    }
}

/// Rows at or below this many elements in total are normalised on the calling thread.
const PAR_MIN_ELEMS: usize = 1 << 15;

/// `x, y` are `(rows, cols)`, `w` is `(cols)`; `rstd` `(rows)`, if given, receives
/// `1 / sqrt(mean(x²) + eps)` per row for the backward pass.
///
/// The mean of squares is accumulated in `f64`, as llama.cpp does, so long rows do not lose
/// the small entries.
pub fn rms_norm_forward<F: Float>(
    x: &[F],
    w: &[F],
    eps: F,
    cols: usize,
    y: &mut [F],
    rstd: Option<&mut [F]>,
) {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "x is not (rows, cols)"
    );
    assert_eq!(w.len(), cols, "w is not (cols)");
    assert_eq!(y.len(), x.len(), "y is not (rows, cols)");
    let rows = x.len() / cols;
    let mut scratch;
    let rstd = match rstd {
        Some(r) => {
            assert_eq!(r.len(), rows, "rstd is not (rows)");
            r
        }
        None => {
            scratch = vec![F::ZERO; rows];
            &mut scratch[..]
        }
    };
    let row = |(xr, (yr, r)): (&[F], (&mut [F], &mut F))| {
        let ss = sum_sq_f64(xr);
        // forward line A: rstd = (mean(x²) + eps)^(-1/2)
        let rs = F::from_f64(1.0 / (ss / cols as f64 + eps.to_f64()).sqrt());
        *r = rs;
        // forward line B: y = x * rstd * w
        scale_row(yr, xr, rs, w);
    };
    let it = x.chunks(cols).zip(y.chunks_mut(cols).zip(rstd.iter_mut()));
    if x.len() > PAR_MIN_ELEMS {
        x.par_chunks(cols)
            .zip(y.par_chunks_mut(cols).zip(rstd.par_iter_mut()))
            .for_each(row);
    } else {
        it.for_each(row);
    }
}

/// Backward of [`rms_norm_forward`]. `dx` and `dw` ACCUMULATE (`+=`), as every backward in this
/// crate does, so a residual stream's gradient can flow into the same buffer.
///
/// With `r = rstd` and `g = dy ⊙ w`, line B (`y = x·r·w`) gives `dx = g·r + (Σ g·x)·∂r/∂x`, and
/// line A gives `∂r/∂x_i = -r³·x_i / cols`, so `dx = r·(g - x·r²·mean(g·x))`;
/// `dw += Σ_rows dy ⊙ x·r`.
pub fn rms_norm_backward<F: Float>(
    dy: &[F],
    x: &[F],
    w: &[F],
    rstd: &[F],
    cols: usize,
    dx: &mut [F],
    dw: Option<&mut [F]>,
) {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "x is not (rows, cols)"
    );
    let rows = x.len() / cols;
    assert_eq!(dy.len(), x.len(), "dy is not (rows, cols)");
    assert_eq!(dx.len(), x.len(), "dx is not (rows, cols)");
    assert_eq!(w.len(), cols, "w is not (cols)");
    assert_eq!(rstd.len(), rows, "rstd is not (rows)");
    let row = |(i, dxr): (usize, &mut [F])| {
        let (dyr, xr, r) = (&dy[i * cols..][..cols], &x[i * cols..][..cols], rstd[i]);
        let gx = dot3_f64(dyr, w, xr);
        let c = F::from_f64(gx / cols as f64) * r * r;
        dx_row(dxr, dyr, w, xr, r, c);
    };
    if x.len() > PAR_MIN_ELEMS {
        dx.par_chunks_mut(cols).enumerate().for_each(row);
    } else {
        dx.chunks_mut(cols).enumerate().for_each(row);
    }
    if let Some(dw) = dw {
        assert_eq!(dw.len(), cols, "dw is not (cols)");
        // Serial over rows: a fixed summation order keeps dw deterministic, and each row is a
        // vectorisable axpy, so this costs no more than reading dy and x once.
        for ((dyr, xr), &r) in dy.chunks(cols).zip(x.chunks(cols)).zip(rstd) {
            for ((dwi, &dyi), &xi) in dw.iter_mut().zip(dyr).zip(xr) {
                *dwi += dyi * xi * r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    fn reference(x: &[f64], w: &[f64], eps: f64, cols: usize) -> Vec<f64> {
        x.chunks(cols)
            .flat_map(|r| {
                let ms = r.iter().map(|v| v * v).sum::<f64>() / cols as f64;
                let s = 1.0 / (ms + eps).sqrt();
                r.iter()
                    .zip(w)
                    .map(move |(v, w)| v * s * w)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn forward_matches_reference() {
        for &(rows, cols) in &[(1, 1), (3, 7), (5, 640), (80, 640)] {
            let x = randn(rows * cols, 1);
            let w = randn(cols, 2);
            let mut y = vec![0.0f32; rows * cols];
            let mut rstd = vec![0.0f32; rows];
            rms_norm_forward(&x, &w, 1e-6, cols, &mut y, Some(&mut rstd));
            assert_close(&y, &reference(&to64(&x), &to64(&w), 1e-6, cols), 1e-5, "y");
            let mut y2 = vec![0.0f32; rows * cols];
            rms_norm_forward(&x, &w, 1e-6, cols, &mut y2, None);
            assert_eq!(y, y2);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // (rows, cols) large enough to take the parallel path too.
        for &(rows, cols) in &[(3, 5), (2, 17), (60, 640)] {
            let x = randn64(rows * cols, 3);
            let w = randn64(cols, 4);
            let gy = randn64(rows * cols, 5);
            let eps = 1e-5;
            let loss = |x: &[f64], w: &[f64]| {
                let mut y = vec![0.0; x.len()];
                rms_norm_forward(x, w, eps, cols, &mut y, None);
                contract(&y, &gy)
            };
            let mut rstd = vec![0.0; rows];
            let mut y = vec![0.0; rows * cols];
            rms_norm_forward(&x, &w, eps, cols, &mut y, Some(&mut rstd));
            // Start from non-zero gradients to check accumulation.
            let dx0 = randn64(rows * cols, 6);
            let dw0 = randn64(cols, 7);
            let (mut dx, mut dw) = (dx0.clone(), dw0.clone());
            rms_norm_backward(&gy, &x, &w, &rstd, cols, &mut dx, Some(&mut dw));
            let n = if rows * cols > 1000 { 64 } else { x.len() };
            let fdx = fd_grad(&x[..n], 1e-5, |xs| {
                let mut xx = x.clone();
                xx[..n].copy_from_slice(xs);
                loss(&xx, &w)
            });
            let got: Vec<f64> = dx[..n].iter().zip(&dx0).map(|(a, b)| a - b).collect();
            assert_close(&got, &fdx, 1e-7, "dx");
            let fdw = fd_grad(&w, 1e-5, |ws| loss(&x, ws));
            let got: Vec<f64> = dw.iter().zip(&dw0).map(|(a, b)| a - b).collect();
            assert_close(&got, &fdw, 1e-7, "dw");
        }
    }
}
