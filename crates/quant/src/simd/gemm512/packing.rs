//! Panels: 16 W rows unpacked to unsigned 8-bit quants and interleaved so that one 64-byte
//! vector holds four consecutive quants of each of the 16 rows (the operand of `vpdpbusd`
//! and, unchanged, of AMX's `tdpbsud`), with each row's sub-block scales and mins.

use std::arch::x86_64::*;

use crate::float::f16_to_f32;
use crate::kquants::{scale_min_k4, Q4_K_BYTES, Q6_K_BYTES, QK_K};
#[cfg(test)]
use crate::legacy::q5_pair;
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};
use crate::qmatrix::QMatrix;
use crate::simd::avx2::bytes_from_bits_32;
use crate::GgmlType;

/// W rows per panel: the 16 i32 lanes of a zmm (two ymm on AVX2).
pub(super) const PR: usize = 16;

/// Which instructions pack a panel: AVX-512's gathers and masked adds, or AVX2 (SSE2
/// transposes, AVX2 unpacking): the same bytes. Each variant only on CPUs that have it.
///
/// Packing is redone at every product (16 W rows per panel, whatever the number of x rows),
/// so at the few x rows of batched decode it is most of the work unless it is vectorised:
/// 16 sequences on Zen 3 spent 50% of the server's time in byte-by-byte packing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    Avx512,
    Avx2,
}

/// 16 W rows unpacked and interleaved: for each group of 4 elements t, the 4 quants of
/// rows 0..16 (`q[(t·16 + r)·4..+4]`); per sub-block the rows' scales and mins.
pub(super) struct Panel {
    pub(super) u: Vec<u8>,
    pub(super) q: Vec<u32>,
    pub(super) d: Vec<f32>,
    pub(super) mn: Vec<f32>,
}

impl Panel {
    pub(super) fn new(k: usize, nblk: usize) -> Panel {
        Panel {
            u: vec![0; PR * k],
            q: vec![0; PR * k / 4],
            d: vec![0.0; nblk * PR],
            mn: vec![0.0; nblk * PR],
        }
    }

    /// Loads rows `r0..r0+rows` of `w` (rows ≤ 16; missing rows are zero). `Isa::Avx512`
    /// only on CPUs with AVX-512F/BW/VL, `Isa::Avx2` only with AVX2.
    pub(super) fn pack(&mut self, w: &QMatrix, r0: usize, rows: usize, isa: Isa) {
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
        if isa == Isa::Avx512 {
            // SAFETY: `Isa::Avx512` only on AVX-512 CPUs (above); `u` holds PR rows of k
            // bytes and `q` PR·k/4 words, as `interleave` requires.
            unsafe { interleave(&self.u, &mut self.q, k) };
        } else {
            interleave_sse2(&self.u, &mut self.q, k);
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
            unpack_legacy(ty, row, u);
        }
        GgmlType::Q5_0 => {
            for (b, blk) in row.chunks_exact(Q5_0_BYTES).enumerate() {
                d[b * PR + r] = h(blk, 0);
            }
            unpack_legacy(ty, row, u);
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

/// `interleave` with SSE2 (every x86-64 CPU): 4 × 4 transposes of 32-bit words, four rows'
/// 16 bytes at a time.
fn interleave_sse2(u: &[u8], q: &mut [u32], k: usize) {
    // Every panel type's blocks are 32 or 256 elements long.
    assert!(u.len() >= PR * k && q.len() >= PR * k / 4 && k.is_multiple_of(16));
    for t in (0..k / 4).step_by(4) {
        for g in (0..PR).step_by(4) {
            // SAFETY: SSE2 is part of x86-64. Row g + i's bytes 4t..4t + 16 end at
            // (g + i)·k + 4t + 16 ≤ PR·k ≤ u.len() since 4t + 16 ≤ k (k a multiple of 16);
            // word (t + j)·PR + g + 4 ≤ (k/4)·PR ≤ q.len() since t + j < k/4.
            unsafe {
                let row = |i: usize| {
                    _mm_loadu_si128(u.as_ptr().add((g + i) * k + 4 * t) as *const __m128i)
                };
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let (a, b) = (_mm_unpacklo_epi32(r0, r1), _mm_unpacklo_epi32(r2, r3));
                let (c, d) = (_mm_unpackhi_epi32(r0, r1), _mm_unpackhi_epi32(r2, r3));
                let cols = [
                    _mm_unpacklo_epi64(a, b),
                    _mm_unpackhi_epi64(a, b),
                    _mm_unpacklo_epi64(c, d),
                    _mm_unpackhi_epi64(c, d),
                ];
                for (j, col) in cols.into_iter().enumerate() {
                    _mm_storeu_si128(q.as_mut_ptr().add((t + j) * PR + g) as *mut __m128i, col);
                }
            }
        }
    }
}

/// `interleave` one byte at a time: the reference the vector versions are tested against.
#[cfg(test)]
pub(super) fn interleave_scalar(u: &[u8], q: &mut [u32], k: usize) {
    for (t, qt) in q.chunks_exact_mut(PR).take(k / 4).enumerate() {
        for (r, v) in qt.iter_mut().enumerate() {
            let o = r * k + 4 * t;
            *v = u32::from_le_bytes([u[o], u[o + 1], u[o + 2], u[o + 3]]);
        }
    }
}

/// Q8_0 / Q5_0 row → unsigned quants (q + 128, q + 16).
///
/// Both `Isa`s unpack with AVX2 (every CPU with AVX-512F/BW/VL has it): AVX-512's masked add
/// saved two instructions per block, not worth a second copy.
fn unpack_legacy(ty: GgmlType, row: &[u8], u: &mut [u8]) {
    // SAFETY: `Panel::pack` runs only where its `Isa` runs, and both imply AVX2; `row` holds
    // the blocks.
    unsafe { unpack_legacy_avx2(ty, row, u) }
}

/// [`unpack_legacy`] one element at a time: the reference the SIMD unpackers are tested
/// against.
#[cfg(test)]
pub(super) fn unpack_legacy_scalar(ty: GgmlType, row: &[u8], u: &mut [u8]) {
    if ty == GgmlType::Q8_0 {
        for (blk, u) in row.chunks_exact(Q8_0_BYTES).zip(u.chunks_exact_mut(32)) {
            for (o, &q) in u.iter_mut().zip(&blk[2..]) {
                *o = q ^ 0x80;
            }
        }
    } else {
        for (blk, u) in row.chunks_exact(Q5_0_BYTES).zip(u.chunks_exact_mut(32)) {
            let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
            for j in 0..16 {
                let (lo, hi) = q5_pair(&blk[6..22], qh, j);
                (u[j], u[j + 16]) = (lo as u8, hi as u8);
            }
        }
    }
}

/// Q8_0 / Q5_0 row → unsigned quants (q + 128, q + 16), one block per 256-bit vector; Q5_0's
/// fifth bits spread to bytes by a shuffle and compare.
///
/// # Safety
/// AVX2; `row` holds `u.len() / 32` blocks of `ty`.
#[target_feature(enable = "avx2")]
unsafe fn unpack_legacy_avx2(ty: GgmlType, row: &[u8], u: &mut [u8]) {
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
            let hi = _mm256_and_si256(bytes_from_bits_32(qh), bit4);
            _mm256_storeu_si256(up.add(32 * b) as *mut __m256i, _mm256_or_si256(z, hi));
        }
    }
}
