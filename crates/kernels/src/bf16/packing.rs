//! Refilling a [`PackedB`] in place, for a matrix packed anew for each use (the LM head's
//! vocabulary chunks, attention's activations): from rows decoded to f32 32 at a time, rounded
//! once and written to the forward packing, the backward one or both ([`pack_rows_into`],
//! [`pack_w_into`]), with AVX2 pair shuffles where the CPU has them.

use super::operands::{round_bf16, PackedB, KB, NB};
use crate::simd::multiversion;
use crate::Float;

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
    if crate::cpu::level() >= 1 {
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
    if crate::cpu::level() >= 1 {
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

#[cfg(test)]
mod tests {
    use super::super::operands::BfRows;
    use super::super::product::gemm_bf16;
    use super::*;
    use crate::test_util::randn;

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
}
