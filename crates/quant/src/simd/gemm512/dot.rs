//! The one-row (decode) kernels: `R` consecutive W rows dotted with one x row in the `Xq`
//! form, four rows at a time in the matvec. Q8_0 and Q5_0 two 32-element blocks per vector
//! through `vpdpbusd`; the K-quants a super-block through `vpmaddubsw` + `vpdpwssd` with its
//! scales; and the same products on the decode layouts of `crate::packed`, bit for bit.

use std::arch::x86_64::*;

use crate::float::f16_to_f32;
use crate::kquants::{scale_min_words_k4, Q4_K_BYTES, Q6_K_BYTES};
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};

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
pub(super) unsafe fn rows_legacy<const Q5: bool, const R: usize>(
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
pub(super) unsafe fn rows_q4k<const PACKED: bool, const R: usize>(
    nsb: usize,
    w: *const u8,
    rb: usize,
    xq: *const i8,
    xd: *const f32,
    xds: *const f32,
) -> [f32; R] {
    let m4 = _mm512_set1_epi8(0x0f);
    let block = if PACKED {
        crate::decode_layout::Q4K_PACKED_BYTES
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
    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - crate::simd::avx2::hsum_ps(accm[r]))
}

/// As `rows_q4k`, for Q6_K: 6-bit quants stored +32 (so unsigned for `vpmaddubsw`: at
/// most 2·63·127), one signed 8-bit scale per 16 elements; the +32 offset comes off
/// exactly with the activation sums (`xzs` = 32·Σq per 16-element sub-block).
///
/// # Safety
/// As for `rows_q4k`, with `xd` and `xzs` holding `nsb·16` entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub(super) unsafe fn rows_q6k<const R: usize>(
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
                let (q0, q1) = crate::simd::avx512::q6k_quants(bw, n);
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
pub(super) unsafe fn rows_q5_packed<const R: usize>(
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
pub(super) unsafe fn rows_q8_packed<const R: usize>(
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
