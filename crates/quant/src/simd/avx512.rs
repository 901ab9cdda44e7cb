//! AVX-512 (F/BW/VL/DQ + VNNI) dot-product kernels.
//!
//! `vpdpbusd` does u8×i8 products summed in groups of four straight into i32 lanes,
//! replacing AVX2's `maddubs`+`madd` pair and its 16-bit saturation concerns. Weights
//! whose quants are unsigned after their offset (Q4_K, Q6_K) feed it directly;
//! signed ones (Q8_0, Q5_0) use the |w|, sign(a, w) trick. AVX-512BW mask registers
//! replace AVX2's bit-to-byte shuffles for Q5_0's fifth bits.

use std::arch::x86_64::*;

use super::avx2::{f16_at, hsum_ps, nibbles_32};
use super::table::{Kernels, SCALAR};
use crate::cpu::{self, SimdPath};
use crate::kquants::{scale_min_k4, Q4_K_BYTES, Q6_K_BYTES, Q8_K_BYTES};
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};

/// The AVX-512 table, where the CPU has its features ([`cpu::supports`]).
pub(super) fn table() -> Option<&'static Kernels> {
    cpu::supports(SimdPath::Avx512).then_some(&AVX512)
}

static AVX512: Kernels = Kernels {
    path: SimdPath::Avx512,
    q8_0: dot_q8_0,
    q5_0: dot_q5_0,
    q4_k: dot_q4_k,
    q6_k: dot_q6_k,
    // Formats without a dedicated AVX-512 kernel use the AVX2 one.
    q4_0: super::avx2::dot_q4_0,
    ..SCALAR
};

checked!(dot_q8_0, q8_0_q8_0, Q8_0_BYTES, Q8_0_BYTES);
checked!(dot_q5_0, q5_0_q8_0, Q5_0_BYTES, Q8_0_BYTES);
checked!(dot_q4_k, q4_k_q8_k, Q4_K_BYTES, Q8_K_BYTES);
checked!(dot_q6_k, q6_k_q8_k, Q6_K_BYTES, Q8_K_BYTES);

/// Σ x·y per 4 bytes for signed x and y (y ≠ -128), one `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
unsafe fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(
        _mm256_setzero_si256(),
        _mm256_abs_epi8(x),
        _mm256_sign_epi8(y, x),
    )
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn q8_0_q8_0(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in 0..nb {
        let (bw, ba) = (w.add(i * Q8_0_BYTES), a.add(i * Q8_0_BYTES));
        let d = _mm256_set1_ps(f16_at(bw) * f16_at(ba));
        let qw = _mm256_loadu_si256(bw.add(2) as *const __m256i);
        let qa = _mm256_loadu_si256(ba.add(2) as *const __m256i);
        acc[i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qw, qa)), acc[i & 1]);
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn q5_0_q8_0(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    let sixteen = _mm256_set1_epi8(16);
    for i in 0..nb {
        let (bw, ba) = (w.add(i * Q5_0_BYTES), a.add(i * Q8_0_BYTES));
        let d = _mm256_set1_ps(f16_at(bw) * f16_at(ba));
        let qh = u32::from_le_bytes(*(bw.add(2) as *const [u8; 4]));
        let nib = nibbles_32(bw.add(6));
        // Elements whose fifth bit is clear are nibble - 16; the others are the nibble.
        let qw = _mm256_mask_sub_epi8(nib, !qh, nib, sixteen);
        let qa = _mm256_loadu_si256(ba.add(2) as *const __m256i);
        acc[i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qw, qa)), acc[i & 1]);
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_k_q8_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let (bw, ba) = (w.add(i * Q4_K_BYTES), a.add(i * Q8_K_BYTES));
        let scales = &*(bw.add(4) as *const [u8; 12]);
        let bsums = ba.add(260) as *const [u8; 2];
        let mut summs = 0i32;
        let mut sumi = _mm512_setzero_si512();
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let bs = |k: usize| i16::from_le_bytes(*bsums.add(k)) as i32;
            summs += m1 as i32 * (bs(4 * j) + bs(4 * j + 1))
                + m2 as i32 * (bs(4 * j + 2) + bs(4 * j + 3));
            // 64 elements in order: low nibbles are sub-block 2j, high nibbles 2j+1.
            let q = _mm256_loadu_si256(bw.add(16 + 32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let qz = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            let az = _mm512_loadu_si512(ba.add(4 + 64 * j) as *const __m512i);
            let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qz, az);
            let scv = _mm512_inserti64x4(
                _mm512_set1_epi32(sc1 as i32),
                _mm256_set1_epi32(sc2 as i32),
                1,
            );
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p, scv));
        }
        let isum = _mm512_reduce_add_epi32(sumi);
        let da = f32::from_le_bytes(*(ba as *const [u8; 4]));
        let d = f16_at(bw) * da;
        let dmin = f16_at(bw.add(2)) * da;
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_q8_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
    // Lane k of a dpbusd result covers elements 4k..4k+3, i.e. 16-element group k/4.
    let idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let (bw, ba) = (w.add(i * Q6_K_BYTES), a.add(i * Q8_K_BYTES));
        let sc16 = _mm512_cvtepi8_epi32(_mm_loadu_si128(bw.add(192) as *const __m128i));
        let bs16 = _mm512_cvtepi16_epi32(_mm256_loadu_si256(ba.add(260) as *const __m256i));
        // Quants are stored +32; Σ(q-32)·a = Σq·a - 32·Σa, and Σa per 16 is in bsums.
        let corr = _mm512_reduce_add_epi32(_mm512_mullo_epi32(sc16, bs16));
        let mut sumi = _mm512_setzero_si512();
        for n in 0..2 {
            let (q0, q1) = q6k_quants(bw, n);
            let a0 = _mm512_loadu_si512(ba.add(4 + 128 * n) as *const __m512i);
            let a1 = _mm512_loadu_si512(ba.add(4 + 128 * n + 64) as *const __m512i);
            let p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, a0);
            let p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q1, a1);
            let base = (8 * n) as i32;
            let s0 = _mm512_permutexvar_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(base)), sc16);
            let s1 =
                _mm512_permutexvar_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(base + 4)), sc16);
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p0, s0));
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p1, s1));
        }
        let isum = _mm512_reduce_add_epi32(sumi) - 32 * corr;
        let da = f32::from_le_bytes(*(ba as *const [u8; 4]));
        sumf += (f16_at(bw.add(208)) * da) * isum as f32;
    }
    sumf
}

/// Half `n` (0 or 1) of a Q6_K block at `bw` as unsigned 6-bit quants (stored +32): elements
/// `128n .. 128n + 64` and `128n + 64 .. 128n + 128`, in order. Inlined into callers compiled
/// for AVX-512F/BW.
///
/// Byte `i < 32` of the half's 32 high-bit bytes holds the top two bits of elements `i`,
/// `32 + i`, `64 + i` and `96 + i` (bits 0-1, 2-3, 4-5, 6-7). Loaded once into both 256-bit
/// halves of a vector, one variable shift per output puts each element's pair at bits 4-5 of
/// its byte (left by 4 and 2 for the first output's halves, right by 0 and 2 for the
/// second's; the 16-bit lanes' shifts keep every byte's own bits 4-5 right, whatever they
/// carry in from the neighbouring byte). A bit select takes the low nibble below and the pair
/// above, and a mask clears bits 6-7: five instructions per output where extracting each
/// quarter and reassembling the halves took seven.
#[inline(always)]
pub(super) unsafe fn q6k_quants(bw: *const u8, n: usize) -> (__m512i, __m512i) {
    let (m4, m6) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x3f));
    let ql = _mm512_loadu_si512(bw.add(64 * n) as *const __m512i);
    let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(bw.add(128 + 32 * n) as *const __m256i));
    let halves = |lo: i16, hi: i16| {
        let v: [i16; 32] = std::array::from_fn(|t| if t < 16 { lo } else { hi });
        _mm512_loadu_si512(v.as_ptr() as *const __m512i)
    };
    let h0 = _mm512_sllv_epi16(qh, halves(4, 2));
    let h1 = _mm512_srlv_epi16(qh, halves(0, 2));
    // 0xe4: bits where the third operand (m4) is set from the first, the others from the second.
    let q0 = _mm512_and_si512(_mm512_ternarylogic_epi32::<0xe4>(ql, h0, m4), m6);
    let q1 = _mm512_and_si512(
        _mm512_ternarylogic_epi32::<0xe4>(_mm512_srli_epi16(ql, 4), h1, m4),
        m6,
    );
    (q0, q1)
}
