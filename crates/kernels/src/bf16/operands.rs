//! The two operands of a bf16 product in the tile unit's layouts: the activations `a` rounded
//! per call ([`BfRows`], 16 × 32 tiles) and a frozen `b` packed once ([`PackedB`], element
//! pairs along `k` in 32-column panels), with the block sizes both hardware kernels use.

use super::aligned::LineVec;
use crate::simd::multiversion;
use crate::Float;
use rayon::prelude::*;
use smolt_quant::{bf16_to_f32, f32_to_bf16};

/// `dst = bf16(src · scale)`, branch-free so that it vectorises (called with `F = f32`).
#[inline(always)]
fn round_into<F: Float>(src: &[F], dst: &mut [u16], scale: F) {
    for (d, &v) in dst.iter_mut().zip(src) {
        let u = ((v * scale).to_f64() as f32).to_bits();
        let rounded = (u + (0x7fff + ((u >> 16) & 1))) >> 16;
        let nan = (u & 0x7fff_ffff) > 0x7f80_0000;
        *d = if nan { (u >> 16) | 64 } else { rounded } as u16;
    }
}

multiversion! {
    /// The rows of one 16-row block of `x (·, k)` (`x` holds them, `rows ≤ 16`) rounded into
    /// the block's tiles `d` (`16 · kp`): row `i`'s columns `32s..` go to tile `s`, row `i`.
    /// One dispatch per block, not per 32 values (the conversion took 13% of the forward's
    /// projections when each 32 went through the dispatch).
    fn round_block_into<F: Float>(x: &[F], k: usize, d: &mut [u16], scale: F) {
        for (i, xr) in x.chunks(k).enumerate() {
            for (s, xs) in xr.chunks(KB).enumerate() {
                round_into(xs, &mut d[s * 512 + i * 32..][..xs.len()], scale);
            }
        }
    }
}

/// Rows of the AMX blocks: `m` is processed 32 rows at a time.
pub(super) const MB: usize = 32;
/// Columns of the AMX blocks.
pub(super) const NB: usize = 32;
/// `k` per tile step (32 bf16 = one 64-byte tile row).
pub(super) const KB: usize = 32;
/// Bytes of A's rows a task keeps in L2 while it sweeps its column blocks (a quarter of a
/// 2 MB L2): without the grouping, an A of more than the L2 (the LM head's softmax, 511 × 2048
/// bf16 = 2 MB) came from L3 once per column block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) const A_GROUP_BYTES: usize = 512 << 10;

/// Activations `(m, k)` rounded to bf16, in the tile unit's order: blocks of 16 rows × 32
/// columns (one 1 KB tile, rows contiguous), row blocks outermost. Rows are padded with zeros
/// to a multiple of 32 and columns to a multiple of 32.
pub struct BfRows {
    pub m: usize,
    pub k: usize,
    /// `k` rounded up to 32.
    pub(super) kp: usize,
    pub(super) data: LineVec<u16>,
}

impl BfRows {
    /// `x (m, k)` rounded to bf16, each element times `scale`.
    pub fn from_f32(x: &[f32], m: usize, k: usize, scale: f32) -> BfRows {
        assert_eq!(x.len(), m * k, "x is not (m, k)");
        let kp = k.next_multiple_of(KB);
        let mut data = LineVec::filled(m.next_multiple_of(MB) * kp, 0);
        // One 16-row block per task: 16·kp contiguous elements.
        let work = |(rb, d): (usize, &mut [u16])| {
            let (r0, r1) = (rb * 16, (rb * 16 + 16).min(m));
            if r0 < r1 && k > 0 {
                round_block_into::<f32>(&x[r0 * k..r1 * k], k, d, scale);
            }
        };
        if m * k >= 1 << 16 {
            data.par_chunks_mut(16 * kp).enumerate().for_each(work);
        } else {
            data.chunks_mut(16 * kp).enumerate().for_each(work);
        }
        BfRows { m, k, kp, data }
    }

    /// `xᵀ (cols, rows)` for `x (rows, cols)`, rounded to bf16 (times `scale`), on the calling
    /// thread: the transposed operand of a product (`pᵀ · dout` in attention's backward)
    /// without an f32 copy of the transpose. Each tile gathers a column strip of 16 `x`
    /// columns, its rows read contiguously.
    pub fn from_f32_transposed(x: &[f32], rows: usize, cols: usize, scale: f32) -> BfRows {
        assert_eq!(x.len(), rows * cols, "x is not (rows, cols)");
        let (m, k) = (cols, rows);
        let kp = k.next_multiple_of(KB);
        let mut data = LineVec::filled(m.next_multiple_of(MB) * kp, 0);
        for (rb, d) in data.chunks_mut(16 * kp).enumerate() {
            let (c0, w) = (rb * 16, 16.min(m.saturating_sub(rb * 16)));
            if w == 0 {
                break;
            }
            for (i, xr) in x.chunks(cols).enumerate() {
                // out (c0 + j, i) = x (i, c0 + j): tile i / 32, row j, column i % 32.
                let o = (i / KB) * 512 + i % KB;
                for (j, &v) in xr[c0..c0 + w].iter().enumerate() {
                    d[o + j * 32] = round_bf16(v * scale);
                }
            }
        }
        BfRows { m, k, kp, data }
    }

    fn at(&self, r: usize, c: usize) -> u16 {
        self.data[((r / 16) * (self.kp / KB) + c / KB) * 512 + (r % 16) * 32 + c % KB]
    }

    /// Row `i` as f32 (exact).
    pub fn row_f32(&self, i: usize) -> Vec<f32> {
        (0..self.k).map(|c| bf16_to_f32(self.at(i, c))).collect()
    }
}

/// A frozen `(k, n)` matrix in bf16, packed for the tile unit: pairs along `k`, 32 columns
/// per panel, panels outermost (`[n/32][k/2][32][2]`), so one panel's tiles are contiguous.
/// `k` and `n` are padded with zeros to multiples of 32.
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    /// `k` rounded up to 32.
    pub(super) kp: usize,
    pub(super) data: LineVec<u16>,
}

impl PackedB {
    fn zeroed(k: usize, n: usize) -> PackedB {
        let kp = k.next_multiple_of(KB);
        PackedB {
            k,
            n,
            kp,
            data: LineVec::filled(n.next_multiple_of(NB) * kp, 0),
        }
    }

    #[inline(always)]
    fn idx(kp: usize, i: usize, j: usize) -> usize {
        ((j / NB) * (kp / 2) + i / 2) * 2 * NB + (j % NB) * 2 + i % 2
    }

    /// `b = W` for `W (rows, cols)` given row by row (`k = rows`, `n = cols`): the backward
    /// product `dy · W`. `row(i, out)` fills `out` (`cols`) with row `i` of `W`.
    pub fn from_rows(rows: usize, cols: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> PackedB {
        let mut b = PackedB::zeroed(rows, cols);
        let kp = b.kp;
        // A task per panel of 32 columns: it decodes all rows, so decode 32 rows at a time
        // once and scatter them into every panel instead, serially per 32-row slab.
        let mut slab = vec![0f32; KB * cols];
        for i0 in (0..rows).step_by(KB) {
            let i1 = (i0 + KB).min(rows);
            slab[..(i1 - i0) * cols]
                .par_chunks_mut(cols)
                .enumerate()
                .for_each(|(di, out)| row(i0 + di, out));
            let slab = &slab;
            b.data
                .par_chunks_mut(kp * NB)
                .enumerate()
                .for_each(|(jb, panel)| {
                    for i in i0..i1 {
                        for j in jb * NB..((jb + 1) * NB).min(cols) {
                            panel[PackedB::idx(kp, i, j - jb * NB)] =
                                f32_to_bf16(slab[(i - i0) * cols + j]);
                        }
                    }
                });
        }
        b
    }

    /// `b = Wᵀ` for `W (rows, cols)` given as a dense f32 slice (`k = cols`, `n = rows`): the
    /// forward product `x · Wᵀ`.
    pub fn from_rows_transposed(w: &[f32], rows: usize, cols: usize) -> PackedB {
        assert_eq!(w.len(), rows * cols, "w is not (rows, cols)");
        let mut b = PackedB::zeroed(cols, rows);
        let kp = b.kp;
        b.data
            .par_chunks_mut(kp * NB)
            .enumerate()
            .for_each(|(jb, panel)| {
                for j in jb * NB..((jb + 1) * NB).min(rows) {
                    let wr = &w[j * cols..][..cols];
                    for (i, &v) in wr.iter().enumerate() {
                        panel[PackedB::idx(kp, i, j - jb * NB)] = f32_to_bf16(v);
                    }
                }
            });
        b
    }

    /// A 0 × 0 packing: the scratch that [`pack_rows_into`] refills.
    ///
    /// [`pack_rows_into`]: crate::bf16::pack_rows_into
    pub fn empty() -> PackedB {
        PackedB::zeroed(0, 0)
    }

    /// Makes this a `(k, n)` packing whose padding is zero, for [`pack_rows_into`] to fill,
    /// keeping the allocation: a no-op when the shape is unchanged, since fills write only the
    /// inside and the padding of the last fill of this shape is still zero.
    ///
    /// [`pack_rows_into`]: crate::bf16::pack_rows_into
    pub fn reshape(&mut self, k: usize, n: usize) {
        let kp = k.next_multiple_of(KB);
        let len = n.next_multiple_of(NB) * kp;
        if (self.k, self.n) != (k, n) || self.data.len() != len {
            self.data.refill(len, 0);
            (self.k, self.n, self.kp) = (k, n, kp);
        }
    }

    /// Element `(i, j)` as f32 (exact).
    pub fn get(&self, i: usize, j: usize) -> f32 {
        bf16_to_f32(self.data[PackedB::idx(self.kp, i, j)])
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// The whole matrix as f32 `(k, n)` row-major: the fallback's operand.
    pub(super) fn unpack(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        out.par_chunks_mut(self.n).enumerate().for_each(|(i, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.get(i, j);
            }
        });
        out
    }
}

/// `bf16(v)`, exactly [`f32_to_bf16`] but branch-free so that loops of it vectorise.
#[inline(always)]
pub(super) fn round_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    let nan = (u & 0x7fff_ffff) > 0x7f80_0000;
    (if nan { (u >> 16) | 64 } else { rounded }) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::randn;

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even below
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, even above
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn packings_hold_the_matrix() {
        let (rows, cols) = (5, 7);
        let w = randn(rows * cols, 4);
        let b = PackedB::from_rows(rows, cols, |i, out| {
            out.copy_from_slice(&w[i * cols..][..cols])
        });
        let bt = PackedB::from_rows_transposed(&w, rows, cols);
        for i in 0..rows {
            for j in 0..cols {
                let want = bf16_to_f32(f32_to_bf16(w[i * cols + j]));
                assert_eq!(b.get(i, j), want);
                assert_eq!(bt.get(j, i), want);
            }
        }
    }

    /// The transposed constructor holds `xᵀ` exactly as `from_f32` of an explicit transpose
    /// would, padding included, for shapes off the 16- and 32-element tile sizes.
    #[test]
    fn transposed_rows_equal_rows_of_the_transpose() {
        for &(rows, cols) in &[(1, 1), (5, 7), (33, 17), (64, 256), (100, 45)] {
            let x = randn(rows * cols, rows as u64 * 31 + cols as u64);
            let xt: Vec<f32> = (0..cols)
                .flat_map(|j| (0..rows).map(move |i| (i, j)))
                .map(|(i, j)| x[i * cols + j])
                .collect();
            let want = BfRows::from_f32(&xt, cols, rows, 0.5);
            let got = BfRows::from_f32_transposed(&x, rows, cols, 0.5);
            assert_eq!((got.m, got.k, got.kp), (want.m, want.k, want.kp));
            assert!(got.data == want.data, "({rows}, {cols}) differs");
        }
    }
}
