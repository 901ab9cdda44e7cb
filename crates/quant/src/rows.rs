//! Products against slices of a quantized matrix's rows, for a caller that parallelises
//! over the slices itself: the LM head's vocabulary chunks, where a fused cross-entropy
//! walks the 262,144 rows a chunk at a time on each thread.
//!
//! The activations are quantized once ([`QuantizedRows::new`]) and reused by every slice;
//! each slice runs on the calling thread through the same AVX-512 VNNI panels as
//! [`crate::matmul_q`] (exact integer block sums, float scales), so a slice's outputs equal
//! the corresponding columns of `matmul_q`'s, bit for bit, at every row count where
//! `matmul_q` runs panels (from [`crate::PanelPacked::MIN_ROWS`]; fewer rows take its
//! one-row kernels, equal up to rounding). Only where those panels run:
//! [`QuantizedRows::new`] answers `None` elsewhere and the caller keeps its own path.

use crate::format::QuantError;
use crate::qmatrix::QMatrix;
use crate::GgmlType;

/// `x (m × k)` quantized as `matmul_q` would for a weight type (`vec_dot_type`).
pub struct QuantizedRows {
    // Read only by the x86-64 panels (elsewhere no value is ever made).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    k: usize,
    #[cfg(target_arch = "x86_64")]
    x: crate::simd::gemm512::RowsX,
}

/// Per-thread scratch of [`QuantizedRows::matmul_rows`] (one unpacked 16-row panel).
pub struct RowsScratch {
    #[cfg(target_arch = "x86_64")]
    inner: crate::simd::gemm512::RowsScratch,
}

impl Default for RowsScratch {
    fn default() -> Self {
        RowsScratch {
            #[cfg(target_arch = "x86_64")]
            inner: crate::simd::gemm512::RowsScratch::new(),
        }
    }
}

/// Whether the panels run here (the AVX-512 path with VNNI) for weights of `ty`.
pub fn rows_available(ty: GgmlType) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::cpu::active() == crate::cpu::SimdPath::Avx512 && crate::simd::gemm512::supports(ty)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ty;
        false
    }
}

impl QuantizedRows {
    /// Quantizes `x (m × k)` for products with weights of type `ty`; `None` where
    /// [`rows_available`] is false. Panics if `x` is not `m × k` or `k` is not a whole number
    /// of `ty`'s blocks.
    pub fn new(ty: GgmlType, x: &[f32], m: usize, k: usize) -> Option<QuantizedRows> {
        if !rows_available(ty) {
            return None;
        }
        assert_eq!(x.len(), m * k, "x is not m × k");
        assert!(
            k.is_multiple_of(ty.block_size()),
            "k = {k} is not a whole number of {} blocks",
            ty.name()
        );
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `rows_available` checked that the active table is the AVX-512 one, which
            // exists only on CPUs with every feature gemm512 is compiled for; x is m × k.
            let x = unsafe { crate::simd::gemm512::rows_x(ty, x, m, k) }?;
            Some(QuantizedRows { k, x })
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("rows_available is false off x86-64")
    }

    /// Rows of activations.
    pub fn m(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            self.x.m
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("never built off x86-64")
    }

    /// `y[i·ldy + (j − r0)] = x_i · W_jᵀ` for `i < m` and the rows `j` of `w` in `r0..r1`,
    /// on the calling thread.
    pub fn matmul_rows(
        &self,
        w: &QMatrix,
        r0: usize,
        r1: usize,
        y: &mut [f32],
        ldy: usize,
        scratch: &mut RowsScratch,
    ) -> Result<(), QuantError> {
        #[cfg(target_arch = "x86_64")]
        {
            w.validate()?;
            if w.ty != self.x.ty || w.cols != self.k {
                return Err(QuantError::Shape(format!(
                    "activations quantized for {} with k = {}, weights are {} with k = {}",
                    self.x.ty.name(),
                    self.k,
                    w.ty.name(),
                    w.cols
                )));
            }
            let m = self.x.m;
            if r0 > r1
                || r1 > w.rows
                || r1 - r0 > ldy
                || (m > 0 && y.len() < (m - 1) * ldy + (r1 - r0))
            {
                return Err(QuantError::Shape(format!(
                    "rows {r0}..{r1} of {}, ldy {ldy}, y of {} for m = {m}",
                    w.rows,
                    y.len()
                )));
            }
            // SAFETY: `self` exists only where the AVX-512 table does (see `new`); types and
            // shapes were checked above.
            unsafe {
                crate::simd::gemm512::matmul_rows(w, r0, r1, &self.x, y, ldy, &mut scratch.inner)
            };
            Ok(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (w, r0, r1, y, ldy, scratch);
            unreachable!("never built off x86-64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::quantize_row;
    use crate::matmul::matmul_q;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn matrix(ty: GgmlType, n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let rb = k / ty.block_size() * ty.type_size();
        let mut w = vec![0u8; n * rb];
        for d in w.chunks_mut(rb) {
            let r: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            quantize_row(ty, &r, d).unwrap();
        }
        w
    }

    /// Slices of rows at odd offsets, and x row counts off the 4-row tile, give `matmul_q`'s
    /// columns bit for bit, for every type the panels take.
    #[test]
    fn slices_equal_matmul_q_columns() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (ty, k) in [
            (GgmlType::Q8_0, 640),
            (GgmlType::Q5_0, 96),
            (GgmlType::Q4K, 256),
            (GgmlType::Q6K, 512),
        ] {
            if !rows_available(ty) {
                eprintln!("skipped: no AVX-512 VNNI panels on this CPU");
                return;
            }
            let n = 75;
            let w = matrix(ty, n, k, &mut rng);
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            let min = crate::PanelPacked::MIN_ROWS;
            for m in [min, min + 1, 13] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
                let mut full = vec![0f32; m * n];
                matmul_q(&qm, &x, m, &mut full).unwrap();
                let xq = QuantizedRows::new(ty, &x, m, k).unwrap();
                assert_eq!(xq.m(), m);
                let mut scratch = RowsScratch::default();
                for (r0, r1) in [(0, n), (5, 38), (38, 75), (16, 17), (9, 9)] {
                    let ldy = r1 - r0 + 3;
                    let mut y = vec![f32::NAN; m * ldy];
                    xq.matmul_rows(&qm, r0, r1, &mut y, ldy, &mut scratch)
                        .unwrap();
                    for i in 0..m {
                        for j in r0..r1 {
                            assert_eq!(
                                y[i * ldy + j - r0].to_bits(),
                                full[i * n + j].to_bits(),
                                "{} m={m} rows {r0}..{r1}: ({i}, {j})",
                                ty.name()
                            );
                        }
                        // Columns past the slice are not written.
                        assert!(y[i * ldy + (r1 - r0)..(i + 1) * ldy]
                            .iter()
                            .all(|v| v.is_nan()));
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_weights_and_shapes_are_errors() {
        let ty = GgmlType::Q8_0;
        if !rows_available(ty) {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let w = matrix(ty, 8, 64, &mut rng);
        let qm = QMatrix::new(ty, 8, 64, &w).unwrap();
        let xq = QuantizedRows::new(ty, &vec![0.5; 4 * 32], 4, 32).unwrap();
        let mut s = RowsScratch::default();
        let mut y = vec![0f32; 4 * 8];
        assert!(
            xq.matmul_rows(&qm, 0, 8, &mut y, 8, &mut s).is_err(),
            "k differs"
        );
        let xq = QuantizedRows::new(ty, &vec![0.5; 4 * 64], 4, 64).unwrap();
        assert!(
            xq.matmul_rows(&qm, 0, 9, &mut y, 9, &mut s).is_err(),
            "past the rows"
        );
        assert!(
            xq.matmul_rows(&qm, 0, 8, &mut y[..20], 8, &mut s).is_err(),
            "y too short"
        );
        assert!(xq.matmul_rows(&qm, 2, 8, &mut y, 8, &mut s).is_ok());
        assert!(QuantizedRows::new(GgmlType::F32, &[0.0; 4], 1, 4).is_none());
    }
}
