//! AVX-512 VNNI matmul for the weight types Gemma-class GGUFs are made of (Q8_0, Q5_0,
//! Q4_K, Q6_K): the same quantized arithmetic as `vec_dot` (activations quantized to
//! `vec_dot_type`, exact integer block sums, float scales), laid out for throughput.
//!
//! * Activations are quantized once per matmul and kept as plain i8 rows with one f32
//!   scale per weight sub-block (`XQ`), so no kernel converts an f16 scale in its loop.
//! * Many x rows (prefill): 16 W rows are unpacked into a *panel* of unsigned 8-bit
//!   quants, interleaved so that one 64-byte vector holds four consecutive quants of each
//!   of the 16 rows. One `vpdpbusd` against four broadcast activation bytes then gives 16
//!   (row, x-row) partial sums at once: a block's dot products need no horizontal sum, the
//!   panel (≤ 40 KB) stays in L1 while every x row streams past, and the output is 16
//!   contiguous floats per x row. The unsigned offset (`zero`: 128, 16, 32) is removed
//!   exactly in integers with the activation block sums; Q4_K's mins use them in float.
//! * One x row (decode): four W rows at a time; the legacy types two 32-element blocks per
//!   vector, the K-quants a super-block through `vpmaddubsw` + `vpdpwssd` with its scales.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::kquants::{scale_min_k4, scale_min_words_k4, Q4_K_BYTES, Q6_K_BYTES, QK_K};
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};
use crate::matmul::QMatrix;
use crate::{f16_to_f32, f32_to_f16, vec_dot_type, GgmlType};

/// W rows per panel: the 16 i32 lanes of a zmm.
const PR: usize = 16;
/// x rows per micro-kernel call.
const XR: usize = 4;

/// What the kernels need to know about a weight type: sub-block length, the offset that
/// makes its quants unsigned, whether it has per-sub-block mins.
#[derive(Clone, Copy)]
struct Fmt {
    bs: usize,
    zero: i32,
    has_min: bool,
}

fn fmt(ty: GgmlType) -> Option<Fmt> {
    use GgmlType::*;
    Some(match ty {
        Q8_0 => Fmt {
            bs: 32,
            zero: 128,
            has_min: false,
        },
        Q5_0 => Fmt {
            bs: 32,
            zero: 16,
            has_min: false,
        },
        Q4K => Fmt {
            bs: 32,
            zero: 0,
            has_min: true,
        },
        Q6K => Fmt {
            bs: 16,
            zero: 32,
            has_min: false,
        },
        _ => return None,
    })
}

/// Whether `matmul` handles `ty`.
pub(crate) fn supports(ty: GgmlType) -> bool {
    fmt(ty).is_some()
}

/// Activations quantized exactly as `quantize_activations` does, unpacked per sub-block.
struct Xq {
    k: usize,
    nblk: usize,
    /// `m × k` quants.
    q: Vec<i8>,
    /// `m × nblk` scales.
    d: Vec<f32>,
    /// `m × nblk`: zero · Σq over the sub-block (exact).
    zs: Vec<i32>,
    /// `m × nblk`: d · Σq (for the mins of Q4_K).
    ds: Vec<f32>,
}

/// One x row and its slices of `Xq`, as the parallel zip hands them out.
type XqRow<'a> = (
    ((&'a [f32], &'a mut [i8]), &'a mut [f32]),
    (&'a mut [i32], &'a mut [f32]),
);

impl Xq {
    fn new(ty: GgmlType, f: Fmt, x: &[f32], m: usize, k: usize) -> Xq {
        let vt = vec_dot_type(ty);
        let nblk = k / f.bs;
        let mut xq = Xq {
            k,
            nblk,
            q: vec![0; m * k],
            d: vec![0.0; m * nblk],
            zs: vec![0; m * nblk],
            ds: vec![0.0; m * nblk],
        };
        let row = |(((xr, q), d), (zs, ds)): XqRow| {
            // SAFETY: `matmul` (the only caller) runs on AVX-512 CPUs only; the slices
            // are one row's worth: k values, k quants, nblk block entries.
            unsafe {
                if vt == GgmlType::Q8_0 {
                    quant_row_q8_0(xr, q, d, zs, ds, f.zero)
                } else {
                    quant_row_q8_k(xr, q, d, zs, ds, f)
                }
            }
        };
        if m == 1 {
            row((
                ((x, &mut xq.q[..]), &mut xq.d[..]),
                (&mut xq.zs[..], &mut xq.ds[..]),
            ));
        } else {
            x.par_chunks(k)
                .zip(xq.q.par_chunks_mut(k))
                .zip(xq.d.par_chunks_mut(nblk))
                .zip(xq.zs.par_chunks_mut(nblk).zip(xq.ds.par_chunks_mut(nblk)))
                .for_each(row);
        }
        xq
    }
}

/// `quantize_q8_0` (ggml's: d = amax/127 stored as f16, q = round-half-away(x·127/amax))
/// straight into the `Xq` form, for 32-element sub-blocks.
///
/// # Safety
/// AVX-512F/BW/VL/DQ; `q.len() == x.len()`, `d`, `zs`, `ds` hold `x.len() / 32` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn quant_row_q8_0(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    zs: &mut [i32],
    ds: &mut [f32],
    zero: i32,
) {
    assert!(
        q.len() == x.len() && d.len() * 32 == x.len() && zs.len() == d.len() && ds.len() == d.len()
    );
    let sign = _mm512_set1_ps(-0.0);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_set1_ps(1.0);
    for b in 0..d.len() {
        let v = [
            _mm512_loadu_ps(x.as_ptr().add(32 * b)),
            _mm512_loadu_ps(x.as_ptr().add(32 * b + 16)),
        ];
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        let dd = amax / 127.0;
        let id = _mm512_set1_ps(if dd != 0.0 { 1.0 / dd } else { 0.0 });
        let mut sum = _mm512_setzero_si512();
        for (h, &vh) in v.iter().enumerate() {
            let s = _mm512_mul_ps(vh, id);
            // roundf: truncate, then step away from zero where the dropped part is ≥ 0.5.
            let t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(s, t)), half, _CMP_GE_OQ);
            let step = _mm512_or_ps(_mm512_and_ps(s, sign), one);
            let r = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
            sum = _mm512_add_epi32(sum, r);
            _mm_storeu_si128(
                q.as_mut_ptr().add(32 * b + 16 * h) as *mut __m128i,
                _mm512_cvtepi32_epi8(r),
            );
        }
        let sum = _mm512_reduce_add_epi32(sum);
        let df = f16_to_f32(f32_to_f16(dd));
        d[b] = df;
        zs[b] = zero * sum;
        ds[b] = df * sum as f32;
    }
}

/// `quantize_q8_k` (scale -127/max per 256, round to nearest even, clamp at 127) into
/// the `Xq` form for `f.bs`-element sub-blocks.
///
/// # Safety
/// AVX-512F/BW/VL/DQ; `q.len() == x.len()` (a multiple of 256), `d`, `zs`, `ds` hold
/// `x.len() / f.bs` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn quant_row_q8_k(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    zs: &mut [i32],
    ds: &mut [f32],
    f: Fmt,
) {
    assert!(q.len() == x.len() && x.len().is_multiple_of(QK_K) && d.len() * f.bs == x.len());
    assert!(zs.len() == d.len() && ds.len() == d.len());
    let per = QK_K / f.bs;
    let lim = _mm512_set1_epi32(127);
    for g in 0..x.len() / QK_K {
        let xp = x.as_ptr().add(g * QK_K);
        let mut am = _mm512_setzero_ps();
        for i in 0..16 {
            am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(xp.add(16 * i))));
        }
        let amax = _mm512_reduce_max_ps(am);
        if amax == 0.0 {
            q[g * QK_K..(g + 1) * QK_K].fill(0);
            for s in 0..per {
                let b = g * per + s;
                (d[b], zs[b], ds[b]) = (0.0, 0, 0.0);
            }
            continue;
        }
        // The first element whose |x| is the maximum gives the sign, as in the scalar loop.
        let amv = _mm512_set1_ps(amax);
        let mut max = amax;
        for i in 0..16 {
            let v = _mm512_loadu_ps(xp.add(16 * i));
            let k = _mm512_cmp_ps_mask(_mm512_abs_ps(v), amv, _CMP_EQ_OQ);
            if k != 0 {
                max = *xp.add(16 * i + k.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let isv = _mm512_set1_ps(iscale);
        let dg = 1.0 / iscale;
        let mut sums = [0i32; 16];
        for i in 0..16 {
            let v = _mm512_mul_ps(_mm512_loadu_ps(xp.add(16 * i)), isv);
            let r = _mm512_min_epi32(_mm512_cvtps_epi32(v), lim);
            sums[i] = _mm512_reduce_add_epi32(r);
            _mm_storeu_si128(
                q.as_mut_ptr().add(g * QK_K + 16 * i) as *mut __m128i,
                _mm512_cvtepi32_epi8(r),
            );
        }
        for s in 0..per {
            let sum: i32 = sums[s * f.bs / 16..(s + 1) * f.bs / 16].iter().sum();
            let b = g * per + s;
            d[b] = dg;
            zs[b] = f.zero * sum;
            ds[b] = dg * sum as f32;
        }
    }
}

/// Writes row `r`'s unsigned quants to `u` (k bytes) and its sub-block scales and mins to
/// `d[b·PR + r]`, `mn[b·PR + r]`.
fn unpack_row(ty: GgmlType, row: &[u8], r: usize, u: &mut [u8], d: &mut [f32], mn: &mut [f32]) {
    let h = |b: &[u8], o: usize| f16_to_f32(u16::from_le_bytes([b[o], b[o + 1]]));
    match ty {
        GgmlType::Q8_0 => {
            for (b, blk) in row.chunks_exact(Q8_0_BYTES).enumerate() {
                d[b * PR + r] = h(blk, 0);
            }
            // SAFETY: only reached from `matmul` (AVX-512 CPUs); `row` holds the blocks.
            unsafe { unpack_legacy_simd(ty, row, u) };
        }
        GgmlType::Q5_0 => {
            for (b, blk) in row.chunks_exact(Q5_0_BYTES).enumerate() {
                d[b * PR + r] = h(blk, 0);
            }
            // SAFETY: as for Q8_0.
            unsafe { unpack_legacy_simd(ty, row, u) };
        }
        GgmlType::Q4K => {
            for (sb, (blk, u)) in row
                .chunks_exact(Q4_K_BYTES)
                .zip(u.chunks_exact_mut(QK_K))
                .enumerate()
            {
                let (dd, dmin) = (h(blk, 0), h(blk, 2));
                let scales = &blk[4..16];
                for j in 0..4 {
                    let qs = &blk[16 + 32 * j..48 + 32 * j];
                    for l in 0..32 {
                        u[64 * j + l] = qs[l] & 0x0f;
                        u[64 * j + 32 + l] = qs[l] >> 4;
                    }
                    for s in 0..2 {
                        let (sc, m) = scale_min_k4(2 * j + s, scales);
                        let b = sb * 8 + 2 * j + s;
                        d[b * PR + r] = dd * sc as f32;
                        mn[b * PR + r] = -dmin * m as f32;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (sb, (blk, u)) in row
                .chunks_exact(Q6_K_BYTES)
                .zip(u.chunks_exact_mut(QK_K))
                .enumerate()
            {
                let dd = h(blk, 208);
                for n in 0..2 {
                    let ql = &blk[64 * n..64 * n + 64];
                    let qh = &blk[128 + 32 * n..160 + 32 * n];
                    let u = &mut u[128 * n..128 * n + 128];
                    for l in 0..32 {
                        u[l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                        u[l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                        u[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        u[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    }
                }
                for j in 0..16 {
                    d[(sb * 16 + j) * PR + r] = dd * (blk[192 + j] as i8) as f32;
                }
            }
        }
        _ => unreachable!("fmt() admits only these types"),
    }
}

/// 16 W rows unpacked and interleaved: for each group of 4 elements t, the 4 quants of
/// rows 0..16 (`q[(t·16 + r)·4..+4]`); per sub-block the rows' scales and mins.
struct Panel {
    u: Vec<u8>,
    q: Vec<u32>,
    d: Vec<f32>,
    mn: Vec<f32>,
}

impl Panel {
    fn new(k: usize, nblk: usize) -> Panel {
        Panel {
            u: vec![0; PR * k],
            q: vec![0; PR * k / 4],
            d: vec![0.0; nblk * PR],
            mn: vec![0.0; nblk * PR],
        }
    }

    /// Loads rows `r0..r0+rows` of `w` (rows ≤ 16; missing rows are zero).
    fn pack(&mut self, w: &QMatrix, r0: usize, rows: usize) {
        let k = w.cols;
        if rows < PR {
            self.u.fill(0);
            self.d.fill(0.0);
            self.mn.fill(0.0);
        }
        for r in 0..rows {
            unpack_row(
                w.ty,
                w.row(r0 + r),
                r,
                &mut self.u[r * k..(r + 1) * k],
                &mut self.d,
                &mut self.mn,
            );
        }
        // SAFETY: `pack` runs only inside `matmul` (AVX-512 CPUs); `u` holds PR rows of k
        // bytes and `q` PR·k/4 words, as `interleave` requires.
        unsafe { interleave(&self.u, &mut self.q, k) };
    }
}

/// `q[t·16 + r]` = bytes `4t..4t+4` of row `r` of `u` (16 rows of `k` bytes): one gather
/// per group of four.
///
/// # Safety
/// AVX-512F; `u.len() ≥ 16·k`, `q.len() ≥ 4·k`, `k` a multiple of 4 below 2³¹/16.
#[target_feature(enable = "avx512f")]
unsafe fn interleave(u: &[u8], q: &mut [u32], k: usize) {
    assert!(u.len() >= PR * k && q.len() >= PR * k / 4 && k.is_multiple_of(4));
    let rows = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let offs = _mm512_mullo_epi32(rows, _mm512_set1_epi32(k as i32));
    for t in 0..k / 4 {
        let v = _mm512_i32gather_epi32::<1>(offs, u.as_ptr().add(4 * t) as *const _);
        _mm512_storeu_si512(q.as_mut_ptr().add(t * PR) as *mut __m512i, v);
    }
}

/// Q8_0 / Q5_0 row → unsigned quants (q + 128, q + 16), one block per 256-bit vector.
///
/// # Safety
/// AVX-512F/BW/VL; `row` holds `u.len() / 32` blocks of `ty`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn unpack_legacy_simd(ty: GgmlType, row: &[u8], u: &mut [u8]) {
    let nb = u.len() / 32;
    let up = u.as_mut_ptr();
    if ty == GgmlType::Q8_0 {
        assert!(row.len() >= nb * Q8_0_BYTES);
        let flip = _mm256_set1_epi8(0x80u8 as i8);
        for b in 0..nb {
            let q = _mm256_loadu_si256(row.as_ptr().add(b * Q8_0_BYTES + 2) as *const __m256i);
            _mm256_storeu_si256(up.add(32 * b) as *mut __m256i, _mm256_xor_si256(q, flip));
        }
    } else {
        assert!(ty == GgmlType::Q5_0 && row.len() >= nb * Q5_0_BYTES);
        let m4 = _mm256_set1_epi8(0x0f);
        let bit4 = _mm256_set1_epi8(0x10);
        for b in 0..nb {
            let blk = row.as_ptr().add(b * Q5_0_BYTES);
            let qh = u32::from_le_bytes(*(blk.add(2) as *const [u8; 4]));
            let n = _mm_loadu_si128(blk.add(6) as *const __m128i);
            let z = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(n, 4), n), m4);
            let z = _mm256_mask_add_epi8(z, qh, z, bit4);
            _mm256_storeu_si256(up.add(32 * b) as *mut __m256i, z);
        }
    }
}

/// `C` x rows against one panel: returns the 16 outputs of each x row.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VNNI; `pq` holds `nblk·G·16` u32, `pd`/`pm` `nblk·16`
/// f32, each `xq[c]` `nblk·4G` bytes and `xd`/`xz`/`xs[c]` `nblk` values.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const C: usize, const G: usize, const MIN: bool>(
    nblk: usize,
    pq: *const u32,
    pd: *const f32,
    pm: *const f32,
    xq: [*const i8; C],
    xd: [*const f32; C],
    xz: [*const i32; C],
    xs: [*const f32; C],
) -> [__m512; C] {
    let mut acc = [_mm512_setzero_ps(); C];
    for b in 0..nblk {
        let mut wv = [_mm512_setzero_si512(); G];
        for (g, v) in wv.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(pq.add((b * G + g) * PR) as *const __m512i);
        }
        let dv = _mm512_loadu_ps(pd.add(b * PR));
        for c in 0..C {
            let xb = xq[c].add(b * 4 * G);
            // The chain starts at −zero·Σq: the unsigned offset leaves exactly, with no
            // subtraction of its own.
            let mut i = _mm512_set1_epi32(-*xz[c].add(b));
            for (g, w) in wv.iter().enumerate() {
                let a = _mm512_set1_epi32((xb.add(4 * g) as *const i32).read_unaligned());
                i = _mm512_dpbusd_epi32(i, *w, a);
            }
            let s = _mm512_mul_ps(dv, _mm512_set1_ps(*xd[c].add(b)));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[c]);
            if MIN {
                let mv = _mm512_loadu_ps(pm.add(b * PR));
                acc[c] = _mm512_fmadd_ps(mv, _mm512_set1_ps(*xs[c].add(b)), acc[c]);
            }
        }
    }
    acc
}

/// `y` rows `r..r+C`, columns `j0..j0+rows` from one panel.
///
/// # Safety
/// As for `tile`; `y` points at an `m × n` buffer with `r + C ≤ m`, `j0 + rows ≤ n`,
/// and no other thread writes these columns.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_rows<const C: usize, const G: usize, const MIN: bool>(
    p: &Panel,
    x: &Xq,
    r: usize,
    y: *mut f32,
    n: usize,
    j0: usize,
    rows: usize,
) {
    let nb = x.nblk;
    let xq: [*const i8; C] = std::array::from_fn(|c| x.q.as_ptr().add((r + c) * x.k));
    let xd: [*const f32; C] = std::array::from_fn(|c| x.d.as_ptr().add((r + c) * nb));
    let xz: [*const i32; C] = std::array::from_fn(|c| x.zs.as_ptr().add((r + c) * nb));
    let xs: [*const f32; C] = std::array::from_fn(|c| x.ds.as_ptr().add((r + c) * nb));
    let acc = tile::<C, G, MIN>(
        nb,
        p.q.as_ptr(),
        p.d.as_ptr(),
        p.mn.as_ptr(),
        xq,
        xd,
        xz,
        xs,
    );
    let mask: __mmask16 = if rows >= PR { !0 } else { (1u16 << rows) - 1 };
    for (c, v) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(y.add((r + c) * n + j0), mask, *v);
    }
}

#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: used only to let tasks write disjoint parts of one output buffer.
unsafe impl Send for SyncPtr {}
// SAFETY: as above; no two tasks write the same element.
unsafe impl Sync for SyncPtr {}

/// Prefill path: `y[m×n] = x[m×k] · Wᵀ` over 16-row panels.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VL/VNNI; shapes were checked by the caller.
unsafe fn matmul_panels(w: &QMatrix, f: Fmt, x: &Xq, m: usize, y: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    let yp = SyncPtr(y.as_mut_ptr());
    let npanels = n.div_ceil(PR);
    (0..npanels).into_par_iter().for_each_init(
        || Panel::new(k, x.nblk),
        move |p, t| {
            let yp = yp;
            let j0 = t * PR;
            let rows = (n - j0).min(PR);
            p.pack(w, j0, rows);
            let mut r = 0;
            // SAFETY: the features were checked by the caller; this task alone writes
            // columns j0..j0+rows of y, and every pointer stays inside p, x and y.
            unsafe {
                // Q6_K's 16-element sub-blocks halve the work per tile op: AVX-512 is as fast.
                if m >= AMX_ROWS && f.bs == 32 && amx::available() {
                    r = amx::panel(p, x, f, m, yp.0, n, j0, rows);
                }
                panel_from_row(p, f, x, r, m, yp.0, n, j0, rows);
            }
        },
    );
}

/// `y` rows `r..m`, columns `j0..j0+rows` (row stride `ldy`) from one panel: `XR` x rows per
/// tile, then one at a time.
///
/// # Safety
/// As for `panel_rows`, for every row in `r..m`.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_from_row(
    p: &Panel,
    f: Fmt,
    x: &Xq,
    mut r: usize,
    m: usize,
    y: *mut f32,
    ldy: usize,
    j0: usize,
    rows: usize,
) {
    macro_rules! run {
        ($c:expr) => {
            match (f.bs, f.has_min) {
                (32, false) => panel_rows::<$c, 8, false>(p, x, r, y, ldy, j0, rows),
                (32, true) => panel_rows::<$c, 8, true>(p, x, r, y, ldy, j0, rows),
                (16, false) => panel_rows::<$c, 4, false>(p, x, r, y, ldy, j0, rows),
                _ => unreachable!("no such format"),
            }
        };
    }
    while r + XR <= m {
        run!(XR);
        r += XR;
    }
    while r < m {
        run!(1);
        r += 1;
    }
}

/// x rows per AMX tile.
const AMX_ROWS: usize = 16;

/// Intel AMX (TMUL) for the panel product: one `tdpbsud` multiplies a 16 × bs tile of
/// activations (i8) by the panel's bs × 16 block (u8, already in the VNNI-interleaved
/// layout AMX expects) into 16 × 16 exact i32 block sums, which AVX-512 then scales and
/// accumulates exactly as `tile` does. Used only when CPUID reports AMX-TILE/AMX-INT8,
/// the kernel grants this process the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) and
/// XCR0 then enables it. Opt-in (`SMOLT_AMX=1`): in the whole model it measured within
/// noise of the AVX-512 panels here (the 16 per-row scale passes after each tile op, not
/// the tile unit, bound it), so the default keeps to plain AVX-512.
mod amx {
    use super::*;
    use std::arch::asm;
    use std::sync::OnceLock;

    pub(super) fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            if !std::env::var("SMOLT_AMX").is_ok_and(|v| v.trim() == "1") {
                return false;
            }
            let l7 = __cpuid_count(7, 0);
            let (tile, int8) = (l7.edx & (1 << 24) != 0, l7.edx & (1 << 25) != 0);
            if !(tile && int8) {
                return false;
            }
            // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux ≥ 5.16 hands out
            // the 8 KB tile state only on request; without it the first tile op faults.
            #[cfg(target_os = "linux")]
            {
                let ret: i64;
                // SAFETY: a plain syscall with integer arguments; it only changes this
                // process's permitted xsave features (clobbers rcx and r11 as syscalls do).
                unsafe {
                    asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64,
                         in("rsi") 18i64, lateout("rcx") _, lateout("r11") _,
                         options(nostack));
                }
                if ret != 0 {
                    return false;
                }
                // SAFETY: xgetbv is available where AVX is (OSXSAVE); reads XCR0.
                let xcr0 = unsafe { _xgetbv(0) };
                xcr0 & (3 << 17) == (3 << 17)
            }
            #[cfg(not(target_os = "linux"))]
            false
        })
    }

    /// The 64-byte tile configuration: tmm0 = C (16 × 16 i32), tmm1 = A (16 × bs i8),
    /// tmm2 = B (bs/4 rows of 64 bytes); tmm3..tmm5 the same, for the next block.
    fn config(bs: usize) -> [u8; 64] {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut set = |t: usize, rows: u8, colsb: u16| {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
            c[48 + t] = rows;
        };
        for base in [0, 3] {
            set(base, 16, 64);
            set(base + 1, 16, bs as u16);
            set(base + 2, (bs / 4) as u8, 64);
        }
        c
    }

    /// Rows `0..m - m % 16` of the panel's columns; returns the first row not done.
    ///
    /// # Safety
    /// `available()` is true, AVX-512F/BW/VL; as for `panel_rows` otherwise.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn panel(
        p: &Panel,
        x: &Xq,
        f: Fmt,
        m: usize,
        y: *mut f32,
        n: usize,
        j0: usize,
        rows: usize,
    ) -> usize {
        let cfg = config(f.bs);
        asm!("ldtilecfg [{0}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
        let mut r = 0;
        while r + AMX_ROWS <= m {
            if f.has_min {
                rows16::<true>(p, x, f.bs, r, y, n, j0, rows);
            } else {
                rows16::<false>(p, x, f.bs, r, y, n, j0, rows);
            }
            r += AMX_ROWS;
        }
        asm!("tilerelease", options(nostack, nomem));
        r
    }

    #[repr(C, align(64))]
    struct CBuf([i32; 256]);

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn rows16<const MIN: bool>(
        p: &Panel,
        x: &Xq,
        bs: usize,
        r: usize,
        y: *mut f32,
        n: usize,
        j0: usize,
        rows: usize,
    ) {
        let (k, nb) = (x.k, x.nblk);
        let mut acc = [_mm512_setzero_ps(); AMX_ROWS];
        let mut c = [CBuf([0; 256]), CBuf([0; 256])];
        let pq = p.q.as_ptr() as *const u8;
        // Block b's sums go through tile set b % 2 into buffer b % 2; block b + 1 is
        // issued before block b's sums are scaled, so the tile unit and the vector
        // units overlap.
        let issue = |b: usize, c: &mut CBuf| {
            let a = x.q.as_ptr().add(r * k + b * bs);
            let bt = pq.add(b * bs * PR);
            // SAFETY (of the tile ops): A reads 16 rows of bs bytes at stride k inside
            // x.q (rows r..r+16 exist); B reads bs/4 × 64 contiguous bytes of this
            // block inside p.q; C is stored into the 1 KB buffer.
            if b.is_multiple_of(2) {
                asm!(
                    "tilezero tmm0",
                    "tileloadd tmm1, [{a} + {sa}*1]",
                    "tileloadd tmm2, [{b} + {sb}*1]",
                    "tdpbsud tmm0, tmm1, tmm2",
                    "tilestored [{c} + {sc}*1], tmm0",
                    a = in(reg) a, sa = in(reg) k, b = in(reg) bt, sb = in(reg) 64usize,
                    c = in(reg) c.0.as_mut_ptr(), sc = in(reg) 64usize,
                    options(nostack),
                );
            } else {
                asm!(
                    "tilezero tmm3",
                    "tileloadd tmm4, [{a} + {sa}*1]",
                    "tileloadd tmm5, [{b} + {sb}*1]",
                    "tdpbsud tmm3, tmm4, tmm5",
                    "tilestored [{c} + {sc}*1], tmm3",
                    a = in(reg) a, sa = in(reg) k, b = in(reg) bt, sb = in(reg) 64usize,
                    c = in(reg) c.0.as_mut_ptr(), sc = in(reg) 64usize,
                    options(nostack),
                );
            }
        };
        if nb > 0 {
            issue(0, &mut c[0]);
        }
        for b in 0..nb {
            if b + 1 < nb {
                issue(b + 1, &mut c[(b + 1) % 2]);
            }
            let c = &c[b % 2];
            let dv = _mm512_loadu_ps(p.d.as_ptr().add(b * PR));
            let mv = if MIN {
                _mm512_loadu_ps(p.mn.as_ptr().add(b * PR))
            } else {
                dv
            };
            for (i, a) in acc.iter_mut().enumerate() {
                let xi = (r + i) * nb + b;
                let ci = _mm512_load_si512(c.0.as_ptr().add(16 * i) as *const __m512i);
                let ci = _mm512_sub_epi32(ci, _mm512_set1_epi32(*x.zs.get_unchecked(xi)));
                let s = _mm512_mul_ps(dv, _mm512_set1_ps(*x.d.get_unchecked(xi)));
                *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci), s, *a);
                if MIN {
                    *a = _mm512_fmadd_ps(mv, _mm512_set1_ps(*x.ds.get_unchecked(xi)), *a);
                }
            }
        }
        let mask: __mmask16 = if rows >= PR { !0 } else { (1u16 << rows) - 1 };
        for (i, v) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(y.add((r + i) * n + j0), mask, *v);
        }
    }
}

// ---------------------------------------------------------------- one x row

/// Σ over `nb` 32-element blocks of `R` W rows (`w`, row stride `rb`) against one
/// activation row, two blocks per vector. Q8_0 and Q5_0 only (`Q5 = true` for Q5_0).
/// A block pair's two f16 scales come from one masked load of the pair's first bytes and a
/// word permute (not a gather: on AMD Zen 4 the 16-lane gathers this kernel used took 70%
/// of the Q8_0 head's decode time), times the activation scales of `pair_scales`.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI/VBMI and F16C; `w` holds `R` rows of `nb` blocks at stride `rb`;
/// `xq` holds `nb·32` bytes, `xdv` the scales of `pair_scales` and `xzv` the offsets of
/// `pair_offsets`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,f16c")]
unsafe fn rows_legacy<const Q5: bool, const R: usize>(
    nb: usize,
    w: *const u8,
    rb: usize,
    xq: *const i8,
    xdv: *const f32,
    xzv: *const i32,
) -> [f32; R] {
    let bsz = if Q5 { Q5_0_BYTES } else { Q8_0_BYTES };
    // Words 0..8 ← the first block's scale (word 0), 8..16 ← the second's (word bsz/2).
    let widx: [i16; 32] = std::array::from_fn(|t| {
        if (8..16).contains(&t) {
            bsz as i16 / 2
        } else {
            0
        }
    });
    let widx = _mm512_loadu_si512(widx.as_ptr() as *const __m512i);
    // The scale words of a pair (both blocks) and of a lone last block.
    let (pair_words, lone_words): (__mmask32, __mmask32) = ((1 << (bsz / 2 + 1)) - 1, 1);
    // Q5_0 pair: nibble bytes 6..22 of block 0 twice, then 28..44 (block 1) twice; the
    // second copy of each is shifted right by 4 (the high nibbles, elements 16..32).
    let perm: [u8; 64] = std::array::from_fn(|i| (6 + (i % 16) + 22 * (i / 32)) as u8);
    let perm = _mm512_loadu_si512(perm.as_ptr() as *const __m512i);
    let shifts = _mm512_setr_epi32(
        0,
        0,
        0,
        0,
        0x0004_0004,
        0x0004_0004,
        0x0004_0004,
        0x0004_0004,
        0,
        0,
        0,
        0,
        0x0004_0004,
        0x0004_0004,
        0x0004_0004,
        0x0004_0004,
    );
    let m4 = _mm512_set1_epi8(0x0f);
    let bit4 = _mm512_set1_epi8(0x10);
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    let mut acc = [_mm512_setzero_ps(); R];
    for q in 0..nb.div_ceil(2) {
        let b = 2 * q;
        let two = b + 1 < nb;
        let xv = if two {
            _mm512_loadu_si512(xq.add(32 * b) as *const __m512i)
        } else {
            _mm512_zextsi256_si512(_mm256_loadu_si256(xq.add(32 * b) as *const __m256i))
        };
        let zv = _mm512_loadu_si512(xzv.add(8 * b) as *const __m512i);
        let dxv = _mm512_loadu_ps(xdv.add(8 * b));
        let words = if two { pair_words } else { lone_words };
        for (r, a) in acc.iter_mut().enumerate() {
            let bp = w.add(r * rb + b * bsz);
            let sw = _mm512_maskz_loadu_epi16(words, bp as *const i16);
            let sw = _mm512_permutexvar_epi16(widx, sw);
            let s = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(sw)), dxv);
            let wv = if Q5 {
                let len: u64 = if two { (1 << 44) - 1 } else { (1 << 22) - 1 };
                let raw = _mm512_maskz_loadu_epi8(len, bp as *const i8);
                let z = _mm512_permutexvar_epi8(perm, raw);
                let z = _mm512_and_si512(_mm512_srlv_epi16(z, shifts), m4);
                let mut qh = u32::from_le_bytes(*(bp.add(2) as *const [u8; 4])) as u64;
                if two {
                    qh |= (u32::from_le_bytes(*(bp.add(24) as *const [u8; 4])) as u64) << 32;
                }
                _mm512_mask_add_epi8(z, qh, z, bit4)
            } else {
                let lo = _mm256_loadu_si256(bp.add(2) as *const __m256i);
                let hi = if two {
                    _mm256_loadu_si256(bp.add(2 + Q8_0_BYTES) as *const __m256i)
                } else {
                    _mm256_setzero_si256()
                };
                _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), flip)
            };
            let i = _mm512_dpbusd_epi32(zv, wv, xv);
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, *a);
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
}

/// Four `vpermw` indices that spread a super-block's sub-block scales (i16, in the low lanes of
/// a vector) over the 32 i16 lanes of a `vpmaddubsw` result: vector c's lane t takes scale
/// `c·32/lanes + t/lanes`, `lanes` being the i16 lanes one sub-block fills (16 for 32
/// elements, 8 for 16).
#[inline(always)]
unsafe fn scale_spread(lanes: usize) -> [__m512i; 4] {
    std::array::from_fn(|c| {
        let v: [i16; 32] = std::array::from_fn(|t| (c * 32 / lanes + t / lanes) as i16);
        _mm512_loadu_si512(v.as_ptr() as *const __m512i)
    })
}

/// The 256 activation quants of super-block `sb` as four 64-byte vectors.
#[inline(always)]
unsafe fn superblock_x(xq: *const i8, sb: usize) -> [__m512i; 4] {
    std::array::from_fn(|c| _mm512_loadu_si512(xq.add(256 * sb + 64 * c) as *const __m512i))
}

/// `Σ` over `nsb` 256-element super-blocks of `R` Q4_K rows (`w`, row stride `rb`)
/// against one activation row in the `Xq` form (`xq` quants, `xd` / `xds` per 32-element
/// sub-block). `vpmaddubsw` pairs the 4-bit quants with the activations into i16 (at most
/// 2·15·127, no saturation) and `vpdpwssd` multiplies those by the 6-bit scales and
/// accumulates in i32, so a block's integer sum costs two instructions per 64 elements
/// and no horizontal add; the scales are unpacked for all eight sub-blocks at once. The
/// mins use the activation block sums in float, as the panels do.
///
/// `PACKED`: the rows are in the Q4_K decode layout of `crate::packed` (per super-block the
/// two f16 scales, the eight sub-block scales and eight mins a byte each, then two 64-byte
/// halves whose byte `i` holds element `i` in its low and `64 + i` in its high nibble): the
/// same vectors of 64 elements in order from one load and two masks per 128, where the
/// file's order takes a load, two masks and an insert per 64, and the scales from one load
/// instead of a dozen scalar operations. Same integer sums in the same lanes, same float
/// steps: the two layouts give the same bits.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI and F16C; `w` holds `R` rows of `nsb` blocks (of the file's 144
/// bytes, or the packed 148) at stride `rb`; `xq` holds `nsb·256` bytes, `xd` and `xds`
/// `nsb·8` entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
unsafe fn rows_q4k<const PACKED: bool, const R: usize>(
    nsb: usize,
    w: *const u8,
    rb: usize,
    xq: *const i8,
    xd: *const f32,
    xds: *const f32,
) -> [f32; R] {
    let m4 = _mm512_set1_epi8(0x0f);
    let block = if PACKED {
        crate::packed::Q4K_PACKED_BYTES
    } else {
        Q4_K_BYTES
    };
    // Pair j of sub-blocks (2j, 2j+1): i16 lanes 0..16 take scale 2j, lanes 16..32 scale 2j+1.
    let idx = scale_spread(16);
    let mut acc = [_mm512_setzero_ps(); R];
    let mut accm = [_mm256_setzero_ps(); R];
    for sb in 0..nsb {
        let a = superblock_x(xq, sb);
        let da = *xd.add(8 * sb);
        let dsv = _mm256_loadu_ps(xds.add(8 * sb));
        for r in 0..R {
            let bw = w.add(r * rb + sb * block);
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(
                u32::from_le_bytes(*(bw as *const [u8; 4])) as i32,
            ));
            let (d, dmin) = (_mm_cvtss_f32(dd), _mm_cvtss_f32(_mm_movehdup_ps(dd)));
            // Bytes 0..8 scales, 8..16 mins.
            let sc = if PACKED {
                _mm_loadu_si128(bw.add(4) as *const __m128i)
            } else {
                let [a0, a1, a2, a3] = scale_min_words_k4(&*(bw.add(4) as *const [u8; 12]));
                _mm_setr_epi32(a0 as i32, a1 as i32, a2 as i32, a3 as i32)
            };
            let s16 = _mm256_cvtepu8_epi16(sc);
            let s512 = _mm512_castsi256_si512(s16);
            let mut isum = _mm512_setzero_si512();
            for (j, (aj, ij)) in a.iter().zip(&idx).enumerate() {
                // Elements 64j .. 64j + 64 in order.
                let qz = if PACKED {
                    let q = _mm512_loadu_si512(bw.add(20 + 64 * (j / 2)) as *const __m512i);
                    _mm512_and_si512(
                        if j % 2 == 0 {
                            q
                        } else {
                            _mm512_srli_epi16(q, 4)
                        },
                        m4,
                    )
                } else {
                    let q = _mm256_loadu_si256(bw.add(16 + 32 * j) as *const __m256i);
                    let m4 = _mm512_castsi512_si256(m4);
                    let lo = _mm256_and_si256(q, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
                };
                let p = _mm512_maddubs_epi16(qz, *aj);
                isum = _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi16(*ij, s512));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * da), acc[r]);
            let mins = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1)));
            accm[r] = _mm256_fmadd_ps(_mm256_mul_ps(mins, _mm256_set1_ps(dmin)), dsv, accm[r]);
        }
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - super::avx2::hsum_ps(accm[r]))
}

/// As `rows_q4k`, for Q6_K: 6-bit quants stored +32 (so unsigned for `vpmaddubsw`: at
/// most 2·63·127), one signed 8-bit scale per 16 elements; the +32 offset comes off
/// exactly with the activation sums (`xzs` = 32·Σq per 16-element sub-block).
///
/// # Safety
/// As for `rows_q4k`, with `xd` and `xzs` holding `nsb·16` entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
unsafe fn rows_q6k<const R: usize>(
    nsb: usize,
    w: *const u8,
    rb: usize,
    xq: *const i8,
    xd: *const f32,
    xzs: *const i32,
) -> [f32; R] {
    // Vector v of half n covers groups 8n + 4v .. 8n + 4v + 4, eight i16 lanes each.
    let idx = scale_spread(8);
    let mut acc = [_mm512_setzero_ps(); R];
    for sb in 0..nsb {
        let a = superblock_x(xq, sb);
        let da = *xd.add(16 * sb);
        let zs = _mm512_loadu_si512(xzs.add(16 * sb) as *const __m512i);
        for r in 0..R {
            let bw = w.add(r * rb + sb * Q6_K_BYTES);
            let scb = _mm_loadu_si128(bw.add(192) as *const __m128i);
            let s512 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(scb));
            let mut isum = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_mullo_epi32(_mm512_cvtepi8_epi32(scb), zs),
            );
            for n in 0..2 {
                let (q0, q1) = super::avx512::q6k_quants(bw, n);
                let p0 = _mm512_maddubs_epi16(q0, a[2 * n]);
                let p1 = _mm512_maddubs_epi16(q1, a[2 * n + 1]);
                isum = _mm512_dpwssd_epi32(isum, p0, _mm512_permutexvar_epi16(idx[2 * n], s512));
                isum =
                    _mm512_dpwssd_epi32(isum, p1, _mm512_permutexvar_epi16(idx[2 * n + 1], s512));
            }
            let d = f16_to_f32(u16::from_le_bytes(*(bw.add(208) as *const [u8; 2])));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * da), acc[r]);
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
}

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
unsafe fn matvec(w: &QMatrix, x: &Xq, row: usize, y: &mut [f32]) {
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

/// As `rows_legacy::<true, R>`, on rows in the decode layout of `crate::packed` (per row:
/// the `nb` f16 scales, the `nb` 32-bit fifth-bit words, then per four blocks 64 bytes whose
/// byte i holds element i in its low and element 64 + i in its high nibble). Each 128
/// elements cost one load and two masks straight from memory instead of a byte permute,
/// two scalar loads and a mask move per 64; the scales are one load per 16 blocks instead
/// of a gather. The sums are formed in the same order, so the result is bit-identical.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI and F16C; `nb % 4 == 0`; `w` holds `R` packed rows at stride `rb`;
/// `xq` holds `nb·32` bytes, `xd` `nb` scales and `xzv` the offsets of `pair_offsets`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
unsafe fn rows_q5_packed<const R: usize>(
    nb: usize,
    w: *const u8,
    rb: usize,
    xq: *const i8,
    xd: *const f32,
    xzv: *const i32,
) -> [f32; R] {
    let m4 = _mm512_set1_epi8(0x0f);
    let bit4 = _mm512_set1_epi8(0x10);
    let hi8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let (qh0, qs0) = (2 * nb, 6 * nb);
    let mut acc = [_mm512_setzero_ps(); R];
    for g0 in (0..nb).step_by(16) {
        let gn = (nb - g0).min(16);
        let sdx = group_scales::<R>(w, rb, xd, g0, gn);
        for q in 0..gn / 4 {
            let b = g0 + 4 * q;
            let xv0 = _mm512_loadu_si512(xq.add(32 * b) as *const __m512i);
            let xv1 = _mm512_loadu_si512(xq.add(32 * b + 64) as *const __m512i);
            let zv0 = _mm512_loadu_si512(xzv.add(8 * b) as *const __m512i);
            let zv1 = _mm512_loadu_si512(xzv.add(8 * b + 16) as *const __m512i);
            let idx0 = _mm512_add_epi32(_mm512_set1_epi32(4 * q as i32), hi8);
            let idx1 = _mm512_add_epi32(_mm512_set1_epi32(4 * q as i32 + 2), hi8);
            for (r, a) in acc.iter_mut().enumerate() {
                let row = w.add(r * rb);
                let x = _mm512_loadu_si512(row.add(qs0 + 16 * b) as *const __m512i);
                let k0 = _load_mask64(row.add(qh0 + 4 * b) as *const __mmask64);
                let k1 = _load_mask64(row.add(qh0 + 4 * b + 8) as *const __mmask64);
                let lo = _mm512_and_si512(x, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
                let w0 = _mm512_mask_add_epi8(lo, k0, lo, bit4);
                let w1 = _mm512_mask_add_epi8(hi, k1, hi, bit4);
                let i0 = _mm512_dpbusd_epi32(zv0, w0, xv0);
                let i1 = _mm512_dpbusd_epi32(zv1, w1, xv1);
                *a = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(i0),
                    _mm512_permutexvar_ps(idx0, sdx[r]),
                    *a,
                );
                *a = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(i1),
                    _mm512_permutexvar_ps(idx1, sdx[r]),
                    *a,
                );
            }
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
}

/// The decode layouts' scale products for blocks `g0 .. g0 + gn` (`gn ≤ 16`) of `R` rows:
/// lane `j` of row `r`'s vector holds f16→f32(row `r`'s scale `g0 + j`) · `xd[g0 + j]`, the
/// scales being the f16 words that start each packed row.
///
/// # Safety
/// AVX-512F/BW/VL and F16C; `w` holds `R` packed rows at stride `rb` whose scale words
/// `g0 .. g0 + gn` exist, and `xd` holds `g0 + gn` scales.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn group_scales<const R: usize>(
    w: *const u8,
    rb: usize,
    xd: *const f32,
    g0: usize,
    gn: usize,
) -> [__m512; R] {
    let gmask: __mmask16 = if gn == 16 { !0 } else { (1u16 << gn) - 1 };
    let dxg = _mm512_maskz_loadu_ps(gmask, xd.add(g0));
    std::array::from_fn(|r| {
        let h = _mm256_maskz_loadu_epi16(gmask, w.add(r * rb + 2 * g0) as *const i16);
        _mm512_mul_ps(_mm512_cvtph_ps(h), dxg)
    })
}

/// As `rows_legacy::<false, R>`, on rows in the Q8_0 decode layout of `crate::packed` (per row:
/// the `nb` f16 scales, then the `nb · 32` quants already offset to unsigned): each pair of
/// blocks is one plain 64-byte load, and the scales are converted once per 16 blocks and
/// spread over a pair's lanes with one permute, where the file's layout needs a masked load,
/// a word permute and a conversion per pair and row. The sums are formed in the same order,
/// with the same scale products, so the result is bit-identical.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI and F16C; `nb` even; `w` holds `R` packed rows at stride `rb`;
/// `xq` holds `nb·32` bytes, `xd` `nb` scales and `xzv` the offsets of `pair_offsets`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
unsafe fn rows_q8_packed<const R: usize>(
    nb: usize,
    w: *const u8,
    rb: usize,
    xq: *const i8,
    xd: *const f32,
    xzv: *const i32,
) -> [f32; R] {
    let hi8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let qs0 = 2 * nb;
    let mut acc = [_mm512_setzero_ps(); R];
    for g0 in (0..nb).step_by(16) {
        let gn = (nb - g0).min(16);
        let sdx = group_scales::<R>(w, rb, xd, g0, gn);
        for q in 0..gn / 2 {
            let b = g0 + 2 * q;
            let xv = _mm512_loadu_si512(xq.add(32 * b) as *const __m512i);
            let zv = _mm512_loadu_si512(xzv.add(8 * b) as *const __m512i);
            let idx = _mm512_add_epi32(_mm512_set1_epi32(2 * q as i32), hi8);
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_loadu_si512(w.add(r * rb + qs0 + 32 * b) as *const __m512i);
                let i = _mm512_dpbusd_epi32(zv, wv, xv);
                *a = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(i),
                    _mm512_permutexvar_ps(idx, sdx[r]),
                    *a,
                );
            }
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
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
        rb: crate::packed::packed_row_bytes(ty, cols),
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

/// Below this many x rows, unpacking panels costs more than it saves.
const PANEL_MIN_M: usize = crate::matmul::ONE_ROW_BELOW;

/// `y[m×n] = x[m×k] · Wᵀ` for a type `supports` admits; `None` if this path declines
/// (the caller then uses the generic per-row kernels).
///
/// # Safety
/// The CPU must have AVX-512F/BW/VL/DQ/VNNI and F16C; shapes checked by the caller. The
/// one-row kernels also need VBMI, checked here.
pub(crate) unsafe fn matmul(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Option<()> {
    let f = fmt(w.ty)?;
    let one_row = std::arch::is_x86_feature_detected!("avx512vbmi");
    if m < PANEL_MIN_M && !one_row {
        return None;
    }
    let xq = Xq::new(w.ty, f, x, m, w.cols);
    if m < PANEL_MIN_M {
        for (r, yr) in y.chunks_mut(w.rows).enumerate() {
            matvec(w, &xq, r, yr);
        }
    } else {
        matmul_panels(w, f, &xq, m, y);
    }
    Some(())
}

/// Activations quantized once for many [`matmul_rows`] calls against one weight type.
pub(crate) struct RowsX {
    f: Fmt,
    pub(crate) ty: GgmlType,
    pub(crate) m: usize,
    x: Xq,
}

/// Quantizes `x (m × k)` for `ty`'s panels; `None` for a type the panels do not take.
///
/// # Safety
/// As for [`matmul`]: the CPU must have the features of the AVX-512 table.
pub(crate) unsafe fn rows_x(ty: GgmlType, x: &[f32], m: usize, k: usize) -> Option<RowsX> {
    let f = fmt(ty)?;
    Some(RowsX {
        f,
        ty,
        m,
        x: Xq::new(ty, f, x, m, k),
    })
}

/// Scratch for [`matmul_rows`]: one unpacked panel.
pub(crate) struct RowsScratch(Option<Panel>);

impl RowsScratch {
    pub(crate) fn new() -> RowsScratch {
        RowsScratch(None)
    }
}

/// `y[i·ldy + (j − r0)] = x_i · W_j` for the rows `j` in `r0..r1` of `w`, on the calling
/// thread: the panels of [`matmul`] (the same tile, so the same numbers bit for bit),
/// for a caller that is itself parallel over slices of `w`.
///
/// # Safety
/// As for [`matmul`]; `x` was made for `w.ty` and `w.cols`, `r0 ≤ r1 ≤ w.rows`,
/// `r1 − r0 ≤ ldy` and `y.len() ≥ (x.m − 1)·ldy + (r1 − r0)` (checked by the caller).
pub(crate) unsafe fn matmul_rows(
    w: &QMatrix,
    r0: usize,
    r1: usize,
    x: &RowsX,
    y: &mut [f32],
    ldy: usize,
    scratch: &mut RowsScratch,
) {
    let (f, xq, m) = (x.f, &x.x, x.m);
    let p = scratch.0.get_or_insert_with(|| Panel::new(w.cols, xq.nblk));
    if p.u.len() != PR * w.cols || p.d.len() != xq.nblk * PR {
        *p = Panel::new(w.cols, xq.nblk);
    }
    let yp = y.as_mut_ptr();
    for j0 in (r0..r1).step_by(PR) {
        let rows = (r1 - j0).min(PR);
        p.pack(w, j0, rows);
        panel_from_row(p, f, xq, 0, m, yp, ldy, j0 - r0, rows);
    }
}
