//! The decode path: `y = W · x` for one x row, the W rows split over the thread pool in runs
//! of whole fours, each run through a four-row and a one-row kernel of `dot` with the rows
//! ahead prefetched. `DecodeRow` serves the file's layout, `PackedRow` the decode layout of
//! `crate::packed`.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::activations::{fmt, Xq};
use super::dot::{rows_legacy, rows_q4k, rows_q5_packed, rows_q6k, rows_q8_packed};
use crate::kquants::QK_K;
use crate::qmatrix::QMatrix;
use crate::GgmlType;

/// The legacy kernels' activation offsets, negated so that they start each `vpdpbusd` sum
/// (integer-exact, so the order does not matter): two blocks per vector, block `b`'s offset
/// in lane 0 or 8 of its pair.
fn pair_offsets(zs: &[i32]) -> Vec<i32> {
    let mut v = vec![0i32; zs.len().div_ceil(2) * 16];
    for (b, &z) in zs.iter().enumerate() {
        v[8 * b] = -z;
    }
    v
}

/// The legacy one-row kernel's activation scales: block `b`'s scale in the eight lanes of
/// its half of the pair's vector (lanes `8b .. 8b + 8`).
fn pair_scales(d: &[f32]) -> Vec<f32> {
    let mut v = vec![0f32; d.len().div_ceil(2) * 16];
    for (b, &s) in d.iter().enumerate() {
        v[8 * b..8 * b + 8].fill(s);
    }
    v
}

/// A kernel that dots `R` consecutive weight rows with one prepared activation row.
trait RowKernel: Sync {
    /// # Safety
    /// `w` points at `R` whole rows of the matrix the kernel was made for, and the CPU has
    /// the features its kernels are compiled for.
    unsafe fn rows<const R: usize>(&self, w: *const u8) -> [f32; R];
}

/// One x row of `Xq`, ready for the row kernels of any of the four types.
struct DecodeRow<'a> {
    ty: GgmlType,
    rb: usize,
    xq: &'a [i8],
    xd: &'a [f32],
    xzs: &'a [i32],
    xds: &'a [f32],
    xzv: Vec<i32>,
    xdv: Vec<f32>,
}

impl RowKernel for DecodeRow<'_> {
    unsafe fn rows<const R: usize>(&self, wp: *const u8) -> [f32; R] {
        let (xp, dp, rb) = (self.xq.as_ptr(), self.xd.as_ptr(), self.rb);
        // One activation scale per 32-block, one super-block per QK_K activations.
        let (nb, nsb) = (self.xd.len(), self.xq.len() / QK_K);
        match self.ty {
            GgmlType::Q5_0 => {
                rows_legacy::<true, R>(nb, wp, rb, xp, self.xdv.as_ptr(), self.xzv.as_ptr())
            }
            GgmlType::Q8_0 => {
                rows_legacy::<false, R>(nb, wp, rb, xp, self.xdv.as_ptr(), self.xzv.as_ptr())
            }
            GgmlType::Q4K => rows_q4k::<false, R>(nsb, wp, rb, xp, dp, self.xds.as_ptr()),
            _ => rows_q6k::<R>(nsb, wp, rb, xp, dp, self.xzs.as_ptr()),
        }
    }
}

/// Decode path: `y[n] = W · x` for one x row, four W rows at a time.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI/VBMI and F16C; `w.ty` is one of the four `fmt` types; shapes
/// checked by the caller.
pub(super) unsafe fn matvec(w: &QMatrix, x: &Xq, row: usize, y: &mut [f32]) {
    let nb = x.nblk;
    let xzs = &x.zs[row * nb..(row + 1) * nb];
    let kernel = DecodeRow {
        ty: w.ty,
        rb: w.row_bytes(),
        xq: &x.q[row * x.k..(row + 1) * x.k],
        xd: &x.d[row * nb..(row + 1) * nb],
        xzs,
        xds: &x.ds[row * nb..(row + 1) * nb],
        xzv: match w.ty {
            GgmlType::Q8_0 | GgmlType::Q5_0 => pair_offsets(xzs),
            _ => Vec::new(),
        },
        xdv: match w.ty {
            GgmlType::Q8_0 | GgmlType::Q5_0 => pair_scales(&x.d[row * nb..(row + 1) * nb]),
            _ => Vec::new(),
        },
    };
    // SAFETY: features checked by the caller; the x buffers are one row's worth, sized as
    // each kernel requires.
    par_rows(w.data, kernel.rb, y, &kernel);
}

/// `y[j] = row j of data (stride rb) · x` through a four-row and a one-row kernel, the
/// rows split over the thread pool in runs of whole fours.
///
/// # Safety
/// `data` holds `y.len()` rows of `rb` bytes, and the kernels may read `R` whole rows
/// from the pointer they get (with the CPU features they are compiled for).
unsafe fn par_rows(data: &[u8], rb: usize, y: &mut [f32], kernel: &impl RowKernel) {
    let n = y.len();
    let threads = rayon::current_num_threads().max(1);
    let rpt = n.div_ceil(threads * 4).next_multiple_of(4).max(64);
    y.par_chunks_mut(rpt).enumerate().for_each(|(t, out)| {
        let j0 = t * rpt;
        let mut j = 0;
        // SAFETY: rows j0+j.. exist (4 or 1 at a time within out's length); prefetches stay
        // inside data (a prefetch never faults, but the pointer must be in bounds).
        unsafe {
            let base = data.as_ptr();
            // The rows before the loop's window reaches: each product starts with its
            // first rows already on their way.
            let end = ((j0 + 8.min(out.len())) * rb).min(data.len());
            for off in (j0 * rb..end).step_by(64) {
                _mm_prefetch::<_MM_HINT_T2>(base.add(off) as *const i8);
            }
            while j + 4 <= out.len() {
                // Rows 8 to 16 ahead, one cache line at a time, into L2: the hardware
                // prefetcher does not follow four interleaved row streams far enough ahead to
                // keep the memory bus busy. Each line is asked for twice (the windows
                // overlap), which measured better than once at any one distance: requests
                // beyond the free miss buffers are dropped. Decode of Gemma 3 270M on a
                // 2-core AMD EPYC (Zen 4), tok/s with 1 / 2 threads: the next 4 rows into L1
                // (the earlier choice, tuned on a Xeon) 28 / 55, the next 12 into L2 66 / 105.
                // Whole-process time of 256 decoded tokens at 1 thread against rows 4 to 16:
                // rows 8 to 16 0.95 (2 threads, 384 tokens: 0.99); 6 to 14, 8 to 20 and 12
                // to 20 were 1.01–1.04 times slower than 8 to 16.
                let ahead = ((j0 + j + 8) * rb).min(data.len());
                let stop = ((j0 + j + 16) * rb).min(data.len());
                for off in (ahead..stop).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T2>(base.add(off) as *const i8);
                }
                out[j..j + 4].copy_from_slice(&kernel.rows::<4>(base.add((j0 + j) * rb)));
                j += 4;
            }
            while j < out.len() {
                out[j] = kernel.rows::<1>(base.add((j0 + j) * rb))[0];
                j += 1;
            }
        }
    });
}

/// `y = W · x` for one x row, W a Q5_0, Q8_0 or Q4_K matrix in its decode layout of
/// `crate::packed` (`rows × cols`, `cols` a multiple of 128 for Q5_0, 64 for Q8_0, 256 for
/// Q4_K).
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI and F16C; `data` holds `rows` packed rows of `ty`;
/// `x.len() == cols`, `y.len() == rows`.
pub(crate) unsafe fn matvec_packed(
    ty: GgmlType,
    data: &[u8],
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let f = fmt(ty).expect("the packed types have a format");
    let xq = Xq::new(ty, f, x, 1, cols);
    let kernel = PackedRow {
        ty,
        rb: crate::decode_layout::packed_row_bytes(ty, cols),
        xzv: pair_offsets(&xq.zs),
        xq,
    };
    // SAFETY: features are the caller's promise; the x buffers are sized as the packed
    // kernels require.
    par_rows(data, kernel.rb, y, &kernel);
}

/// One x row for the decode-layout kernels.
struct PackedRow {
    ty: GgmlType,
    rb: usize,
    xq: Xq,
    xzv: Vec<i32>,
}

impl RowKernel for PackedRow {
    unsafe fn rows<const R: usize>(&self, wp: *const u8) -> [f32; R] {
        let (xp, dp, nb, zp) = (
            self.xq.q.as_ptr(),
            self.xq.d.as_ptr(),
            self.xq.nblk,
            self.xzv.as_ptr(),
        );
        match self.ty {
            GgmlType::Q8_0 => rows_q8_packed::<R>(nb, wp, self.rb, xp, dp, zp),
            GgmlType::Q5_0 => rows_q5_packed::<R>(nb, wp, self.rb, xp, dp, zp),
            _ => rows_q4k::<true, R>(nb / 8, wp, self.rb, xp, dp, self.xq.ds.as_ptr()),
        }
    }
}
