//! [`pack_w_q8_0_into`]: the `W`-side packing of [`pack_w_into`] straight from Q8_0 bytes, on
//! AVX-512 BF16 (dequantize, round and interleave in registers), for the lean LM head that
//! re-packs Gemma's whole Q8_0 table at every step.
//!
//! [`pack_w_into`]: crate::bf16::pack_w_into

use super::operands::PackedB;
#[cfg(target_arch = "x86_64")]
use super::operands::NB;

/// [`pack_w_into`] for `W (rows, cols)` held as Q8_0 rows (`q8`: the file's bytes of exactly
/// those rows), straight from the quantized bytes: each element `d · q` is exact in f32 (an f16
/// scale times an 8-bit integer) and rounds to the same bf16 either way, so the packing is
/// the same bit for bit, without the f32 rows, their rounding pass and the pair shuffle of the
/// general path (the lean LM head re-packs Gemma's whole Q8_0 table at every step). Returns
/// `false`, leaving `b` alone, where this CPU lacks AVX-512 BW + BF16: use [`pack_w_into`].
///
/// # Panics
/// If `cols` is not a multiple of 32 or `q8` is not `rows` Q8_0 rows of `cols` elements.
///
/// [`pack_w_into`]: crate::bf16::pack_w_into
pub fn pack_w_q8_0_into(q8: &[u8], rows: usize, cols: usize, b: &mut PackedB) -> bool {
    assert!(cols.is_multiple_of(32), "Q8_0 rows have whole blocks of 32");
    let rb = cols / 32 * smolt_quant::GgmlType::Q8_0.type_size();
    assert_eq!(q8.len(), rows * rb, "q8 is not {rows} Q8_0 rows of {cols}");
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::bf16_available() && crate::cpu::avx512bw() {
        b.reshape(rows, cols);
        let stride = b.kp * NB;
        // SAFETY: AVX-512 F/BW/BF16 found above; `q8` holds `rows` rows of `rb` bytes (assert),
        // and `b`, shaped (rows, cols), holds cols / 32 panels of `stride` u16, each with
        // kp / 2 ≥ ceil(rows / 2) pair rows of 64.
        unsafe { avx512::q8_0_backward(q8.as_ptr(), rows, cols / 32, b.data.as_mut_ptr(), stride) };
        return true;
    }
    let _ = (b, rb);
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// The backward packing of `rows` Q8_0 rows of `blocks` blocks: pair row `q` of panel `jb`
    /// (`dst[jb·stride + q·64 ..][..64]`) interleaves block `jb` of rows `2q` and `2q + 1`
    /// (the zero row past an odd end), dequantized and rounded to bf16 (to nearest even, as
    /// `f32_to_bf16`; the products are exact normal f32, so the instruction's treatment of
    /// subnormals never applies). Rows 32 at a time and panel by panel within them, so that
    /// the reads stay in L1 and the writes run 2 KB at a time.
    ///
    /// # Safety
    /// AVX-512 F/BW/BF16; `q8` holds `rows` rows of `blocks · 34` bytes; `dst` holds `blocks`
    /// panels `stride` apart, each with `ceil(rows / 2)` pair rows of 64 u16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn q8_0_backward(
        q8: *const u8,
        rows: usize,
        blocks: usize,
        dst: *mut u16,
        stride: usize,
    ) {
        let rb = blocks * 34;
        // Word i of the first output holds x[i/2] for even i, y[i/2] for odd (x in the first
        // table, y = the second at index 32 + ...); the second output continues at 16.
        let lo_idx = _mm512_set_epi16(
            47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37, 5, 36,
            4, 35, 3, 34, 2, 33, 1, 32, 0,
        );
        let hi_idx = _mm512_add_epi16(lo_idx, _mm512_set1_epi16(16));
        let row_bf16 = |r: *const u8| -> __m512i {
            let d = _mm512_set1_ps(smolt_quant::f16_to_f32(u16::from_le_bytes([*r, *r.add(1)])));
            let q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(r.add(2) as *const __m128i));
            let q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(r.add(18) as *const __m128i));
            let f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d);
            let f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d);
            // Words 0..16 from f0, 16..32 from f1. The transmute only renames the 64 bytes'
            // lane type (both are plain 512-bit vectors).
            std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(f1, f0))
        };
        for r0 in (0..rows).step_by(32) {
            let r1 = (r0 + 32).min(rows);
            for jb in 0..blocks {
                let panel = dst.add(jb * stride);
                let mut r = r0;
                while r < r1 {
                    let x = row_bf16(q8.add(r * rb + jb * 34));
                    let y = if r + 1 < r1 {
                        row_bf16(q8.add((r + 1) * rb + jb * 34))
                    } else {
                        _mm512_setzero_si512()
                    };
                    let o = panel.add((r / 2) * 64);
                    _mm512_storeu_si512(o as *mut __m512i, _mm512_permutex2var_epi16(x, lo_idx, y));
                    _mm512_storeu_si512(
                        o.add(32) as *mut __m512i,
                        _mm512_permutex2var_epi16(x, hi_idx, y),
                    );
                    r += 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::packing::{pack_w_into, PackScratch};
    use super::*;
    use crate::test_util::randn;

    /// The Q8_0 path packs what the general one packs from the dequantized rows, bit for bit:
    /// odd and even row counts, partial 32-row slabs, one and several panels, a scratch last
    /// shaped otherwise; a rounding tie and the extremes ±127 of the quants among the values.
    #[test]
    fn q8_0_packing_matches_the_decoded_rows() {
        use smolt_quant::{dequantize_row, quantize_row, GgmlType};
        let mut b = PackedB::empty();
        let mut scratch = PackScratch::default();
        let mut checked = 0;
        for (rows, cols) in [(1, 32), (2, 64), (31, 32), (33, 640), (70, 96), (64, 640)] {
            let w = randn(rows * cols, rows as u64 * 13 + cols as u64);
            let rb = cols / 32 * 34;
            let mut q8 = vec![0u8; rows * rb];
            for (r, out) in q8.chunks_mut(rb).enumerate() {
                quantize_row(GgmlType::Q8_0, &w[r * cols..][..cols], out).unwrap();
            }
            // A scale of 2^-7·(1 + 2^-8) times 1: a product exactly halfway between two bf16.
            q8[0..2].copy_from_slice(
                &smolt_quant::f32_to_f16(1.0 / 128.0 + 1.0 / 32768.0).to_le_bytes(),
            );
            q8[2] = 1;
            let mut dq = vec![0f32; rows * cols];
            for (r, out) in dq.chunks_mut(cols).enumerate() {
                dequantize_row(GgmlType::Q8_0, &q8[r * rb..][..rb], out).unwrap();
            }
            let mut want = PackedB::empty();
            pack_w_into(
                rows,
                cols,
                |r0, r1, out| out.copy_from_slice(&dq[r0 * cols..r1 * cols]),
                &mut want,
                &mut scratch,
            );
            if !pack_w_q8_0_into(&q8, rows, cols, &mut b) {
                continue;
            }
            checked += 1;
            assert_eq!((b.k, b.n, b.kp), (want.k, want.n, want.kp));
            assert!(b.data == want.data, "({rows}, {cols}) differs");
        }
        // Where the CPU has the instructions, every shape was compared.
        assert!(checked == 0 || checked == 6);
    }
}
