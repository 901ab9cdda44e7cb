//! The prefill path on AVX2 CPUs (no VNNI): the panels and activations of the AVX-512 path,
//! each 16-row panel as two 8-row halves. `vpmaddubsw` multiplies a half's quants by four
//! broadcast activation bytes into 16-bit pair sums, a few of those are added in 16 bits (as
//! many as cannot overflow for the type's largest quant) and `vpmaddwd` by ones widens them to
//! the 8 rows' 32-bit sums; Q8_0, whose unsigned quants would saturate, multiplies |q| by the
//! activations with q's sign. The block's integer sum is exact, as `vpdpbusd`'s, and the float
//! steps after it are the AVX-512 tile's, so every output equals that path's bit for bit.

use std::arch::x86_64::*;

use super::activations::{Fmt, Xq};
use super::packing::{Isa, Panel, PR};
use super::tiles::for_each_panel;
use crate::qmatrix::QMatrix;

/// x rows per micro-kernel call (2, 4 and 6 measured within 5% on Zen 3; 2 ahead).
const XR: usize = 2;

/// `C` x rows against one panel: the 16 outputs of each x row, as two halves of 8.
/// `G` groups of 4 quants per sub-block; `P` of them summed in 16 bits before widening.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `pq` holds `nblk·G·16` u32, `pd`/`pm` `nblk·16` f32, each
/// `xq[c]` `nblk·4G` bytes and `xd`/`xz`/`xs[c]` `nblk` values; `P` divides `G` and
/// `P · 2 · umax · 127` fits in an i16 (umax: the type's largest unsigned quant).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<
    const C: usize,
    const G: usize,
    const P: usize,
    const MIN: bool,
    const SIGNED: bool,
>(
    nblk: usize,
    pq: *const u32,
    pd: *const f32,
    pm: *const f32,
    xq: [*const i8; C],
    xd: [*const f32; C],
    xz: [*const i32; C],
    xs: [*const f32; C],
) -> [[__m256; 2]; C] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; C];
    for b in 0..nblk {
        let wb = pq.add(b * G * PR);
        for c in 0..C {
            let xb = xq[c].add(b * 4 * G);
            let a: [__m256i; G] = std::array::from_fn(|g| {
                _mm256_set1_epi32((xb.add(4 * g) as *const i32).read_unaligned())
            });
            // As in the AVX-512 tile, the chain starts at −zero·Σq; Q8_0's signed products
            // need no offset.
            let z = _mm256_set1_epi32(if SIGNED { 0 } else { -*xz[c].add(b) });
            let xdv = _mm256_set1_ps(*xd[c].add(b));
            for (h, acc) in acc[c].iter_mut().enumerate() {
                let mut i = z;
                for g0 in (0..G).step_by(P) {
                    let mut s = _mm256_setzero_si256();
                    for (g, a) in a.iter().enumerate().skip(g0).take(P) {
                        let w = _mm256_loadu_si256(wb.add(g * PR + 8 * h) as *const __m256i);
                        let p = if SIGNED {
                            // Q8_0 (u = q + 128 would saturate): |q| · (a · sign q) = q · a.
                            let q = _mm256_xor_si256(w, _mm256_set1_epi8(0x80u8 as i8));
                            _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(*a, q))
                        } else {
                            _mm256_maddubs_epi16(w, *a)
                        };
                        s = _mm256_add_epi16(s, p);
                    }
                    i = _mm256_add_epi32(i, _mm256_madd_epi16(s, ones));
                }
                let s = _mm256_mul_ps(_mm256_loadu_ps(pd.add(b * PR + 8 * h)), xdv);
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, *acc);
                if MIN {
                    let mv = _mm256_loadu_ps(pm.add(b * PR + 8 * h));
                    *acc = _mm256_fmadd_ps(mv, _mm256_set1_ps(*xs[c].add(b)), *acc);
                }
            }
        }
    }
    acc
}

/// `y` rows `r..r+C`, columns `j0..j0+rows` from one panel.
///
/// # Safety
/// As for `tile`; `y` points at a buffer of rows `ldy` apart with `r + C` rows and at least
/// `j0 + rows` columns, and no other thread writes these elements.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_rows<
    const C: usize,
    const G: usize,
    const P: usize,
    const MIN: bool,
    const SIGNED: bool,
>(
    p: &Panel,
    x: &Xq,
    r: usize,
    y: *mut f32,
    ldy: usize,
    j0: usize,
    rows: usize,
) {
    let nb = x.nblk;
    let xq: [*const i8; C] = std::array::from_fn(|c| x.q.as_ptr().add((r + c) * x.k));
    let xd: [*const f32; C] = std::array::from_fn(|c| x.d.as_ptr().add((r + c) * nb));
    let xz: [*const i32; C] = std::array::from_fn(|c| x.zs.as_ptr().add((r + c) * nb));
    let xs: [*const f32; C] = std::array::from_fn(|c| x.ds.as_ptr().add((r + c) * nb));
    let acc = tile::<C, G, P, MIN, SIGNED>(
        nb,
        p.q.as_ptr(),
        p.d.as_ptr(),
        p.mn.as_ptr(),
        xq,
        xd,
        xz,
        xs,
    );
    for (c, halves) in acc.iter().enumerate() {
        let out = y.add((r + c) * ldy + j0);
        if rows >= PR {
            _mm256_storeu_ps(out, halves[0]);
            _mm256_storeu_ps(out.add(8), halves[1]);
        } else {
            let mut t = [0f32; PR];
            _mm256_storeu_ps(t.as_mut_ptr(), halves[0]);
            _mm256_storeu_ps(t.as_mut_ptr().add(8), halves[1]);
            std::ptr::copy_nonoverlapping(t.as_ptr(), out, rows);
        }
    }
}

/// `y[m×n] = x[m×k] · Wᵀ` over 16-row panels, split over the thread pool.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `w.ty` is one `supports` admits and `x` was made for it;
/// shapes were checked by the caller.
pub(super) unsafe fn matmul_panels(
    w: &QMatrix,
    f: Fmt,
    x: &Xq,
    m: usize,
    packed: Option<&[Panel]>,
    y: &mut [f32],
) {
    let n = w.rows;
    for_each_panel(w, x.nblk, Isa::Avx2, packed, y, |p, _next, y, j0, rows| {
        // SAFETY: the features were checked by the caller; this task alone writes
        // columns j0..j0+rows of y, and every pointer stays inside p, x and y.
        unsafe { panel_from_row(p, f, x, 0, m, y, n, j0, rows) };
    });
}

/// `y` rows `r..m`, columns `j0..j0+rows` (row stride `ldy`) from one panel: `XR` x rows per
/// tile, then one at a time.
///
/// # Safety
/// As for `panel_rows`, for every row in `r..m`.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_from_row(
    p: &Panel,
    f: Fmt,
    x: &Xq,
    mut r: usize,
    m: usize,
    y: *mut f32,
    ldy: usize,
    j0: usize,
    rows: usize,
) {
    // 16-bit headroom (pair sums of at most 2·umax·127 each): Q5_0 (umax 31) four groups,
    // Q4_K (15) all eight, Q6_K (63) two, Q8_0 (|q| ≤ 128, signed) one.
    macro_rules! run {
        ($c:expr) => {
            match (f.bs, f.has_min, f.zero) {
                (32, false, 128) => panel_rows::<$c, 8, 1, false, true>(p, x, r, y, ldy, j0, rows),
                (32, false, _) => panel_rows::<$c, 8, 4, false, false>(p, x, r, y, ldy, j0, rows),
                (32, true, _) => panel_rows::<$c, 8, 8, true, false>(p, x, r, y, ldy, j0, rows),
                (16, false, _) => panel_rows::<$c, 4, 2, false, false>(p, x, r, y, ldy, j0, rows),
                _ => unreachable!("no such format"),
            }
        };
    }
    while r + XR <= m {
        run!(XR);
        r += XR;
    }
    while r < m {
        run!(1);
        r += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::activations::fmt;
    use super::*;
    use crate::GgmlType;
    use rand::{Rng, SeedableRng};

    /// The tile's arithmetic in scalar code: each sub-block's integer sum exact (in i64), then
    /// the same float steps (`mul_add` is `_mm256_fmadd_ps`'s fused multiply-add).
    fn model(p: &Panel, x: &Xq, f: Fmt, m: usize, rows: usize) -> Vec<f32> {
        let (k, nb) = (x.k, x.nblk);
        let mut y = vec![0f32; m * rows];
        for r in 0..m {
            for j in 0..rows {
                let mut acc = 0f32;
                for b in 0..nb {
                    let e = b * f.bs..(b + 1) * f.bs;
                    let dot: i64 = p.u[j * k..][e.clone()]
                        .iter()
                        .zip(&x.q[r * k..][e])
                        .map(|(&u, &q)| u as i64 * q as i64)
                        .sum();
                    let i = dot - x.zs[r * nb + b] as i64;
                    let s = p.d[b * PR + j] * x.d[r * nb + b];
                    acc = (i32::try_from(i).unwrap() as f32).mul_add(s, acc);
                    if f.has_min {
                        acc = p.mn[b * PR + j].mul_add(x.ds[r * nb + b], acc);
                    }
                }
                y[r * rows + j] = acc;
            }
        }
        y
    }

    /// Rows of `ty` either quantized from random values or at the extreme: every quant byte
    /// 0xff (the largest unsigned quant everywhere; for Q8_0 0x80, q = −128), the 16-bit sums'
    /// worst case, with normal f16 scales.
    fn weights(r: &mut impl Rng, ty: GgmlType, n: usize, k: usize, extreme: bool) -> Vec<u8> {
        let rb = k / ty.block_size() * ty.type_size();
        let mut w = vec![0u8; n * rb];
        for row in w.chunks_mut(rb) {
            if extreme {
                row.fill(if ty == GgmlType::Q8_0 { 0x80 } else { 0xff });
                for blk in row.chunks_mut(ty.type_size()) {
                    let one_16th = 0x2c00u16.to_le_bytes();
                    match ty {
                        GgmlType::Q6K => blk[208..210].copy_from_slice(&one_16th),
                        GgmlType::Q4K => {
                            blk[0..2].copy_from_slice(&one_16th);
                            blk[2..4].copy_from_slice(&one_16th);
                        }
                        _ => blk[0..2].copy_from_slice(&one_16th),
                    }
                }
            } else {
                let src: Vec<f32> = (0..k).map(|_| r.gen_range(-1.0..1.0)).collect();
                crate::quantize_row(ty, &src, row).unwrap();
            }
        }
        w
    }

    /// The AVX2 packing (SSE2 transposes, AVX2 unpacking) writes the bytes the one-element
    /// loops write, for every type, full and partial panels, random and extreme quants.
    #[test]
    fn avx2_packing_equals_the_scalar_packing() {
        if !is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 here: nothing to check");
            return;
        }
        use super::super::packing::{interleave_scalar, unpack_legacy_scalar};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(30);
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
            let (n, k) = (21, 512);
            let nblk = k / fmt(ty).unwrap().bs;
            for extreme in [false, true] {
                let w = weights(&mut rng, ty, n, k, extreme);
                let qm = QMatrix::new(ty, n, k, &w).unwrap();
                for j0 in (0..n).step_by(PR) {
                    let rows = (n - j0).min(PR);
                    let mut p = Panel::new(k, nblk);
                    p.pack(&qm, j0, rows, Isa::Avx2);
                    if matches!(ty, GgmlType::Q8_0 | GgmlType::Q5_0) {
                        let mut u = vec![0u8; PR * k];
                        for r in 0..rows {
                            unpack_legacy_scalar(ty, qm.row(j0 + r), &mut u[r * k..][..k]);
                        }
                        assert!(
                            p.u == u,
                            "{ty} extreme={extreme} rows {j0}..: unpacked quants"
                        );
                    }
                    let mut q = vec![0u32; PR * k / 4];
                    interleave_scalar(&p.u, &mut q, k);
                    assert!(
                        p.q == q,
                        "{ty} extreme={extreme} rows {j0}..: interleaved words"
                    );
                }
            }
        }
    }

    /// The AVX2 panels against the model, bit for bit: random and extreme weights and
    /// activations (all equal, so every activation quant is ±127), a full and a partial panel,
    /// x-row counts that leave tails after the 4-row tiles.
    #[test]
    fn avx2_panels_equal_the_scalar_model_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("no AVX2 here: nothing to check");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(29);
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
            let f = fmt(ty).unwrap();
            let (n, k) = (21, 512);
            for extreme in [false, true] {
                let w = weights(&mut rng, ty, n, k, extreme);
                let qm = QMatrix::new(ty, n, k, &w).unwrap();
                for m in [4usize, 5, 11] {
                    let x: Vec<f32> = (0..m * k)
                        .map(|_| {
                            if extreme {
                                1.0
                            } else {
                                rng.gen_range(-2.0..2.0)
                            }
                        })
                        .collect();
                    // SAFETY: AVX2 and FMA detected above.
                    let xq = unsafe { Xq::from_blocks(ty, f, &x, m, k, true) };
                    let mut y = vec![0f32; m * n];
                    // SAFETY: AVX2 and FMA detected above; y is m × n and x was made for ty.
                    unsafe { matmul_panels(&qm, f, &xq, m, None, &mut y) };
                    for j0 in (0..n).step_by(PR) {
                        let rows = (n - j0).min(PR);
                        let mut p = Panel::new(k, xq.nblk);
                        p.pack(&qm, j0, rows, Isa::Avx2);
                        let want = model(&p, &xq, f, m, rows);
                        for r in 0..m {
                            for j in 0..rows {
                                let (got, want) = (y[r * n + j0 + j], want[r * rows + j]);
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{ty} extreme={extreme} m={m} x row {r} W row {}: {got} vs {want}",
                                    j0 + j
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
