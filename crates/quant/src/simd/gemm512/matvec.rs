//! The decode path: `y = W · x` for one x row or a few, the W rows split over the thread
//! pool in runs of whole fours, each run through a four-row and a one-row kernel of `dot`
//! with the rows ahead prefetched, each W row unpacked once for up to four x rows.
//! `DecodeRows` serves the file's layout, `PackedRows` the decode layout of `crate::packed`.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::activations::{fmt, Xq};
use super::dot::{rows_legacy, rows_q4k, rows_q5_packed, rows_q6k, rows_q8_packed, XRow};
use crate::kquants::QK_K;
use crate::qmatrix::QMatrix;
use crate::GgmlType;

/// Lanes per x row of the pair vectors below: two blocks per 16-lane vector.
fn pair_stride(nb: usize) -> usize {
    nb.div_ceil(2) * 16
}

/// The legacy kernels' activation offsets for each x row (`nb` blocks each, rows at
/// [`pair_stride`]), negated so that they start each `vpdpbusd` sum (integer-exact, so the
/// order does not matter): two blocks per vector, block `b`'s offset in lane 0 or 8 of its
/// pair.
fn pair_offsets(zs: &[i32], nb: usize) -> Vec<i32> {
    let stride = pair_stride(nb);
    let mut v = vec![0i32; zs.len() / nb * stride];
    for (row, out) in zs.chunks_exact(nb).zip(v.chunks_exact_mut(stride)) {
        for (b, &z) in row.iter().enumerate() {
            out[8 * b] = -z;
        }
    }
    v
}

/// The legacy one-row kernel's activation scales for each x row (as [`pair_offsets`]):
/// block `b`'s scale in the eight lanes of its half of the pair's vector (lanes
/// `8b .. 8b + 8`).
fn pair_scales(d: &[f32], nb: usize) -> Vec<f32> {
    let stride = pair_stride(nb);
    let mut v = vec![0f32; d.len() / nb * stride];
    for (row, out) in d.chunks_exact(nb).zip(v.chunks_exact_mut(stride)) {
        for (b, &s) in row.iter().enumerate() {
            out[8 * b..8 * b + 8].fill(s);
        }
    }
    v
}

/// Most x rows one kernel call takes: each W row is unpacked once for them. Four keeps the
/// accumulators (`4 × 4` vectors) and the unpacked W vectors near the register file; more x
/// rows go through the W rows again in further groups, from L1.
const X_GROUP: usize = 4;

/// A kernel that dots `R` consecutive weight rows with `M` prepared activation rows.
trait RowKernel: Sync {
    /// # Safety
    /// `w` points at `R` whole rows of the matrix the kernel was made for, x rows
    /// `x0 .. x0 + M` exist, and the CPU has the features its kernels are compiled for.
    unsafe fn rows<const R: usize, const M: usize>(&self, w: *const u8, x0: usize)
        -> [[f32; R]; M];
}

/// The x rows of `Xq`, ready for the row kernels of any of the four types in the file's
/// layout.
struct DecodeRows<'a> {
    ty: GgmlType,
    rb: usize,
    x: &'a Xq,
    /// Per x row, `pair_offsets` and `pair_scales` (Q8_0 and Q5_0 only), at stride `pairs`.
    xzv: Vec<i32>,
    xdv: Vec<f32>,
    pairs: usize,
}

impl DecodeRows<'_> {
    /// # Safety
    /// `i` is one of the x rows (`i < m`). Plain pointer arithmetic, no bounds checks: this
    /// runs once per four W rows and x row.
    unsafe fn xrow(&self, i: usize) -> XRow {
        let (k, nb, pv) = (self.x.k, self.x.nblk, self.pairs);
        XRow {
            q: self.x.q.as_ptr().add(i * k),
            d: if self.xdv.is_empty() {
                self.x.d.as_ptr().add(i * nb)
            } else {
                self.xdv.as_ptr().add(i * pv)
            },
            ds: self.x.ds.as_ptr().add(i * nb),
            z: if self.xzv.is_empty() {
                self.x.zs.as_ptr().add(i * nb)
            } else {
                self.xzv.as_ptr().add(i * pv)
            },
        }
    }
}

impl RowKernel for DecodeRows<'_> {
    unsafe fn rows<const R: usize, const M: usize>(
        &self,
        wp: *const u8,
        x0: usize,
    ) -> [[f32; R]; M] {
        let mut x = [self.xrow(x0); M];
        for (m, xm) in x.iter_mut().enumerate().skip(1) {
            *xm = self.xrow(x0 + m);
        }
        // One activation scale per 32-block, one super-block per QK_K activations.
        let (nb, nsb, rb) = (self.x.nblk, self.x.k / QK_K, self.rb);
        match self.ty {
            GgmlType::Q5_0 => rows_legacy::<true, R, M>(nb, wp, rb, &x),
            GgmlType::Q8_0 => rows_legacy::<false, R, M>(nb, wp, rb, &x),
            GgmlType::Q4K => rows_q4k::<false, R, M>(nsb, wp, rb, &x),
            _ => rows_q6k::<R, M>(nsb, wp, rb, &x),
        }
    }
}

/// Decode path: `y[m×n] = x[m×k] · Wᵀ` for a few x rows, four W rows at a time, each W row
/// read once for all of them; row `i` of `y` has the bits of the product of x row `i` alone.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI/VBMI and F16C; `w.ty` is one of the four `fmt` types; `x` holds
/// `m` rows made for `w`; shapes checked by the caller.
pub(super) unsafe fn matvec(w: &QMatrix, x: &Xq, m: usize, y: &mut [f32]) {
    let nb = x.nblk;
    let (xzv, xdv) = match w.ty {
        GgmlType::Q8_0 | GgmlType::Q5_0 => (
            pair_offsets(&x.zs[..m * nb], nb),
            pair_scales(&x.d[..m * nb], nb),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let kernel = DecodeRows {
        ty: w.ty,
        rb: w.row_bytes(),
        x,
        xzv,
        xdv,
        pairs: pair_stride(nb),
    };
    // SAFETY: features checked by the caller; the x buffers hold `m` rows, sized as each
    // kernel requires.
    par_rows(w.data, kernel.rb, m, y, &kernel);
}

/// `y[i][j] = row j of data (stride rb) · x row i` for `m` x rows, through four-row and
/// one-row kernels taking up to `X_GROUP` x rows at once, the W rows split over the thread
/// pool in runs of whole fours.
///
/// # Safety
/// `data` holds `y.len() / m` rows of `rb` bytes, and the kernels may read `R` whole rows
/// from the pointer they get (with the CPU features they are compiled for) for x rows
/// `0 .. m`.
unsafe fn par_rows(data: &[u8], rb: usize, m: usize, y: &mut [f32], kernel: &impl RowKernel) {
    let n = y.len() / m;
    let threads = rayon::current_num_threads().max(1);
    let rpt = n.div_ceil(threads * 4).next_multiple_of(4).max(64);
    // SAFETY (both arms): each run gets rows t·rpt .. of `data`, which hold `n` rows, and its
    // own columns of every y row.
    if m == 1 {
        // A decode step's products: no per-call bookkeeping (126 of them per token).
        y.par_chunks_mut(rpt)
            .enumerate()
            .for_each(|(t, out)| unsafe { run_rows(data, rb, m, kernel, t * rpt, &mut [out]) });
        return;
    }
    // Per run of W rows, its columns of every y row.
    let mut runs: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(rpt)).map(|_| Vec::new()).collect();
    for yr in y.chunks_mut(n) {
        for (run, part) in runs.iter_mut().zip(yr.chunks_mut(rpt)) {
            run.push(part);
        }
    }
    runs.into_par_iter()
        .enumerate()
        .for_each(|(t, mut out)| unsafe { run_rows(data, rb, m, kernel, t * rpt, &mut out) });
}

/// W rows `j0 .. j0 + out[0].len()` against the `m` x rows into `out` (one slice per x row,
/// column 0 = W row `j0`), four W rows at a time with the rows ahead prefetched.
///
/// # Safety
/// As for `par_rows`; those W rows exist.
unsafe fn run_rows(
    data: &[u8],
    rb: usize,
    m: usize,
    kernel: &impl RowKernel,
    j0: usize,
    out: &mut [&mut [f32]],
) {
    let len = out[0].len();
    let mut j = 0;
    let base = data.as_ptr();
    // The rows before the loop's window reaches: each product starts with its first rows
    // already on their way. (A prefetch never faults, but the pointer must be in bounds.)
    let end = ((j0 + 8.min(len)) * rb).min(data.len());
    for off in (j0 * rb..end).step_by(64) {
        _mm_prefetch::<_MM_HINT_T2>(base.add(off) as *const i8);
    }
    while j + 4 <= len {
        // Rows 8 to 16 ahead, one cache line at a time, into L2: the hardware prefetcher
        // does not follow four interleaved row streams far enough ahead to keep the memory
        // bus busy. Each line is asked for twice (the windows overlap), which measured better
        // than once at any one distance: requests beyond the free miss buffers are dropped.
        // Decode of Gemma 3 270M on a 2-core AMD EPYC (Zen 4), tok/s with 1 / 2 threads: the
        // next 4 rows into L1 (the earlier choice, tuned on a Xeon) 28 / 55, the next 12 into
        // L2 66 / 105. Whole-process time of 256 decoded tokens at 1 thread against rows 4 to
        // 16: rows 8 to 16 0.95 (2 threads, 384 tokens: 0.99); 6 to 14, 8 to 20 and 12 to 20
        // were 1.01–1.04 times slower than 8 to 16.
        let ahead = ((j0 + j + 8) * rb).min(data.len());
        let stop = ((j0 + j + 16) * rb).min(data.len());
        for off in (ahead..stop).step_by(64) {
            _mm_prefetch::<_MM_HINT_T2>(base.add(off) as *const i8);
        }
        x_groups::<4>(kernel, base.add((j0 + j) * rb), m, out, j);
        j += 4;
    }
    while j < len {
        x_groups::<1>(kernel, base.add((j0 + j) * rb), m, out, j);
        j += 1;
    }
}

/// `R` W rows (at `w`) against all `m` x rows, `X_GROUP` at a time: `out[i][j..j + R]`.
///
/// # Safety
/// As for `RowKernel::rows`, for x rows `0 .. m`.
#[inline(always)]
unsafe fn x_groups<const R: usize>(
    kernel: &impl RowKernel,
    w: *const u8,
    m: usize,
    out: &mut [&mut [f32]],
    j: usize,
) {
    let mut x0 = 0;
    while x0 < m {
        let g = (m - x0).min(X_GROUP);
        match g {
            1 => put(out, x0, j, kernel.rows::<R, 1>(w, x0)),
            2 => put(out, x0, j, kernel.rows::<R, 2>(w, x0)),
            3 => put(out, x0, j, kernel.rows::<R, 3>(w, x0)),
            _ => put(out, x0, j, kernel.rows::<R, X_GROUP>(w, x0)),
        }
        x0 += g;
    }
}

/// `out[x0 + i][j..j + R] = v[i]`.
#[inline(always)]
fn put<const R: usize, const M: usize>(
    out: &mut [&mut [f32]],
    x0: usize,
    j: usize,
    v: [[f32; R]; M],
) {
    for (o, vi) in out[x0..x0 + M].iter_mut().zip(v) {
        o[j..j + R].copy_from_slice(&vi);
    }
}

/// `y[m×rows] = x[m×cols] · Wᵀ` for a few x rows, W a Q5_0, Q8_0 or Q4_K matrix in its
/// decode layout of `crate::packed` (`rows × cols`, `cols` a multiple of 128 for Q5_0, 64 for
/// Q8_0, 256 for Q4_K); each W row is read once for all x rows, and row `i` of `y` has the
/// bits of the product of x row `i` alone.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI and F16C; `data` holds `rows` packed rows of `ty`;
/// `x.len() == m·cols`, `y.len() == m·rows`, `m ≥ 1`.
pub(crate) unsafe fn matvec_packed(
    ty: GgmlType,
    data: &[u8],
    cols: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    let f = fmt(ty).expect("the packed types have a format");
    let xq = Xq::new(ty, f, x, m, cols);
    let (xzv, pairs) = (pair_offsets(&xq.zs, xq.nblk), pair_stride(xq.nblk));
    let kernel = PackedRows {
        ty,
        rb: crate::decode_layout::packed_row_bytes(ty, cols),
        xq,
        xzv,
        pairs,
    };
    // SAFETY: features are the caller's promise; the x buffers hold `m` rows, sized as the
    // packed kernels require.
    par_rows(data, kernel.rb, m, y, &kernel);
}

/// The x rows for the decode-layout kernels.
struct PackedRows {
    ty: GgmlType,
    rb: usize,
    xq: Xq,
    /// Per x row, `pair_offsets` at stride `pairs`.
    xzv: Vec<i32>,
    pairs: usize,
}

impl RowKernel for PackedRows {
    unsafe fn rows<const R: usize, const M: usize>(
        &self,
        wp: *const u8,
        x0: usize,
    ) -> [[f32; R]; M] {
        let (k, nb) = (self.xq.k, self.xq.nblk);
        // Plain pointer arithmetic (x rows `x0 .. x0 + M` exist: the caller's promise), once
        // per four W rows and x row.
        let xrow = |i: usize| XRow {
            q: self.xq.q.as_ptr().add(i * k),
            d: self.xq.d.as_ptr().add(i * nb),
            ds: self.xq.ds.as_ptr().add(i * nb),
            z: self.xzv.as_ptr().add(i * self.pairs),
        };
        let mut x = [xrow(x0); M];
        for (m, xm) in x.iter_mut().enumerate().skip(1) {
            *xm = xrow(x0 + m);
        }
        match self.ty {
            GgmlType::Q8_0 => rows_q8_packed::<R, M>(nb, wp, self.rb, &x),
            GgmlType::Q5_0 => rows_q5_packed::<R, M>(nb, wp, self.rb, &x),
            _ => rows_q4k::<true, R, M>(nb / 8, wp, self.rb, &x),
        }
    }
}
