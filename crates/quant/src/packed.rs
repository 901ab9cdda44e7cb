//! Weights re-laid out for the one-row (decode) product.
//!
//! A decode step reads every weight once for a single activation row, so the cost per block
//! is the unpacking, not the arithmetic. GGUF's Q5_0 block (f16 scale, 32 fifth bits, 16
//! nibble bytes) needs a byte permute, two scalar loads and a mask move per pair of blocks
//! and a gather for the scales. [`DecodePacked`] holds the same bytes per row grouped by
//! kind — all scales, all fifth-bit words, then the nibbles of each four blocks arranged so
//! that one 64-byte load and two shifts give 128 elements in order — which the AVX-512
//! kernel reads with plain loads. Q8_0's block (f16 scale, 32 signed bytes) costs a masked
//! load, a word permute and a conversion per pair of blocks for the scales; its layout holds
//! all scales first (one conversion per 16 blocks) and then the quants, already offset to the
//! unsigned form the kernel multiplies (one plain load per pair): this is the LM head of a
//! Gemma-class model, 70% of a decode step's bytes, whose one-thread speed its unpacking
//! bounded (16 GB/s from memory against 24 GB/s read bandwidth on a 2-core Zen 4). Q4_K's
//! super-block keeps its two f16 scales, then holds its eight 6-bit sub-block scales and
//! eight mins as sixteen plain bytes (the file packs them into twelve, which the kernel
//! unpacked with a dozen scalar operations per block and row: 148 bytes per 256 elements
//! instead of 144), then its nibbles in the Q5_0 layout's order (one load and two masks per
//! 128 elements in order, where the file's order needs a load, two masks and an insert per
//! 64). A matrix is packed once (on the first decode step) and gives bit-identical results to
//! [`crate::matmul_q`] on the file's layout.

use rayon::prelude::*;

use crate::kquants::{scale_min_words_k4, Q4_K_BYTES, QK_K};
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};
use crate::matmul::QMatrix;
use crate::{GgmlType, QuantError};

/// Elements per group whose nibbles share one 64-byte run.
const GROUP: usize = 128;

/// Source bytes packed between two calls of `pack_releasing`'s `done`.
const RELEASE_BYTES: usize = 4 << 20;

/// A matrix in the decode layout; Q5_0, Q8_0 and Q4_K have one (the types whose unpacking
/// bounds the body and the head of a Gemma-class decode step).
pub struct DecodePacked {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    data: Vec<u8>,
}

impl DecodePacked {
    /// Products with fewer x rows than this run one row at a time in [`crate::matmul_q`] too, so
    /// the decode layout gives its results bit for bit; from here on `matmul_q`'s panels serve
    /// better (and differ in rounding).
    pub const MAX_ROWS: usize = crate::matmul::ONE_ROW_BELOW;

    /// The decode layout of `w`, or `None` where it would not be used: another type, rows
    /// not a whole number of 128-element groups (Q5_0) or of block pairs (Q8_0), or a CPU
    /// without the AVX-512 kernel.
    pub fn pack(w: &QMatrix) -> Option<DecodePacked> {
        DecodePacked::pack_releasing(w, |_, _| {})
    }

    /// [`DecodePacked::pack`], calling `done(start, len)` for each run of `w.data`'s bytes as
    /// soon as it has been copied (whole rows, about 4 MB at a time, each byte once): a caller
    /// holding the source in a file mapping can let those pages go while the rest is packed, so
    /// the two copies never both sit in memory whole.
    pub fn pack_releasing(w: &QMatrix, done: impl Fn(usize, usize) + Sync) -> Option<DecodePacked> {
        let pack_row: fn(&[u8], &mut [u8]) = match w.ty {
            GgmlType::Q5_0 if w.cols.is_multiple_of(GROUP) => pack_q5_0_row,
            GgmlType::Q8_0 if w.cols.is_multiple_of(64) => pack_q8_0_row,
            GgmlType::Q4K if w.cols.is_multiple_of(QK_K) => pack_q4k_row,
            _ => return None,
        };
        if !kernel_available() {
            return None;
        }
        let (rb, prb) = (w.row_bytes(), packed_row_bytes(w.ty, w.cols));
        let mut data = vec![0u8; w.rows * prb];
        let run_rows = (RELEASE_BYTES / rb.max(1)).max(1);
        data.par_chunks_mut(run_rows * prb)
            .zip(w.data[..w.rows * rb].par_chunks(run_rows * rb))
            .enumerate()
            .for_each(|(i, (dst, src))| {
                for (d, s) in dst.chunks_exact_mut(prb).zip(src.chunks_exact(rb)) {
                    pack_row(s, d);
                }
                done(i * run_rows * rb, src.len());
            });
        Some(DecodePacked {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            data,
        })
    }

    /// `y[m×rows] = x[m×cols] · Wᵀ`, one x row at a time (meant for m < [`Self::MAX_ROWS`]).
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), QuantError> {
        if x.len() != m * self.cols || y.len() != m * self.rows {
            return Err(QuantError::Shape(format!(
                "packed {}×{}: x has {} and y {} elements for m = {m}",
                self.rows,
                self.cols,
                x.len(),
                y.len()
            )));
        }
        for (xr, yr) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(self.rows)) {
            // SAFETY: `pack` built this only where `kernel_available()` (the features the
            // kernels are compiled for); the data holds `rows` packed rows of `cols` elements
            // of `ty` with `cols % 128 == 0` (Q5_0), `cols % 64 == 0` (Q8_0) or
            // `cols % 256 == 0` (Q4_K), and both slices were checked above.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                crate::simd::gemm512::matvec_packed(self.ty, &self.data, self.cols, xr, yr)
            };
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (xr, yr);
                unreachable!("`pack` builds a DecodePacked only on x86-64");
            }
        }
        Ok(())
    }

    /// Bytes held (the same as the file's, but for Q4_K's 148 per super-block against 144).
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }
}

/// Bytes per packed row of `cols` elements of `ty` (a type `pack` takes).
pub(crate) fn packed_row_bytes(ty: GgmlType, cols: usize) -> usize {
    match ty {
        GgmlType::Q4K => cols / QK_K * Q4K_PACKED_BYTES,
        _ => cols / ty.block_size() * ty.type_size(),
    }
}

/// A Q4_K super-block in the decode layout: 4 bytes of f16 scales, 16 of sub-block scales and
/// mins, 128 of nibbles.
pub(crate) const Q4K_PACKED_BYTES: usize = Q4_K_BYTES + 4;

fn kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // VBMI as well: where it is missing, `matmul_q` takes the generic one-row kernels, and
        // a decode step should not depend on whether a matrix was packed.
        crate::simd::active() == crate::SimdPath::Avx512
            && std::arch::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One Q5_0 row (`src`, whole blocks, a multiple of four of them) into the decode layout:
/// scales, then fifth-bit words, then per four blocks 64 bytes with element i of the group
/// in the low and element 64 + i in the high nibble of byte i.
fn pack_q5_0_row(src: &[u8], dst: &mut [u8]) {
    let nb = src.len() / Q5_0_BYTES;
    let (scales, rest) = dst.split_at_mut(2 * nb);
    let (bits, nibbles) = rest.split_at_mut(4 * nb);
    let mut quant = [0u8; GROUP];
    for (g, out) in nibbles.chunks_exact_mut(GROUP / 2).enumerate() {
        for j in 0..4 {
            let b = 4 * g + j;
            let blk = &src[b * Q5_0_BYTES..(b + 1) * Q5_0_BYTES];
            scales[2 * b..2 * b + 2].copy_from_slice(&blk[0..2]);
            bits[4 * b..4 * b + 4].copy_from_slice(&blk[2..6]);
            // GGUF order: element e < 16 is the low nibble of byte e, e ≥ 16 the high one of e - 16.
            for e in 0..32 {
                let byte = blk[6 + e % 16];
                quant[32 * j + e] = if e < 16 { byte & 0x0f } else { byte >> 4 };
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = quant[i] | (quant[64 + i] << 4);
        }
    }
}

/// One Q8_0 row (`src`, whole blocks) into the decode layout: the `nb` f16 scales, then the
/// `nb · 32` quants as unsigned bytes (q + 128, the kernel's offset form).
fn pack_q8_0_row(src: &[u8], dst: &mut [u8]) {
    let nb = src.len() / Q8_0_BYTES;
    let (scales, quants) = dst.split_at_mut(2 * nb);
    for (b, blk) in src.chunks_exact(Q8_0_BYTES).enumerate() {
        scales[2 * b..2 * b + 2].copy_from_slice(&blk[0..2]);
        for (o, &q) in quants[32 * b..32 * (b + 1)].iter_mut().zip(&blk[2..]) {
            *o = q ^ 0x80;
        }
    }
}

/// One Q4_K row (`src`, whole super-blocks) into the decode layout: per super-block the two
/// f16 scales as they are; the eight 6-bit scales then the eight 6-bit mins, a byte each (the
/// bytes the one-row kernel unpacks from the file's twelve); then per half `h` 64 bytes whose
/// byte `i` holds element `128h + i` in its low and `128h + 64 + i` in its high nibble.
fn pack_q4k_row(src: &[u8], dst: &mut [u8]) {
    for (blk, out) in src
        .chunks_exact(Q4_K_BYTES)
        .zip(dst.chunks_exact_mut(Q4K_PACKED_BYTES))
    {
        out[0..4].copy_from_slice(&blk[0..4]);
        let words = scale_min_words_k4(blk[4..16].try_into().expect("12 bytes"));
        for (o, w) in out[4..20].chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        // File order: 64-element chunk j is 32 bytes, element 64j + t in the low nibble of
        // byte t (t < 32) or the high nibble of byte t - 32.
        let nibble = |e: usize| {
            let (j, t) = (e / 64, e % 64);
            let byte = blk[16 + 32 * j + t % 32];
            if t < 32 {
                byte & 0x0f
            } else {
                byte >> 4
            }
        };
        for h in 0..2 {
            for i in 0..64 {
                out[20 + 64 * h + i] = nibble(128 * h + i) | (nibble(128 * h + 64 + i) << 4);
            }
        }
    }
}
