//! bf16 products with f32 accumulation, for the frozen-weight products of training: Intel AMX
//! (`tdpbf16ps`) where the CPU and kernel allow it, else AVX-512 BF16 (`vdpbf16ps`, module
//! `dot`) where the CPU has it, else f32 gemm over the same bf16 values.
//!
//! A product is `c (m, n) (+)= a (m, k) · b (k, n)` with `a` the activations, rounded to bf16
//! per call ([`BfRows`]), and `b` a frozen matrix packed once ([`PackedB`]) in the layout the
//! tile unit reads: element pairs along `k`, `[k/2][n][2]`. A linear layer `W (out, in)` needs
//! two packings, one per direction:
//!
//! ```text
//! forward:   y (T, out) = x (T, in) · Wᵀ      b = PackedB::from_rows_transposed(W)   (k = in)
//! backward:  dx (T, in) += dy (T, out) · W    b = PackedB::from_rows(W)              (k = out)
//! ```
//!
//! Every element is rounded once to bf16 (8 significant bits) and the products are summed in
//! f32, so a product is the f32 product of the rounded operands up to summation order; the
//! fallback computes exactly that with the `gemm` crate, and the tests hold both hardware
//! paths to it.

use crate::matmul::gemm_strided;
use crate::simd::multiversion;
use crate::Float;
use rayon::prelude::*;

/// bf16 conversions: smolt-quant's, the ones the GGUF BF16 format already uses (round to
/// nearest even, NaN kept quiet; widening exact).
pub use smolt_quant::{bf16_to_f32, f32_to_bf16};

mod dot;

multiversion! {
    /// `dst = bf16(src · scale)`, branch-free so that it vectorises (called with `F = f32`).
    fn round_into<F: Float>(src: &[F], dst: &mut [u16], scale: F) {
        for (d, &v) in dst.iter_mut().zip(src) {
            let u = ((v * scale).to_f64() as f32).to_bits();
            let rounded = (u + (0x7fff + ((u >> 16) & 1))) >> 16;
            let nan = (u & 0x7fff_ffff) > 0x7f80_0000;
            *d = if nan { (u >> 16) | 64 } else { rounded } as u16;
        }
    }
}

/// Rows of the AMX blocks: `m` is processed 32 rows at a time.
const MB: usize = 32;
/// Columns of the AMX blocks.
const NB: usize = 32;
/// `k` per tile step (32 bf16 = one 64-byte tile row).
const KB: usize = 32;
/// Bytes of A's rows a task keeps in L2 while it sweeps its column blocks (a quarter of a
/// 2 MB L2): without the grouping, an A of more than the L2 (the LM head's softmax, 511 × 2048
/// bf16 = 2 MB) came from L3 once per column block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const A_GROUP_BYTES: usize = 512 << 10;

/// `c`'s pointer, shared by the tasks of one hardware `gemm` call (AMX or AVX-512 BF16).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Ptr(*mut f32);
// SAFETY: the pointer is only used to write disjoint column blocks of `c` from the
// tasks of one `gemm` call, which `c`'s exclusive borrow outlives.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Ptr {
    /// A method, so closures capture the whole `Ptr` (Send) and not its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `run(u0, u1)` over `units` units of columns (a hardware kernel's column blocks),
/// split into up to two tasks per thread when `parallel` allows and the product (`mnk`
/// multiply-adds) is worth the split.
fn split_columns(units: usize, parallel: bool, mnk: usize, run: impl Fn(usize, usize) + Sync) {
    let tasks = if parallel && rayon::current_num_threads() > 1 && mnk >= 1 << 20 {
        (2 * rayon::current_num_threads()).min(units)
    } else {
        1
    };
    if tasks <= 1 {
        run(0, units);
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each(|t| run(t * units / tasks, (t + 1) * units / tasks));
    }
}

/// Activations `(m, k)` rounded to bf16, in the tile unit's order: blocks of 16 rows × 32
/// columns (one 1 KB tile, rows contiguous), row blocks outermost. Rows are padded with zeros
/// to a multiple of 32 and columns to a multiple of 32.
pub struct BfRows {
    pub m: usize,
    pub k: usize,
    /// `k` rounded up to 32.
    kp: usize,
    data: Vec<u16>,
}

impl BfRows {
    /// `x (m, k)` rounded to bf16, each element times `scale`.
    pub fn from_f32(x: &[f32], m: usize, k: usize, scale: f32) -> BfRows {
        assert_eq!(x.len(), m * k, "x is not (m, k)");
        let kp = k.next_multiple_of(KB);
        let mut data = vec![0u16; m.next_multiple_of(MB) * kp];
        // One 16-row block per task: 16·kp contiguous elements.
        let work = |(rb, d): (usize, &mut [u16])| {
            for i in 0..16 {
                let r = rb * 16 + i;
                if r >= m {
                    break;
                }
                let xr = &x[r * k..][..k];
                for (s, xs) in xr.chunks(KB).enumerate() {
                    round_into::<f32>(xs, &mut d[s * 512 + i * 32..][..xs.len()], scale);
                }
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
        let mut data = vec![0u16; m.next_multiple_of(MB) * kp];
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
    kp: usize,
    data: Vec<u16>,
}

impl PackedB {
    fn zeroed(k: usize, n: usize) -> PackedB {
        let kp = k.next_multiple_of(KB);
        PackedB {
            k,
            n,
            kp,
            data: vec![0u16; n.next_multiple_of(NB) * kp],
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
    pub fn empty() -> PackedB {
        PackedB::zeroed(0, 0)
    }

    /// Makes this a `(k, n)` packing whose padding is zero, for [`pack_rows_into`] to fill,
    /// keeping the allocation: a no-op when the shape is unchanged, since fills write only the
    /// inside and the padding of the last fill of this shape is still zero.
    pub fn reshape(&mut self, k: usize, n: usize) {
        let kp = k.next_multiple_of(KB);
        let len = n.next_multiple_of(NB) * kp;
        if (self.k, self.n) != (k, n) || self.data.len() != len {
            self.data.clear();
            self.data.resize(len, 0);
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
    fn unpack(&self) -> Vec<f32> {
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
fn round_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    let nan = (u & 0x7fff_ffff) > 0x7f80_0000;
    (if nan { (u >> 16) | 64 } else { rounded }) as u16
}

multiversion! {
    /// `dst = bf16(src)` element by element, vectorised (called with `F = f32`).
    fn round_slice<F: Float>(src: &[F], dst: &mut [u16]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = round_bf16(v.to_f64() as f32);
        }
    }
}

/// Up to 32 rows of `W` in bf16 (`slab`, `(rows, cols)`) into one forward panel
/// (`[kp/2][32][2]`): row `j`'s element pairs `(2p, 2p + 1)` go to `panel[p][j]`. A transpose
/// of 32-bit pairs: 8 × 8 blocks in AVX2 registers where the CPU has it, the rest one pair at
/// a time.
fn forward_panel(slab: &[u16], rows: usize, cols: usize, panel: &mut [u16]) {
    assert!(rows <= NB && slab.len() >= rows * cols);
    assert!(panel.len() >= cols.next_multiple_of(KB) * NB);
    // Rows 0..rv and pairs 0..pv in vector blocks.
    #[allow(unused_mut)]
    let (mut rv, mut pv) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= 1 {
        (rv, pv) = (rows / 8 * 8, cols / 16 * 8);
        // SAFETY: `level() >= 1` found AVX2; the asserts above bound every access (rows
        // j < rv ≤ rows read elements < 2·pv ≤ cols of their row; pairs p < pv ≤ kp/2 write
        // panel[p·64 + 2j ..][..16] with 2j + 16 ≤ 64).
        unsafe { avx2::forward_blocks(slab.as_ptr(), cols, rv, pv, panel.as_mut_ptr()) };
    }
    let pairs = cols.div_ceil(2);
    for j in 0..rows {
        let r = &slab[j * cols..][..cols];
        for p in if j < rv { pv } else { 0 }..pairs {
            panel[p * 2 * NB + 2 * j] = r[2 * p];
            if 2 * p + 1 < cols {
                panel[p * 2 * NB + 2 * j + 1] = r[2 * p + 1];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Rows `0..rows` (a multiple of 8) and pairs `0..pairs` (a multiple of 8) of the forward
    /// panel: `panel[p·64 + 2j ..][..2] = slab[j·cols + 2p ..][..2]`.
    ///
    /// # Safety
    /// AVX2; `slab` holds `rows` rows of `cols ≥ 2·pairs`; `panel` holds `pairs · 64` u16 and
    /// `rows ≤ 32`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn forward_blocks(
        slab: *const u16,
        cols: usize,
        rows: usize,
        pairs: usize,
        panel: *mut u16,
    ) {
        for j0 in (0..rows).step_by(8) {
            for p0 in (0..pairs).step_by(8) {
                let src = slab.add(j0 * cols + 2 * p0);
                let ld = |j: usize| _mm256_loadu_si256(src.add(j * cols) as *const __m256i);
                let r = [ld(0), ld(1), ld(2), ld(3), ld(4), ld(5), ld(6), ld(7)];
                // 8 × 8 transpose of 32-bit words: out[p] = (r[0][p], …, r[7][p]).
                let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
                let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
                let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
                let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
                let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
                let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
                let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
                let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
                let u0 = _mm256_unpacklo_epi64(t0, t2);
                let u1 = _mm256_unpackhi_epi64(t0, t2);
                let u2 = _mm256_unpacklo_epi64(t1, t3);
                let u3 = _mm256_unpackhi_epi64(t1, t3);
                let u4 = _mm256_unpacklo_epi64(t4, t6);
                let u5 = _mm256_unpackhi_epi64(t4, t6);
                let u6 = _mm256_unpacklo_epi64(t5, t7);
                let u7 = _mm256_unpackhi_epi64(t5, t7);
                let out = [
                    _mm256_permute2x128_si256(u0, u4, 0x20),
                    _mm256_permute2x128_si256(u1, u5, 0x20),
                    _mm256_permute2x128_si256(u2, u6, 0x20),
                    _mm256_permute2x128_si256(u3, u7, 0x20),
                    _mm256_permute2x128_si256(u0, u4, 0x31),
                    _mm256_permute2x128_si256(u1, u5, 0x31),
                    _mm256_permute2x128_si256(u2, u6, 0x31),
                    _mm256_permute2x128_si256(u3, u7, 0x31),
                ];
                let dst = panel.add(p0 * 64 + 2 * j0);
                for (p, &o) in out.iter().enumerate() {
                    _mm256_storeu_si256(dst.add(p * 64) as *mut __m256i, o);
                }
            }
        }
    }

    /// Panels `0..panels` of the backward packing for row pairs `0..pairs` of `slab`:
    /// `dst[jb·stride + q·64 + 2j ..][..2] = (slab[2q][32jb + j], slab[2q + 1][32jb + j])`.
    ///
    /// # Safety
    /// AVX2; `slab` holds `2·pairs` rows of `cols ≥ 32·panels`; `dst` holds
    /// `(panels − 1)·stride + pairs·64` u16.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn backward_blocks(
        slab: *const u16,
        cols: usize,
        pairs: usize,
        panels: usize,
        dst: *mut u16,
        stride: usize,
    ) {
        for jb in 0..panels {
            for q in 0..pairs {
                let x = slab.add(2 * q * cols + jb * 32);
                let y = x.add(cols);
                let o = dst.add(jb * stride + q * 64);
                for h in 0..2 {
                    let a = _mm256_loadu_si256(x.add(16 * h) as *const __m256i);
                    let b = _mm256_loadu_si256(y.add(16 * h) as *const __m256i);
                    // Within 128-bit lanes: lo = x0 y0 … x3 y3 | x8 y8 … x11 y11,
                    // hi = x4 y4 … x7 y7 | x12 y12 … x15 y15.
                    let lo = _mm256_unpacklo_epi16(a, b);
                    let hi = _mm256_unpackhi_epi16(a, b);
                    let o = o.add(32 * h);
                    _mm256_storeu_si256(o as *mut __m256i, _mm256_permute2x128_si256(lo, hi, 0x20));
                    _mm256_storeu_si256(
                        o.add(16) as *mut __m256i,
                        _mm256_permute2x128_si256(lo, hi, 0x31),
                    );
                }
            }
        }
    }
}

/// Up to 32 rows of `W` in bf16 (`slab`, `(rows, cols)`) into the backward packing, whose
/// pair row for slab rows `(2q, 2q + 1)` is `dst[panel · stride + q · 64 ..][..64]` per
/// 32-column panel (an odd last row pairs with the zero padding, left as it is). Panel by
/// panel, so that the writes are contiguous: the panels are `stride` apart, far enough to
/// thrash the cache's sets if every row pair visited them all. Whole panels of row pairs in
/// AVX2 registers where the CPU has it.
fn backward_slab(slab: &[u16], rows: usize, cols: usize, dst: &mut [u16], stride: usize) {
    assert!(rows <= KB && slab.len() >= rows * cols);
    let (pairs, panels) = (rows / 2, cols.div_ceil(NB));
    if panels > 0 {
        assert!(dst.len() >= (panels - 1) * stride + rows.div_ceil(2) * 2 * NB);
    }
    #[allow(unused_mut)]
    let mut vector_panels = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= 1 {
        vector_panels = cols / NB;
        // SAFETY: `level() >= 1` found AVX2; panels jb < cols / 32 read slab rows < 2·pairs
        // ≤ rows at columns < cols, and write dst[jb·stride + q·64 ..][..64] with q < pairs,
        // inside dst by the assert above.
        unsafe {
            avx2::backward_blocks(
                slab.as_ptr(),
                cols,
                pairs,
                vector_panels,
                dst.as_mut_ptr(),
                stride,
            )
        };
    }
    for jb in 0..panels {
        let c0 = jb * NB;
        let w = NB.min(cols - c0);
        let d = &mut dst[jb * stride..];
        if jb >= vector_panels {
            for q in 0..pairs {
                let x = &slab[2 * q * cols + c0..][..w];
                let y = &slab[(2 * q + 1) * cols + c0..][..w];
                let o = &mut d[q * 2 * NB..][..2 * w];
                for j in 0..w {
                    o[2 * j] = x[j];
                    o[2 * j + 1] = y[j];
                }
            }
        }
        if rows % 2 == 1 {
            let x = &slab[(rows - 1) * cols + c0..][..w];
            let o = &mut d[pairs * 2 * NB..][..2 * w];
            for j in 0..w {
                o[2 * j] = x[j];
            }
        }
    }
}

/// Scratch for [`pack_rows_into`]: 32 decoded rows, in f32 and in bf16.
#[derive(Default)]
pub struct PackScratch {
    f: Vec<f32>,
    b: Vec<u16>,
}

/// Refills `fwd` with `Wᵀ` (as [`PackedB::from_rows_transposed`]) for `W (rows, cols)` and,
/// if `bwd = Some((b, at))`, writes `W` into rows `at..at + rows` of the `W`-side packing `b`
/// (as [`PackedB::from_rows`] would; `b` shaped `(k ≥ at + rows, cols)` by
/// [`PackedB::reshape`], `at` a multiple of 32), on the calling thread and keeping the
/// allocations: the scratch form of the two constructors, for a matrix packed anew for each
/// use (the LM head's vocabulary chunks), possibly a slice of rows at a time.
/// `decode(r0, r1, out)` fills `out` `((r1 − r0), cols)` with rows `r0..r1` of `W`; it is
/// called for 32 rows at a time, which are rounded once and written to both packings while
/// they are in cache. The values are those of the constructors, bit for bit.
pub fn pack_rows_into(
    rows: usize,
    cols: usize,
    decode: impl FnMut(usize, usize, &mut [f32]),
    fwd: &mut PackedB,
    bwd: Option<(&mut PackedB, usize)>,
    scratch: &mut PackScratch,
) {
    pack_slabs(rows, cols, decode, Some(fwd), bwd, scratch);
}

/// Refills `b` with `W (rows, cols)` itself (`k = rows`, `n = cols`, as
/// [`PackedB::from_rows`]) on the calling thread: the `W`-side half of [`pack_rows_into`], for
/// an operand that is used only that way (attention's activations as the `b` of a product).
pub fn pack_w_into(
    rows: usize,
    cols: usize,
    decode: impl FnMut(usize, usize, &mut [f32]),
    b: &mut PackedB,
    scratch: &mut PackScratch,
) {
    b.reshape(rows, cols);
    pack_slabs(rows, cols, decode, None, Some((b, 0)), scratch);
}

/// [`pack_w_into`] for `W (rows, cols)` held as Q8_0 rows (`q8`: the file's bytes of exactly
/// those rows), straight from the quantized bytes: each element `d · q` is exact in f32 (an f16
/// scale times an 8-bit integer) and rounds to the same bf16 either way, so the packing is
/// the same bit for bit, without the f32 rows, their rounding pass and the pair shuffle of the
/// general path (the lean LM head re-packs Gemma's whole Q8_0 table at every step). Returns
/// `false`, leaving `b` alone, where this CPU lacks AVX-512 BW + BF16: use [`pack_w_into`].
///
/// # Panics
/// If `cols` is not a multiple of 32 or `q8` is not `rows` Q8_0 rows of `cols` elements.
pub fn pack_w_q8_0_into(q8: &[u8], rows: usize, cols: usize, b: &mut PackedB) -> bool {
    assert!(cols.is_multiple_of(32), "Q8_0 rows have whole blocks of 32");
    let rb = cols / 32 * smolt_quant::GgmlType::Q8_0.type_size();
    assert_eq!(q8.len(), rows * rb, "q8 is not {rows} Q8_0 rows of {cols}");
    #[cfg(target_arch = "x86_64")]
    if crate::limits::bf16_available() && std::arch::is_x86_feature_detected!("avx512bw") {
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

fn pack_slabs(
    rows: usize,
    cols: usize,
    mut decode: impl FnMut(usize, usize, &mut [f32]),
    mut fwd: Option<&mut PackedB>,
    mut bwd: Option<(&mut PackedB, usize)>,
    scratch: &mut PackScratch,
) {
    if let Some(f) = &mut fwd {
        f.reshape(cols, rows);
    }
    if let Some((b, at)) = &bwd {
        assert!(
            b.n == cols && b.k >= at + rows && at % KB == 0,
            "bwd is not (≥ {at} + {rows}, {cols})"
        );
    }
    scratch.f.resize(KB * cols, 0.0);
    scratch.b.resize(KB * cols, 0);
    for r0 in (0..rows).step_by(KB) {
        let r1 = (r0 + KB).min(rows);
        let len = (r1 - r0) * cols;
        let (sf, sb) = (&mut scratch.f[..len], &mut scratch.b[..len]);
        decode(r0, r1, sf);
        round_slice::<f32>(sf, sb);
        // Forward: rows r0..r1 are exactly panel r0 / 32.
        if let Some(f) = &mut fwd {
            let kp = f.kp;
            let panel = &mut f.data[(r0 / NB) * kp * NB..][..kp * NB];
            forward_panel(sb, r1 - r0, cols, panel);
        }
        // Backward: rows are k, pairs (r, r + 1) at pair row r / 2 of every panel.
        if let Some((b, at)) = &mut bwd {
            let (kp, at) = (b.kp, *at);
            let dst = &mut b.data[((at + r0) / 2) * 2 * NB..];
            backward_slab(sb, r1 - r0, cols, dst, kp * NB);
        }
    }
}

/// Whether products will run on AMX tiles (CPU, kernel and `SMOLT_AMX` permitting).
pub fn amx_enabled() -> bool {
    amx::available()
}

/// Whether products will run on bf16 hardware, AMX tiles or AVX-512 BF16 (`SMOLT_AMX` and
/// `SMOLT_BF16_DOT` permitting), rather than the f32 fallback: the bf16 base then beats
/// f32 gemm over the decoded weights. Both hardware paths sum each column of `c` in the same
/// order whatever block of columns a call computes (the fallback's gemm may not).
pub fn accelerated() -> bool {
    amx::available() || dot::available()
}

/// `iters` rounds of four AMX bf16 tile products on tiles of ones (no memory traffic in the
/// loop): the tile unit's peak, for `limits`. Returns the sum of the four 16 × 16 C tiles
/// (= 4 · 256 · 32 · iters, exact for iters ≤ 2¹⁹). Panics without AMX.
pub fn amx_peak_loop(iters: u64) -> f32 {
    assert!(amx::available(), "no AMX-BF16 here");
    // SAFETY: `available()` means AMX-BF16 exists and the tile state is granted.
    unsafe { amx::peak_loop(iters) }
}

/// `c (m, n) (+)= a (m, k) · b (k, n)` in bf16 with f32 accumulation; `accumulate` adds to
/// `c` instead of overwriting it. `parallel` lets it split the columns over rayon's pool.
pub fn gemm_bf16(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.m, a.k, b.n);
    assert_eq!(b.k, k, "a is (m, {k}) but b is ({}, n)", b.k);
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    if m == 0 || n == 0 {
        return;
    }
    if amx::available() && k > 0 {
        amx::gemm(a, b, c, n, accumulate, parallel);
    } else if dot::available() && k > 0 {
        dot::gemm(a, b, c, n, accumulate, parallel);
    } else {
        gemm_fallback(a, b, c, accumulate, parallel);
    }
}

/// [`gemm_bf16`] into the first `n` columns of a wider `c`, whose rows are `ldc ≥ n` apart
/// (`c.len() ≥ (m − 1)·ldc + n`): a column block of a product computed piece by piece. Each
/// element is computed exactly as by `gemm_bf16` on the whole (a column block of `c` depends
/// only on the same columns of `b`).
pub fn gemm_bf16_strided(
    a: &BfRows,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.m, a.k, b.n);
    assert_eq!(b.k, k, "a is (m, {k}) but b is ({}, n)", b.k);
    assert!(ldc >= n, "ldc {ldc} < n {n}");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= (m - 1) * ldc + n,
        "c is not (m, n) at stride ldc"
    );
    if ldc == n {
        return gemm_bf16(a, b, &mut c[..m * n], accumulate, parallel);
    }
    if amx::available() && k > 0 {
        amx::gemm(a, b, c, ldc, accumulate, parallel);
    } else if dot::available() && k > 0 {
        dot::gemm(a, b, c, ldc, accumulate, parallel);
    } else {
        let mut t: Vec<f32> = if accumulate {
            (0..m)
                .flat_map(|i| c[i * ldc..][..n].iter().copied())
                .collect()
        } else {
            vec![0.0; m * n]
        };
        gemm_fallback(a, b, &mut t, accumulate, parallel);
        for (i, row) in t.chunks(n).enumerate() {
            c[i * ldc..][..n].copy_from_slice(row);
        }
    }
}

/// The reference arithmetic: the bf16 operands widened to f32, f32 gemm.
pub fn gemm_fallback(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.m, a.k, b.n);
    let af: Vec<f32> = (0..m).flat_map(|i| a.row_f32(i)).collect();
    let bf = b.unpack();
    gemm_strided(parallel, m, n, k, c, accumulate, &af, (k, 1), &bf, (n, 1));
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use super::*;
    use std::arch::asm;
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    use std::sync::OnceLock;

    /// AMX-TILE and AMX-BF16 in CPUID, the tile state granted by the kernel
    /// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) and enabled in XCR0; `SMOLT_AMX=0` turns it off.
    pub(super) fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            if std::env::var("SMOLT_AMX").is_ok_and(|v| v.trim() == "0") {
                return false;
            }
            if __cpuid_count(0, 0).eax < 7 {
                return false;
            }
            let l7 = __cpuid_count(7, 0);
            let (bf16, tile) = (l7.edx & (1 << 22) != 0, l7.edx & (1 << 24) != 0);
            let osxsave = __cpuid_count(1, 0).ecx & (1 << 27) != 0;
            if !(bf16 && tile && osxsave) {
                return false;
            }
            #[cfg(target_os = "linux")]
            {
                let ret: i64;
                // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18),
                // a plain syscall with integer arguments; it only changes this process's
                // permitted xsave features (clobbers rcx and r11 as syscalls do).
                unsafe {
                    asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64,
                         in("rsi") 18i64, lateout("rcx") _, lateout("r11") _,
                         options(nostack));
                }
                if ret != 0 {
                    return false;
                }
                // SAFETY: OSXSAVE was checked above, so xgetbv is available; reads XCR0.
                let xcr0 = unsafe { _xgetbv(0) };
                xcr0 & (3 << 17) == (3 << 17)
            }
            #[cfg(not(target_os = "linux"))]
            false
        })
    }

    /// Palette 1, eight tiles of 16 rows × 64 bytes: tmm0..3 the 2 × 2 C tiles (16 × 16
    /// f32), tmm4/5 the two A tiles (16 rows × 32 bf16), tmm6/7 the two B tiles (16 pair
    /// rows × 16 columns).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    fn config() -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = 16;
        }
        Config(c)
    }

    #[repr(C, align(64))]
    struct Tile([u32; 256]);

    /// See `amx_peak_loop`.
    ///
    /// # Safety
    /// AMX-BF16 usable in this process (`available()`).
    pub(super) unsafe fn peak_loop(iters: u64) -> f32 {
        let cfg = config();
        asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        // Two bf16 ones per u32: every A and B tile holds 1.0 everywhere.
        let ones = Tile([0x3f80_3f80; 256]);
        // SAFETY: each load reads 16 rows of 64 bytes at stride 64: the 1 KB of `ones`.
        asm!(
            "tileloadd tmm4, [{p} + {s}*1]",
            "tileloadd tmm5, [{p} + {s}*1]",
            "tileloadd tmm6, [{p} + {s}*1]",
            "tileloadd tmm7, [{p} + {s}*1]",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            p = in(reg) ones.0.as_ptr(), s = in(reg) 64usize, options(nostack, readonly),
        );
        for _ in 0..iters {
            asm!(
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                options(nostack, nomem)
            );
        }
        let mut c = [
            Tile([0; 256]),
            Tile([0; 256]),
            Tile([0; 256]),
            Tile([0; 256]),
        ];
        // SAFETY: each store writes 16 rows of 64 bytes at stride 64: one 1 KB `Tile`.
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            "tilerelease",
            c0 = in(reg) c[0].0.as_mut_ptr(), c1 = in(reg) c[1].0.as_mut_ptr(),
            c2 = in(reg) c[2].0.as_mut_ptr(), c3 = in(reg) c[3].0.as_mut_ptr(),
            s = in(reg) 64usize, options(nostack),
        );
        c.iter()
            .flat_map(|t| t.0.iter())
            .map(|&bits| f32::from_bits(bits))
            .sum()
    }

    pub(super) fn gemm(
        a: &BfRows,
        b: &PackedB,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
        parallel: bool,
    ) {
        let n_blocks = b.n.div_ceil(NB);
        let ptr = Ptr(c.as_mut_ptr());
        let run = |j0: usize, j1: usize| {
            // SAFETY: `available()` (checked by the caller) means the tile state is granted
            // and AMX-BF16 exists; shapes: k % 32 == 0 and n % 32 == 0 (checked by the
            // caller), `a` holds m rounded up to 32 rows of k, `b` holds k/2 rows of 2n, and
            // `c` holds m rows of n at stride ldc ≥ n (checked by the caller); this task
            // writes only its column blocks j0..j1.
            unsafe { blocks(a, b, ptr.get(), ldc, accumulate, j0, j1) }
        };
        split_columns(n_blocks, parallel, a.m * b.n * a.k, run);
    }

    #[repr(C, align(64))]
    struct Tail([f32; MB * NB]);

    /// Column blocks `j0..j1` (of 32) of `c (m, n)` (rows `ldc` apart), all rows.
    ///
    /// # Safety
    /// AMX-BF16 usable in this process (`available()`); `a` and `b` as built by their
    /// constructors with `a.k == b.k` (so both hold `kp` padded columns/rows, `a` whole
    /// 32-row blocks, `b` whole 32-column panels); `c` points at `m` rows of `n ≤ ldc`
    /// writable f32, `ldc` apart, that nothing else touches in these column blocks.
    unsafe fn blocks(
        a: &BfRows,
        b: &PackedB,
        c: *mut f32,
        ldc: usize,
        acc: bool,
        j0: usize,
        j1: usize,
    ) {
        let (m, n, kp) = (a.m, b.n, a.kp);
        let steps = kp / KB;
        let cfg = config();
        asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        let sc = ldc * 4;
        let mut tail = Tail([0.0; MB * NB]);
        // Row groups whose A rows stay in L2 while every column block of this task passes
        // over them (A is re-read once per column block; B once per group).
        let group = (A_GROUP_BYTES / (kp * 2)).max(MB) / MB * MB;
        for g0 in (0..m).step_by(group) {
            for jb in j0..j1 {
                let col = jb * NB;
                for r in (g0..(g0 + group).min(m)).step_by(MB) {
                    // Whole block in place: all 32 rows and 32 columns inside c.
                    let full = r + MB <= m && col + NB <= n;
                    // Where the C block lives for the tile loads/stores: in place for a full
                    // block, else in `tail` (rows ≥ m are scratch).
                    let (cp, stride) = if full {
                        (c.add(r * ldc + col), sc)
                    } else {
                        for i in 0..MB {
                            for j in 0..NB {
                                tail.0[i * NB + j] = if acc && r + i < m && col + j < n {
                                    *c.add((r + i) * ldc + col + j)
                                } else {
                                    0.0
                                };
                            }
                        }
                        (tail.0.as_mut_ptr(), NB * 4)
                    };
                    if acc || !full {
                        // SAFETY: rows cp .. cp + 32·stride, 64 bytes each, inside c (full
                        // block: rows r..r+32 < m, columns col..col+32 ≤ n) or inside `tail`.
                        asm!(
                            "tileloadd tmm0, [{c} + {s}*1]",
                            "tileloadd tmm1, [{c1} + {s}*1]",
                            "tileloadd tmm2, [{c2} + {s}*1]",
                            "tileloadd tmm3, [{c3} + {s}*1]",
                            c = in(reg) cp, c1 = in(reg) cp.add(16),
                            c2 = in(reg) (cp as *mut u8).add(16 * stride),
                            c3 = in(reg) (cp as *mut u8).add(16 * stride + 64),
                            s = in(reg) stride, options(nostack, readonly),
                        );
                    } else {
                        asm!(
                            "tilezero tmm0",
                            "tilezero tmm1",
                            "tilezero tmm2",
                            "tilezero tmm3",
                            options(nostack, nomem)
                        );
                    }
                    // A: the 1 KB tiles of row blocks r/16 and r/16 + 1, step s at +s·512;
                    // B: panel jb, 16 pair rows of 128 bytes per step (B1 is the upper 64 bytes).
                    let ap0 = a.data.as_ptr().add((r / 16) * steps * 512);
                    let ap1 = ap0.add(steps * 512);
                    let bp = b.data.as_ptr().add(jb * kp * NB);
                    // At most 16 rows left: the lower half of the block (C2, C3, A1) is all
                    // padding, so only C0 and C1 are computed (C2 and C3 stay in `tail`).
                    let half = m - r <= 16;
                    for s in (0..steps).filter(|_| half) {
                        // SAFETY: as below, row block r/16 only.
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            a0 = in(reg) ap0.add(s * 512),
                            b0 = in(reg) bp.add(s * 16 * 2 * NB),
                            b1 = in(reg) bp.add(s * 16 * 2 * NB + 32),
                            sa = in(reg) 64usize, sb = in(reg) 128usize, options(nostack, readonly),
                        );
                    }
                    for s in (0..steps).filter(|_| !half) {
                        // SAFETY: A tiles lie inside row blocks r/16 and r/16 + 1 < m padded
                        // to 32 rows; the B tile rows s·16..s·16+16 lie inside panel jb.
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) ap0.add(s * 512), a1 = in(reg) ap1.add(s * 512),
                            b0 = in(reg) bp.add(s * 16 * 2 * NB),
                            b1 = in(reg) bp.add(s * 16 * 2 * NB + 32),
                            sa = in(reg) 64usize, sb = in(reg) 128usize, options(nostack, readonly),
                        );
                    }
                    // SAFETY: as for the loads above.
                    asm!(
                        "tilestored [{c} + {s}*1], tmm0",
                        "tilestored [{c1} + {s}*1], tmm1",
                        "tilestored [{c2} + {s}*1], tmm2",
                        "tilestored [{c3} + {s}*1], tmm3",
                        c = in(reg) cp, c1 = in(reg) cp.add(16),
                        c2 = in(reg) (cp as *mut u8).add(16 * stride),
                        c3 = in(reg) (cp as *mut u8).add(16 * stride + 64),
                        s = in(reg) stride, options(nostack),
                    );
                    if !full {
                        for i in 0..(m - r).min(MB) {
                            for j in 0..NB.min(n - col) {
                                *c.add((r + i) * ldc + col + j) = tail.0[i * NB + j];
                            }
                        }
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    use super::*;
    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn gemm(_: &BfRows, _: &PackedB, _: &mut [f32], _: usize, _: bool, _: bool) {
        unreachable!("no AMX off x86-64")
    }
    pub(super) unsafe fn peak_loop(_: u64) -> f32 {
        unreachable!("no AMX off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::randn;

    /// The bf16 product summed in f64: what both paths approximate.
    fn reference(a: &BfRows, b: &PackedB) -> Vec<f64> {
        let (m, k, n) = (a.m, a.k, b.n);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            let ar = a.row_f32(i);
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| ar[p] as f64 * b.get(p, j) as f64).sum();
            }
        }
        c
    }

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even below
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, even above
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
    }

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

    /// The scratch refill gives the constructors' packings bit for bit, padding included,
    /// across shapes (odd rows and columns, partial panels) and reuses of the same scratch,
    /// whole or 64 rows at a time into one backward packing.
    #[test]
    fn pack_rows_into_matches_the_constructors() {
        let (mut fwd, mut bwd) = (PackedB::empty(), PackedB::empty());
        let mut scratch = PackScratch::default();
        for &(rows, cols) in &[
            (70, 640),
            (64, 96),
            (5, 7),
            (33, 45),
            (33, 45),
            (2048, 64),
            (1, 1),
            (64, 96),
            (200, 33),
        ] {
            let mut w = randn(rows * cols, rows as u64 * 7 + cols as u64);
            w[0] = f32::from_bits(0x3f80_8000); // a rounding tie
            let want_f = PackedB::from_rows_transposed(&w, rows, cols);
            let want_b =
                PackedB::from_rows(rows, cols, |i, o| o.copy_from_slice(&w[i * cols..][..cols]));
            let decode_from = |v0: usize| {
                let w = &w;
                move |r0: usize, r1: usize, out: &mut [f32]| {
                    out.copy_from_slice(&w[(v0 + r0) * cols..(v0 + r1) * cols])
                }
            };
            bwd.reshape(rows, cols);
            pack_rows_into(
                rows,
                cols,
                decode_from(0),
                &mut fwd,
                Some((&mut bwd, 0)),
                &mut scratch,
            );
            for (got, want) in [(&fwd, &want_f), (&bwd, &want_b)] {
                assert_eq!((got.k, got.n, got.kp), (want.k, want.n, want.kp));
                assert!(got.data == want.data, "({rows}, {cols}) differs");
            }
            let mut only = PackedB::empty();
            pack_rows_into(rows, cols, decode_from(0), &mut only, None, &mut scratch);
            assert!(only.data == want_f.data);
            // The W side alone, into a scratch last shaped otherwise.
            pack_w_into(rows, cols, decode_from(0), &mut only, &mut scratch);
            assert_eq!((only.k, only.n, only.kp), (want_b.k, want_b.n, want_b.kp));
            assert!(only.data == want_b.data, "({rows}, {cols}) W side differs");
            // In slices of 64 rows: each slice's forward packing, one backward packing.
            let mut pieces = PackedB::empty();
            pieces.reshape(rows, cols);
            for r0 in (0..rows).step_by(64) {
                let r1 = (r0 + 64).min(rows);
                let d = decode_from(r0);
                pack_rows_into(
                    r1 - r0,
                    cols,
                    d,
                    &mut fwd,
                    Some((&mut pieces, r0)),
                    &mut scratch,
                );
                let part = PackedB::from_rows_transposed(&w[r0 * cols..r1 * cols], r1 - r0, cols);
                assert!(fwd.data == part.data, "({rows}, {cols}) slice {r0} differs");
            }
            assert!(
                pieces.data == want_b.data,
                "({rows}, {cols}) in slices differs"
            );
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

    /// A product computed in column blocks into a wider `c` equals the whole product bit for
    /// bit (AMX where present, else the fallback).
    #[test]
    fn strided_column_blocks_equal_the_whole_product() {
        let (m, k, n) = (77, 96, 200);
        let a = BfRows::from_f32(&randn(m * k, 1), m, k, 1.0);
        let w = randn(n * k, 2);
        let c0 = randn(m * n, 3);
        for acc in [false, true] {
            let mut whole = c0.clone();
            gemm_bf16(
                &a,
                &PackedB::from_rows_transposed(&w, n, k),
                &mut whole,
                acc,
                false,
            );
            let mut blocks = c0.clone();
            for j0 in (0..n).step_by(64) {
                let j1 = (j0 + 64).min(n);
                let b = PackedB::from_rows_transposed(&w[j0 * k..j1 * k], j1 - j0, k);
                gemm_bf16_strided(&a, &b, &mut blocks[j0..], n, acc, false);
            }
            assert!(whole
                .iter()
                .zip(&blocks)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    /// Cost of packing one LM-head chunk (2048 × 640, Q8_0 in the file) both ways, by part:
    /// `cargo test --release -p smolt-kernels pack_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn pack_speed() {
        use smolt_quant::GgmlType;
        let (rows, cols) = (2048, 640);
        let w = randn(rows * cols, 1);
        let row_bytes = smolt_quant::row_bytes(GgmlType::Q8_0, cols).unwrap();
        let mut q = vec![0u8; rows * row_bytes];
        for (r, out) in q.chunks_mut(row_bytes).enumerate() {
            smolt_quant::quantize_row(GgmlType::Q8_0, &w[r * cols..][..cols], out).unwrap();
        }
        let decode = |r0: usize, r1: usize, out: &mut [f32]| {
            for (r, o) in (r0..r1).zip(out.chunks_mut(cols)) {
                smolt_quant::dequantize_row(GgmlType::Q8_0, &q[r * row_bytes..][..row_bytes], o)
                    .unwrap();
            }
        };
        let time = |f: &mut dyn FnMut()| {
            let mut best = f64::INFINITY;
            for _ in 0..200 {
                let t0 = std::time::Instant::now();
                f();
                best = best.min(t0.elapsed().as_secs_f64());
            }
            best * 1e3
        };
        // The parts, 32 rows at a time as `pack_rows_into` goes (decoded rows stay in cache).
        let mut sf = vec![0f32; KB * cols];
        let t_dec = time(&mut || {
            for r0 in (0..rows).step_by(KB) {
                decode(r0, r0 + KB, &mut sf);
            }
        });
        let mut sb = vec![0u16; KB * cols];
        let t_round = time(&mut || {
            for _ in (0..rows).step_by(KB) {
                round_slice::<f32>(&sf, &mut sb);
            }
        });
        let (mut fwd, mut bwd) = (PackedB::empty(), PackedB::empty());
        let mut slab = PackScratch::default();
        bwd.reshape(rows, cols);
        pack_rows_into(rows, cols, decode, &mut fwd, Some((&mut bwd, 0)), &mut slab);
        let t_tr = time(&mut || {
            for r0 in (0..rows).step_by(KB) {
                let kp = fwd.kp;
                forward_panel(
                    &sb,
                    KB,
                    cols,
                    &mut fwd.data[(r0 / NB) * kp * NB..][..kp * NB],
                );
            }
        });
        let t_il = time(&mut || {
            for r0 in (0..rows).step_by(KB) {
                let kp = bwd.kp;
                backward_slab(&sb, KB, cols, &mut bwd.data[(r0 / 2) * 2 * NB..], kp * NB);
            }
        });
        let t_fwd = time(&mut || pack_rows_into(rows, cols, decode, &mut fwd, None, &mut slab));
        let t_both = time(&mut || {
            pack_rows_into(rows, cols, decode, &mut fwd, Some((&mut bwd, 0)), &mut slab)
        });
        let h = BfRows::from_f32(&randn(128 * cols, 2), 128, cols, 1.0);
        let mut l = vec![0f32; 128 * rows];
        let t_logits = time(&mut || gemm_bf16(&h, &fwd, &mut l, false, false));
        let p = BfRows::from_f32(&l, 128, rows, 1.0);
        let mut acc = vec![0f32; 128 * cols];
        let t_acc = time(&mut || gemm_bf16(&p, &bwd, &mut acc, true, false));
        eprintln!(
            "chunk {rows} x {cols}, ms: Q8_0 decode {t_dec:.3}, round {t_round:.3}, \
             transpose {t_tr:.3}, interleave {t_il:.3}; decode + forward packing {t_fwd:.3}, \
             decode + both packings {t_both:.3}; n = 128 products: logits {t_logits:.3}, \
             accumulate {t_acc:.3}"
        );
    }

    /// Both paths (AMX where this CPU has it) against the f64 sum of the same bf16 values,
    /// overwrite and accumulate, with row counts that leave partial 32-row blocks.
    #[test]
    fn products_match_the_f64_reference() {
        eprintln!("AMX: {}, AVX-512 BF16: {}", amx_enabled(), dot::available());
        for &(m, k, n) in &[
            (1, 32, 32),
            (17, 64, 32),
            (32, 640, 64),
            (77, 256, 96),
            (330, 96, 128),
            (5, 7, 3),
            (40, 50, 45),
            // Several L2 row groups (128 and 256 rows at these k), the last one ragged.
            (200, 2048, 96),
            (409, 1024, 64),
        ] {
            let x = randn(m * k, 1);
            let w = randn(n * k, 2);
            let a = BfRows::from_f32(&x, m, k, 0.5);
            let b = PackedB::from_rows_transposed(&w, n, k);
            let want = reference(&a, &b);
            let c0 = randn(m * n, 3);
            for par in [false, true] {
                for (acc, base) in [(false, vec![0.0; m * n]), (true, c0.clone())] {
                    let mut got = if acc { c0.clone() } else { vec![7.0; m * n] };
                    gemm_bf16(&a, &b, &mut got, acc, par);
                    let mut fb = if acc { c0.clone() } else { vec![7.0; m * n] };
                    gemm_fallback(&a, &b, &mut fb, acc, par);
                    // AVX-512 BF16 where the CPU has it, even where AMX takes the products.
                    let mut dt = if acc { c0.clone() } else { vec![7.0; m * n] };
                    if dot::available() {
                        dot::gemm(&a, &b, &mut dt, n, acc, par);
                    }
                    for i in 0..m * n {
                        let w = want[i] + base[i] as f64;
                        let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                        assert!(
                            (got[i] as f64 - w).abs() < tol,
                            "({m},{k},{n}) acc {acc} par {par} [{i}]: {} vs {w}",
                            got[i]
                        );
                        assert!((fb[i] as f64 - w).abs() < tol, "fallback [{i}]");
                        if dot::available() {
                            assert!((dt[i] as f64 - w).abs() < tol, "AVX-512 BF16 [{i}]");
                        }
                    }
                }
            }
        }
    }

    /// Speed on the training shapes: `cargo test --release -p smolt-kernels bf16_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bf16_speed() {
        for &(m, k, n) in &[
            // The LM head's products at 512 scored tokens (a softmax chunk, a logits slice).
            (512, 2048, 640),
            (512, 640, 128),
            (340, 640, 256),
            (330, 640, 2048),
            (330, 2048, 640),
            (336, 640, 1024),
            (112, 640, 2048),
            (112, 2048, 640),
        ] {
            let a = BfRows::from_f32(&randn(m * k, 1), m, k, 1.0);
            let b = PackedB::from_rows_transposed(&randn(n * k, 2), n, k);
            let mut c = vec![0f32; m * n];
            for par in [true, false] {
                let mut dt = f64::INFINITY;
                for _ in 0..30 {
                    let t0 = std::time::Instant::now();
                    gemm_bf16(&a, &b, &mut c, true, par);
                    dt = dt.min(t0.elapsed().as_secs_f64());
                }
                eprintln!(
                    "({m},{k},{n}) par {par}: {:.3} ms, {:.0} GFLOP/s",
                    dt * 1e3,
                    2.0 * (m * k * n) as f64 / dt * 1e-9
                );
            }
        }
    }
}
