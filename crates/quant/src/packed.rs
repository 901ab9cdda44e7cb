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

use crate::cpu::{self, SimdPath};
use crate::decode_layout::{
    pack_q4k_row, pack_q5_0_row, pack_q8_0_row, packed_row_bytes, GROUP, ONE_ROW_BELOW,
};
use crate::format::QuantError;
use crate::kquants::QK_K;
use crate::qmatrix::QMatrix;
use crate::GgmlType;

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
    /// Products with fewer x rows than this run through the one-row kernels in
    /// [`crate::matmul_q`] too (each weight row read once for up to four x rows), so the decode
    /// layout gives its results bit for bit; from here on `matmul_q`'s panels serve better (and
    /// differ in rounding). [`DecodePacked::matmul`] itself takes any number of rows.
    pub const MAX_ROWS: usize = ONE_ROW_BELOW;

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

    /// `y[m×rows] = x[m×cols] · Wᵀ`, each W row read once for a few x rows at a time (meant
    /// for m < [`Self::MAX_ROWS`]); row `i` of `y` has the bits of x row `i`'s product alone.
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
        if m == 0 {
            return Ok(());
        }
        // SAFETY: `pack` built this only where `kernel_available()` (the features the
        // kernels are compiled for); the data holds `rows` packed rows of `cols` elements
        // of `ty` with `cols % 128 == 0` (Q5_0), `cols % 64 == 0` (Q8_0) or
        // `cols % 256 == 0` (Q4_K), and both slices were checked above.
        #[cfg(target_arch = "x86_64")]
        {
            unsafe { crate::simd::gemm512::matvec_packed(self.ty, &self.data, self.cols, x, m, y) };
            Ok(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("`pack` builds a DecodePacked only on x86-64")
    }

    /// Bytes held (the same as the file's, but for Q4_K's 148 per super-block against 144).
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }
}

fn kernel_available() -> bool {
    // VBMI as well: where it is missing, `matmul_q` takes the generic one-row kernels, and
    // a decode step should not depend on whether a matrix was packed.
    cpu::active() == SimdPath::Avx512 && cpu::avx512vbmi()
}

/// A matrix's int8 panels (the prefill layout: 16 rows' quants interleaved four at a time,
/// with their sub-block scales), packed once. [`crate::matmul_q`] packs them again at every
/// product, which is most of the work when only a few x rows pass each panel — a server
/// decoding 16 sequences at once spent over half its time packing on Zen 3 (`perf`). About
/// one byte per weight plus the scales (≈ 300 MB for Gemma 3 270M), so it is for callers that
/// run many small batches, not the default. Bit-identical to [`crate::matmul_q`] for
/// `m ≥` [`PanelPacked::MIN_ROWS`].
pub struct PanelPacked {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    #[cfg(target_arch = "x86_64")]
    inner: crate::simd::gemm512::Prepacked,
}

impl PanelPacked {
    /// Fewest x rows [`PanelPacked::matmul`] takes: below it `matmul_q` runs the one-row
    /// kernels, whose sums are ordered otherwise.
    pub const MIN_ROWS: usize = ONE_ROW_BELOW;

    /// Whether keeping panels packed pays for its memory on this CPU: on the AVX-512 panels a
    /// 16-sequence served step of Gemma 3 270M took 44 → 36 ms with them (kept panels are
    /// fetched a panel ahead; packing at every product was a third of the step) and the
    /// server's output 219 → 305 tok/s (Intel Xeon with AMX, 2 threads); on AVX2 it measured
    /// +0–16%, inside the noise, for the same one byte more per weight.
    pub fn worth_keeping() -> bool {
        crate::cpu::cpu().simd_path() == crate::SimdPath::Avx512
    }

    /// `w`'s panels, or `None` where `matmul_q` runs no panels for it (another type, a CPU
    /// without AVX2, or not x86-64).
    pub fn pack(w: &QMatrix) -> Option<PanelPacked> {
        #[cfg(target_arch = "x86_64")]
        {
            crate::simd::gemm512::prepack(w).map(|inner| PanelPacked {
                ty: w.ty,
                rows: w.rows,
                cols: w.cols,
                inner,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = w;
            None
        }
    }

    /// `y[m×rows] = x[m×cols] · Wᵀ` for `m ≥` [`PanelPacked::MIN_ROWS`].
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), QuantError> {
        if x.len() != m * self.cols || y.len() != m * self.rows || m < Self::MIN_ROWS {
            return Err(QuantError::Shape(format!(
                "panels {}×{}: x has {} and y {} elements for m = {m} (at least {} rows)",
                self.rows,
                self.cols,
                x.len(),
                y.len(),
                Self::MIN_ROWS
            )));
        }
        #[cfg(target_arch = "x86_64")]
        {
            // Only the shape is read from this view; the panels hold the weights.
            let shape = QMatrix {
                ty: self.ty,
                rows: self.rows,
                cols: self.cols,
                data: &[],
            };
            // SAFETY: shapes checked above; `inner` was packed by `prepack` for this shape on
            // this CPU (the active SIMD path does not change during a run).
            unsafe { crate::simd::gemm512::matmul_prepacked(&shape, &self.inner, x, m, y) };
            Ok(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no PanelPacked is made off x86-64")
    }
}
