//! Quantized matrix multiplication: `y[m×n] = x[m×k] · Wᵀ` with W stored as GGML rows.
//!
//! As in ggml, each row of `x` is quantized once to the weight type's `vec_dot_type`,
//! then every output is one `vec_dot`. Work is split over blocks of W rows; within a
//! block the loop runs over tiles of x rows so that the W rows (a few KB each) stay in
//! L1 while several x rows stream past them, instead of streaming all of W once per
//! x row as a naive loop would for prefill.

use rayon::prelude::*;

use crate::convert::{dequantize_unchecked, quantize_unchecked};
use crate::cpu::SimdPath;
use crate::format::{check_len, row_bytes, vec_dot_type, QuantError};
use crate::qmatrix::QMatrix;
use crate::simd::{self, Kernels};

/// `y[m×n] = x[m×k] · Wᵀ` on the active SIMD path (`simd_path()`).
pub fn matmul_q(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), QuantError> {
    matmul_with(simd::active_kernels(), w, x, m, y)
}

/// `matmul_q` on a chosen path (for tests and benchmarks).
pub fn matmul_q_on(
    path: SimdPath,
    w: &QMatrix,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    let k = simd::kernels_for(path).ok_or(QuantError::Unsupported {
        ty: w.ty,
        op: "this SIMD path on this CPU",
    })?;
    matmul_with(k, w, x, m, y)
}

fn check_shapes(w: &QMatrix, x: &[f32], m: usize, y: &[f32]) -> Result<(), QuantError> {
    w.validate()?;
    if x.len() != m * w.cols {
        return Err(QuantError::Shape(format!(
            "x has {} elements, expected m×k = {m}×{}",
            x.len(),
            w.cols
        )));
    }
    if y.len() != m * w.rows {
        return Err(QuantError::Shape(format!(
            "y has {} elements, expected m×n = {m}×{}",
            y.len(),
            w.rows
        )));
    }
    Ok(())
}

/// W rows per parallel task: enough tasks to balance the threads, each big enough
/// that rayon's per-task cost stays small against its dot products.
fn rows_per_task(n: usize, m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = n.div_ceil(threads * 4);
    let by_overhead = 64usize.div_ceil(m.max(1));
    by_balance.max(by_overhead).clamp(1, n.max(1))
}

/// x rows per L1 tile.
const X_TILE: usize = 8;

fn matmul_with(
    kern: &Kernels,
    w: &QMatrix,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    check_shapes(w, x, m, y)?;
    let (n, k) = (w.rows, w.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if kern.path == SimdPath::Avx512 && k > 0 && simd::gemm512::supports(w.ty) {
        // SAFETY: an AVX-512 table exists only after `kernels_for` detected every feature
        // gemm512 is compiled for (AVX-512F/BW/VL/DQ/VNNI, F16C); shapes checked above.
        if unsafe { simd::gemm512::matmul(w, x, m, y) }.is_some() {
            return Ok(());
        }
    }
    #[cfg(target_arch = "x86_64")]
    if kern.path == SimdPath::Avx2 && k > 0 {
        // SAFETY: an AVX2 table exists only after `kernels_for` detected AVX2, FMA and F16C;
        // shapes checked above.
        if unsafe { simd::gemm512::matmul_avx2(w, x, m, y) }.is_some() {
            return Ok(());
        }
    }
    let vt = vec_dot_type(w.ty);
    let dot = kern.dot(w.ty).ok_or(QuantError::Unsupported {
        ty: w.ty,
        op: "matmul_q",
    })?;
    let ab = row_bytes(vt, k)?;
    let nb = k / w.ty.block_size();

    let mut xq = vec![0u8; m * ab];
    if k > 0 {
        xq.par_chunks_mut(ab)
            .zip(x.par_chunks(k))
            .for_each(|(q, xr)| quantize_unchecked(vt, xr, q));
    }
    let xrow = |r: usize| &xq[r * ab..(r + 1) * ab];
    let rpt = rows_per_task(n, m);

    if m == 1 {
        y.par_chunks_mut(rpt).enumerate().for_each(|(t, out)| {
            let xr = xrow(0);
            for (jj, o) in out.iter_mut().enumerate() {
                *o = dot(nb, w.row(t * rpt + jj), xr);
            }
        });
        return Ok(());
    }

    // Computed transposed (yt[j][r]) so each task owns a contiguous slice, then transposed back.
    // aarch64 with i8mm: weight rows and activation rows two by two (`smmla`), the same bits.
    #[cfg(target_arch = "aarch64")]
    let two_by_two = kern.path == SimdPath::Neon && simd::neon::mmla::supports(w.ty);
    #[cfg(not(target_arch = "aarch64"))]
    let two_by_two = false;

    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(rpt * m).enumerate().for_each(|(t, out)| {
        let j0 = t * rpt;
        let nrows = out.len() / m;
        for r0 in (0..m).step_by(X_TILE) {
            let r1 = (r0 + X_TILE).min(m);
            let mut jj = 0;
            while jj < nrows {
                if two_by_two && jj + 1 < nrows {
                    let (o0, o1) = out[jj * m..(jj + 2) * m].split_at_mut(m);
                    pair_rows(w, j0 + jj, nb, &xrow, r0..r1, &dot, [o0, o1]);
                    jj += 2;
                    continue;
                }
                let wr = w.row(j0 + jj);
                let o = &mut out[jj * m..(jj + 1) * m];
                for r in r0..r1 {
                    o[r] = dot(nb, wr, xrow(r));
                }
                jj += 1;
            }
        }
    });
    y.par_chunks_mut(n).enumerate().for_each(|(r, yr)| {
        for (j, v) in yr.iter_mut().enumerate() {
            *v = yt[j * m + r];
        }
    });
    Ok(())
}

/// Weight rows `j` and `j + 1` against activation rows `rows` (at most `X_TILE`), two
/// activation rows at a time through the i8mm 2×2 kernel (an odd last row through `dot`),
/// into `out[0][r]` and `out[1][r]`. Only called where `simd::neon::mmla::supports` the
/// weights' type.
#[allow(clippy::too_many_arguments)]
fn pair_rows<'x>(
    w: &QMatrix,
    j: usize,
    nb: usize,
    xrow: &impl Fn(usize) -> &'x [u8],
    rows: std::ops::Range<usize>,
    dot: &simd::DotFn,
    out: [&mut [f32]; 2],
) {
    let wr = [w.row(j), w.row(j + 1)];
    let [o0, o1] = out;
    #[cfg(target_arch = "aarch64")]
    let first_single = {
        let n = rows.len() / 2; // ≤ X_TILE / 2 = 4 pairs: one call
        let mut pairs: [[&[u8]; 2]; X_TILE / 2] = [[&[]; 2]; X_TILE / 2];
        for (k, p) in pairs[..n].iter_mut().enumerate() {
            let r = rows.start + 2 * k;
            *p = [xrow(r), xrow(r + 1)];
        }
        let mut v = [[0f32; 4]; X_TILE / 2];
        if n > 0 {
            simd::neon::mmla::dot_2x2(w.ty, nb, wr, &pairs[..n], &mut v[..n]);
        }
        for (k, v) in v[..n].iter().enumerate() {
            let r = rows.start + 2 * k;
            (o0[r], o0[r + 1], o1[r], o1[r + 1]) = (v[0], v[1], v[2], v[3]);
        }
        rows.start + 2 * n
    };
    #[cfg(not(target_arch = "aarch64"))]
    let first_single = rows.start;
    for r in first_single..rows.end {
        o0[r] = dot(nb, wr[0], xrow(r));
        o1[r] = dot(nb, wr[1], xrow(r));
    }
}

/// Decode the whole matrix into `out` (`rows × cols`, row-major), rows in parallel.
pub fn dequantize_matrix(w: &QMatrix, out: &mut [f32]) -> Result<(), QuantError> {
    w.validate()?;
    if out.len() != w.rows * w.cols {
        return Err(QuantError::Shape(format!(
            "out has {} elements, expected {}×{}",
            out.len(),
            w.rows,
            w.cols
        )));
    }
    if w.cols == 0 {
        return Ok(());
    }
    let rb = row_bytes(w.ty, w.cols)?;
    out.par_chunks_mut(w.cols)
        .zip(w.data.par_chunks(rb))
        .for_each(|(o, b)| dequantize_unchecked(w.ty, b, o));
    Ok(())
}

/// `y = x · Wᵀ` without quantizing x: each W row is dequantized on the fly and dotted
/// with x in f64. Slow; for precision work and as a reference.
pub fn matmul_dequant(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), QuantError> {
    check_shapes(w, x, m, y)?;
    let (n, k) = (w.rows, w.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    check_len(w.ty, k, w.row_bytes())?;
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(m).enumerate().for_each(|(j, o)| {
        let mut wr = vec![0f32; k];
        dequantize_unchecked(w.ty, w.row(j), &mut wr);
        for (r, v) in o.iter_mut().enumerate() {
            let xr = &x[r * k..(r + 1) * k];
            *v = wr
                .iter()
                .zip(xr)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32;
        }
    });
    y.par_chunks_mut(n).enumerate().for_each(|(r, yr)| {
        for (j, v) in yr.iter_mut().enumerate() {
            *v = yt[j * m + r];
        }
    });
    Ok(())
}
