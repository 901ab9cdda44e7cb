//! The one-row (decode) kernels: `R` consecutive W rows dotted with `M` x rows in the `Xq`
//! form, four W rows and up to four x rows at a time in the matvec. Q8_0 and Q5_0 two
//! 32-element blocks per vector through `vpdpbusd`; the K-quants a super-block through
//! `vpmaddubsw` + `vpdpwssd` with its scales; and the same products on the decode layouts of
//! `crate::packed`, bit for bit.
//!
//! Each W row is unpacked once for all `M` x rows, and every (W row, x row) pair goes
//! through the same instructions in the same order as with `M = 1`: a product of a few x
//! rows (speculative drafts, a served batch) gives each row the bits of its own one-row
//! product while reading the weights once.

use std::arch::x86_64::*;

use crate::float::f16_to_f32;
use crate::kquants::{scale_min_words_k4, Q4_K_BYTES, Q6_K_BYTES};
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};

/// One x row as the kernels read it: its quants and the per-block values each kernel's
/// safety section names (`d`, `ds` floats, `z` integers; unused ones may dangle).
#[derive(Clone, Copy)]
pub(super) struct XRow {
    pub q: *const i8,
    pub d: *const f32,
    pub ds: *const f32,
    pub z: *const i32,
}

/// Σ over `nb` 32-element blocks of `R` W rows (`w`, row stride `rb`) against one
/// activation row, two blocks per vector. Q8_0 and Q5_0 only (`Q5 = true` for Q5_0).
/// A block pair's two f16 scales come from one masked load of the pair's first bytes and a
/// word permute (not a gather: on AMD Zen 4 the 16-lane gathers this kernel used took 70%
/// of the Q8_0 head's decode time), times the activation scales of `pair_scales`.
///
/// # Safety
/// AVX-512F/BW/VL/DQ/VNNI/VBMI and F16C; `w` holds `R` rows of `nb` blocks at stride `rb`;
/// each x row's `q` holds `nb·32` bytes, `d` the scales of `pair_scales` and `z` the offsets
/// of `pair_offsets`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,f16c")]
pub(super) unsafe fn rows_legacy<const Q5: bool, const R: usize, const M: usize>(
    nb: usize,
    w: *const u8,
    rb: usize,
    x: &[XRow; M],
) -> [[f32; R]; M] {
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
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    for q in 0..nb.div_ceil(2) {
        let b = 2 * q;
        let two = b + 1 < nb;
        // Plain loops, not `array::from_fn`: its closure would not inherit this function's
        // target features, and each intrinsic in it would become a call.
        let mut xv = [_mm512_setzero_si512(); M];
        for (v, xm) in xv.iter_mut().zip(x) {
            *v = if two {
                _mm512_loadu_si512(xm.q.add(32 * b) as *const __m512i)
            } else {
                _mm512_zextsi256_si512(_mm256_loadu_si256(xm.q.add(32 * b) as *const __m256i))
            };
        }
        let words = if two { pair_words } else { lone_words };
        for r in 0..R {
            let bp = w.add(r * rb + b * bsz);
            let sw = _mm512_maskz_loadu_epi16(words, bp as *const i16);
            let sw = _mm512_permutexvar_epi16(widx, sw);
            let sw = _mm512_cvtph_ps(_mm512_castsi512_si256(sw));
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
            for (m, xm) in x.iter().enumerate() {
                let zv = _mm512_loadu_si512(xm.z.add(8 * b) as *const __m512i);
                let s = _mm512_mul_ps(sw, _mm512_loadu_ps(xm.d.add(8 * b)));
                let i = _mm512_dpbusd_epi32(zv, wv, xv[m]);
                acc[m][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[m][r]);
            }
        }
    }
    reduce(&acc)
}

/// Four `vpermw` indices that spread a super-block's sub-block scales (i16, in the low lanes of
/// a vector) over the 32 i16 lanes of a `vpmaddubsw` result: vector c's lane t takes scale
/// `c·32/lanes + t/lanes`, `lanes` being the i16 lanes one sub-block fills (16 for 32
/// elements, 8 for 16).
#[inline(always)]
unsafe fn scale_spread(lanes: usize) -> [__m512i; 4] {
    let mut out = [_mm512_setzero_si512(); 4];
    for (c, o) in out.iter_mut().enumerate() {
        let v: [i16; 32] = std::array::from_fn(|t| (c * 32 / lanes + t / lanes) as i16);
        *o = _mm512_loadu_si512(v.as_ptr() as *const __m512i);
    }
    out
}

/// Each accumulator's horizontal sum. A loop, not `map`: the closure `map` takes would not
/// inherit the caller's target features, so each sum became a call reading its vector back
/// through memory — 9% of a drafted receipt decode (`perf`), a store-forwarding stall each.
#[inline(always)]
unsafe fn reduce<const R: usize, const M: usize>(acc: &[[__m512; R]; M]) -> [[f32; R]; M] {
    let mut out = [[0f32; R]; M];
    for (o, a) in out.iter_mut().zip(acc) {
        for (v, x) in o.iter_mut().zip(a) {
            *v = _mm512_reduce_add_ps(*x);
        }
    }
    out
}

/// `Σ` over `nsb` 256-element super-blocks of `R` Q4_K rows (`w`, row stride `rb`)
/// against `M` activation rows in the `Xq` form (each row's `q` quants, `d` / `ds` per
/// 32-element sub-block). `vpmaddubsw` pairs the 4-bit quants with the activations into i16
/// (at most 2·15·127, no saturation) and `vpdpwssd` multiplies those by the 6-bit scales and
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
/// bytes, or the packed 148) at stride `rb`; each x row's `q` holds `nsb·256` bytes, `d` and
/// `ds` `nsb·8` entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub(super) unsafe fn rows_q4k<const PACKED: bool, const R: usize, const M: usize>(
    nsb: usize,
    w: *const u8,
    rb: usize,
    x: &[XRow; M],
) -> [[f32; R]; M] {
    let m4 = _mm512_set1_epi8(0x0f);
    let block = if PACKED {
        crate::decode_layout::Q4K_PACKED_BYTES
    } else {
        Q4_K_BYTES
    };
    // Pair j of sub-blocks (2j, 2j+1): i16 lanes 0..16 take scale 2j, lanes 16..32 scale 2j+1.
    let idx = scale_spread(16);
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    let mut accm = [[_mm256_setzero_ps(); R]; M];
    for sb in 0..nsb {
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
            let mut isum = [_mm512_setzero_si512(); M];
            for (j, ij) in idx.iter().enumerate() {
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
                let sj = _mm512_permutexvar_epi16(*ij, s512);
                for (m, xm) in x.iter().enumerate() {
                    let aj = _mm512_loadu_si512(xm.q.add(256 * sb + 64 * j) as *const __m512i);
                    let p = _mm512_maddubs_epi16(qz, aj);
                    isum[m] = _mm512_dpwssd_epi32(isum[m], p, sj);
                }
            }
            let mins = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(s16, 1)));
            let mins = _mm256_mul_ps(mins, _mm256_set1_ps(dmin));
            for (m, xm) in x.iter().enumerate() {
                let da = *xm.d.add(8 * sb);
                let dsv = _mm256_loadu_ps(xm.ds.add(8 * sb));
                acc[m][r] = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(isum[m]),
                    _mm512_set1_ps(d * da),
                    acc[m][r],
                );
                accm[m][r] = _mm256_fmadd_ps(mins, dsv, accm[m][r]);
            }
        }
    }
    let mut out = reduce(&acc);
    for (o, am) in out.iter_mut().zip(&accm) {
        for (v, a) in o.iter_mut().zip(am) {
            *v -= crate::simd::avx2::hsum_ps(*a);
        }
    }
    out
}

/// As `rows_q4k`, for Q6_K: 6-bit quants stored +32 (so unsigned for `vpmaddubsw`: at
/// most 2·63·127), one signed 8-bit scale per 16 elements; the +32 offset comes off
/// exactly with the activation sums (`xzs` = 32·Σq per 16-element sub-block).
///
/// # Safety
/// As for `rows_q4k`, with each x row's `d` and `z` holding `nsb·16` entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub(super) unsafe fn rows_q6k<const R: usize, const M: usize>(
    nsb: usize,
    w: *const u8,
    rb: usize,
    x: &[XRow; M],
) -> [[f32; R]; M] {
    // Vector v of half n covers groups 8n + 4v .. 8n + 4v + 4, eight i16 lanes each.
    let idx = scale_spread(8);
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    for sb in 0..nsb {
        for r in 0..R {
            let bw = w.add(r * rb + sb * Q6_K_BYTES);
            let scb = _mm_loadu_si128(bw.add(192) as *const __m128i);
            let s512 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(scb));
            let sc32 = _mm512_cvtepi8_epi32(scb);
            let mut isum = [_mm512_setzero_si512(); M];
            for (v, xm) in isum.iter_mut().zip(x) {
                let zs = _mm512_loadu_si512(xm.z.add(16 * sb) as *const __m512i);
                *v = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_mullo_epi32(sc32, zs));
            }
            for n in 0..2 {
                let (q0, q1) = crate::simd::avx512::q6k_quants(bw, n);
                let (s0, s1) = (
                    _mm512_permutexvar_epi16(idx[2 * n], s512),
                    _mm512_permutexvar_epi16(idx[2 * n + 1], s512),
                );
                for (m, xm) in x.iter().enumerate() {
                    let a = xm.q.add(256 * sb + 128 * n);
                    let p0 = _mm512_maddubs_epi16(q0, _mm512_loadu_si512(a as *const __m512i));
                    let p1 =
                        _mm512_maddubs_epi16(q1, _mm512_loadu_si512(a.add(64) as *const __m512i));
                    isum[m] = _mm512_dpwssd_epi32(isum[m], p0, s0);
                    isum[m] = _mm512_dpwssd_epi32(isum[m], p1, s1);
                }
            }
            let d = f16_to_f32(u16::from_le_bytes(*(bw.add(208) as *const [u8; 2])));
            for (m, xm) in x.iter().enumerate() {
                let da = *xm.d.add(16 * sb);
                acc[m][r] = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(isum[m]),
                    _mm512_set1_ps(d * da),
                    acc[m][r],
                );
            }
        }
    }
    reduce(&acc)
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
/// each x row's `q` holds `nb·32` bytes, `d` `nb` scales and `z` the offsets of
/// `pair_offsets`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub(super) unsafe fn rows_q5_packed<const R: usize, const M: usize>(
    nb: usize,
    w: *const u8,
    rb: usize,
    x: &[XRow; M],
) -> [[f32; R]; M] {
    let m4 = _mm512_set1_epi8(0x0f);
    let bit4 = _mm512_set1_epi8(0x10);
    let hi8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let (qh0, qs0) = (2 * nb, 6 * nb);
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    for g0 in (0..nb).step_by(16) {
        let gn = (nb - g0).min(16);
        let mut sdx = [[_mm512_setzero_ps(); R]; M];
        for (v, xm) in sdx.iter_mut().zip(x) {
            *v = group_scales::<R>(w, rb, xm.d, g0, gn);
        }
        for q in 0..gn / 4 {
            let b = g0 + 4 * q;
            let idx0 = _mm512_add_epi32(_mm512_set1_epi32(4 * q as i32), hi8);
            let idx1 = _mm512_add_epi32(_mm512_set1_epi32(4 * q as i32 + 2), hi8);
            for r in 0..R {
                let row = w.add(r * rb);
                let xw = _mm512_loadu_si512(row.add(qs0 + 16 * b) as *const __m512i);
                let k0 = _load_mask64(row.add(qh0 + 4 * b) as *const __mmask64);
                let k1 = _load_mask64(row.add(qh0 + 4 * b + 8) as *const __mmask64);
                let lo = _mm512_and_si512(xw, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16(xw, 4), m4);
                let w0 = _mm512_mask_add_epi8(lo, k0, lo, bit4);
                let w1 = _mm512_mask_add_epi8(hi, k1, hi, bit4);
                for (m, xm) in x.iter().enumerate() {
                    let xv0 = _mm512_loadu_si512(xm.q.add(32 * b) as *const __m512i);
                    let xv1 = _mm512_loadu_si512(xm.q.add(32 * b + 64) as *const __m512i);
                    let zv0 = _mm512_loadu_si512(xm.z.add(8 * b) as *const __m512i);
                    let zv1 = _mm512_loadu_si512(xm.z.add(8 * b + 16) as *const __m512i);
                    let i0 = _mm512_dpbusd_epi32(zv0, w0, xv0);
                    let i1 = _mm512_dpbusd_epi32(zv1, w1, xv1);
                    let a = &mut acc[m][r];
                    *a = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(i0),
                        _mm512_permutexvar_ps(idx0, sdx[m][r]),
                        *a,
                    );
                    *a = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(i1),
                        _mm512_permutexvar_ps(idx1, sdx[m][r]),
                        *a,
                    );
                }
            }
        }
    }
    reduce(&acc)
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
    let mut out = [dxg; R];
    for (r, v) in out.iter_mut().enumerate() {
        let h = _mm256_maskz_loadu_epi16(gmask, w.add(r * rb + 2 * g0) as *const i16);
        *v = _mm512_mul_ps(_mm512_cvtph_ps(h), dxg);
    }
    out
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
/// each x row's `q` holds `nb·32` bytes, `d` `nb` scales and `z` the offsets of
/// `pair_offsets`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub(super) unsafe fn rows_q8_packed<const R: usize, const M: usize>(
    nb: usize,
    w: *const u8,
    rb: usize,
    x: &[XRow; M],
) -> [[f32; R]; M] {
    let hi8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let qs0 = 2 * nb;
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    for g0 in (0..nb).step_by(16) {
        let gn = (nb - g0).min(16);
        let mut sdx = [[_mm512_setzero_ps(); R]; M];
        for (v, xm) in sdx.iter_mut().zip(x) {
            *v = group_scales::<R>(w, rb, xm.d, g0, gn);
        }
        for q in 0..gn / 2 {
            let b = g0 + 2 * q;
            let idx = _mm512_add_epi32(_mm512_set1_epi32(2 * q as i32), hi8);
            for r in 0..R {
                let wv = _mm512_loadu_si512(w.add(r * rb + qs0 + 32 * b) as *const __m512i);
                for (m, xm) in x.iter().enumerate() {
                    let xv = _mm512_loadu_si512(xm.q.add(32 * b) as *const __m512i);
                    let zv = _mm512_loadu_si512(xm.z.add(8 * b) as *const __m512i);
                    let i = _mm512_dpbusd_epi32(zv, wv, xv);
                    acc[m][r] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(i),
                        _mm512_permutexvar_ps(idx, sdx[m][r]),
                        acc[m][r],
                    );
                }
            }
        }
    }
    reduce(&acc)
}
