//! The activations of a product, quantized once per matmul exactly as `quantize_activations`
//! does and kept per weight sub-block (`Xq`): plain i8 rows, one f32 scale per sub-block, and
//! the sub-block sums the kernels need to remove the weights' unsigned offset (and Q4_K's
//! mins). `Fmt` says what a weight type's sub-blocks look like.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::float::{f16_to_f32, f32_to_f16};
use crate::format::vec_dot_type;
use crate::kquantize::quantize_q8_k_scalar;
use crate::kquants::{Q8_K_BYTES, QK_K};
use crate::legacy::{quantize_q8_0_scalar, Q8_0_BYTES};
use crate::GgmlType;

/// What the kernels need to know about a weight type: sub-block length, the offset that
/// makes its quants unsigned, whether it has per-sub-block mins.
#[derive(Clone, Copy)]
pub(super) struct Fmt {
    pub(super) bs: usize,
    pub(super) zero: i32,
    pub(super) has_min: bool,
}

pub(super) fn fmt(ty: GgmlType) -> Option<Fmt> {
    use GgmlType::*;
    Some(match ty {
        Q8_0 => Fmt {
            bs: 32,
            zero: 128,
            has_min: false,
        },
        Q5_0 => Fmt {
            bs: 32,
            zero: 16,
            has_min: false,
        },
        Q4K => Fmt {
            bs: 32,
            zero: 0,
            has_min: true,
        },
        Q6K => Fmt {
            bs: 16,
            zero: 32,
            has_min: false,
        },
        _ => return None,
    })
}

/// Activations quantized exactly as `quantize_activations` does, unpacked per sub-block.
pub(super) struct Xq {
    pub(super) k: usize,
    pub(super) nblk: usize,
    /// `m × k` quants.
    pub(super) q: Vec<i8>,
    /// `m × nblk` scales.
    pub(super) d: Vec<f32>,
    /// `m × nblk`: zero · Σq over the sub-block (exact).
    pub(super) zs: Vec<i32>,
    /// `m × nblk`: d · Σq (for the mins of Q4_K).
    pub(super) ds: Vec<f32>,
}

/// One x row and its slices of `Xq`, as the parallel zip hands them out.
type XqRow<'a> = (
    ((&'a [f32], &'a mut [i8]), &'a mut [f32]),
    (&'a mut [i32], &'a mut [f32]),
);

impl Xq {
    pub(super) fn new(ty: GgmlType, f: Fmt, x: &[f32], m: usize, k: usize) -> Xq {
        let vt = vec_dot_type(ty);
        let nblk = k / f.bs;
        let mut xq = Xq {
            k,
            nblk,
            q: vec![0; m * k],
            d: vec![0.0; m * nblk],
            zs: vec![0; m * nblk],
            ds: vec![0.0; m * nblk],
        };
        let row = |(((xr, q), d), (zs, ds)): XqRow| {
            // SAFETY: `matmul` (the only caller) runs on AVX-512 CPUs only; the slices
            // are one row's worth: k values, k quants, nblk block entries.
            unsafe {
                if vt == GgmlType::Q8_0 {
                    quant_row_q8_0(xr, q, d, zs, ds, f.zero)
                } else {
                    quant_row_q8_k(xr, q, d, zs, ds, f)
                }
            }
        };
        if m == 1 {
            row((
                ((x, &mut xq.q[..]), &mut xq.d[..]),
                (&mut xq.zs[..], &mut xq.ds[..]),
            ));
        } else {
            x.par_chunks(k)
                .zip(xq.q.par_chunks_mut(k))
                .zip(xq.d.par_chunks_mut(nblk))
                .zip(xq.zs.par_chunks_mut(nblk).zip(xq.ds.par_chunks_mut(nblk)))
                .for_each(row);
        }
        xq
    }
}

impl Xq {
    /// The same operands without the AVX-512 quantizers below, for the AVX2 tiles: Q8_0 rows
    /// through [`quant_row_q8_0_avx2`] where `avx2`, else ggml's blocks from the crate's
    /// scalar quantizers, unpacked (Q8_K always: a smaller share of the work).
    ///
    /// # Safety
    /// With `avx2`, the CPU must have AVX2 and FMA.
    pub(super) unsafe fn from_blocks(
        ty: GgmlType,
        f: Fmt,
        x: &[f32],
        m: usize,
        k: usize,
        avx2: bool,
    ) -> Xq {
        let vt = vec_dot_type(ty);
        let nblk = k / f.bs;
        let mut xq = Xq {
            k,
            nblk,
            q: vec![0; m * k],
            d: vec![0.0; m * nblk],
            zs: vec![0; m * nblk],
            ds: vec![0.0; m * nblk],
        };
        let row = |blocks: &mut Vec<u8>, (((xr, q), d), (zs, ds)): XqRow| {
            if avx2 && vt == GgmlType::Q8_0 {
                // SAFETY: `avx2` only on AVX2 + FMA CPUs (the caller's promise); the slices
                // are one row's worth.
                return unsafe { quant_row_q8_0_avx2(xr, q, d, zs, ds, f.zero) };
            }
            let (bs, bytes) = match vt {
                GgmlType::Q8_0 => (32, Q8_0_BYTES),
                _ => (QK_K, Q8_K_BYTES),
            };
            blocks.resize(k / bs * bytes, 0);
            // The scalar quantizers: `quantize_activations` picks them on x86.
            if vt == GgmlType::Q8_0 {
                quantize_q8_0_scalar(xr, blocks);
            } else {
                quantize_q8_k_scalar(xr, blocks);
            }
            let per = bs / f.bs;
            for (g, blk) in blocks.chunks_exact(bytes).enumerate() {
                let (scale, quants) = if vt == GgmlType::Q8_0 {
                    (
                        f16_to_f32(u16::from_le_bytes([blk[0], blk[1]])),
                        &blk[2..2 + bs],
                    )
                } else {
                    (
                        f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]),
                        &blk[4..4 + bs],
                    )
                };
                for (s, sub) in quants.chunks_exact(f.bs).enumerate() {
                    let b = g * per + s;
                    let mut sum = 0i32;
                    for (o, &v) in q[b * f.bs..(b + 1) * f.bs].iter_mut().zip(sub) {
                        *o = v as i8;
                        sum += v as i8 as i32;
                    }
                    d[b] = scale;
                    zs[b] = f.zero * sum;
                    ds[b] = scale * sum as f32;
                }
            }
        };
        x.par_chunks(k)
            .zip(xq.q.par_chunks_mut(k))
            .zip(xq.d.par_chunks_mut(nblk))
            .zip(xq.zs.par_chunks_mut(nblk).zip(xq.ds.par_chunks_mut(nblk)))
            .for_each_init(Vec::new, row);
        xq
    }
}

/// [`quant_row_q8_0`] on AVX2: the same values (ggml's scalar `roundf` as truncate, then a
/// step away from zero where the dropped part is ≥ 0.5).
///
/// # Safety
/// AVX2 and FMA; `q.len() == x.len()`, `d`, `zs`, `ds` hold `x.len() / 32` entries.
#[target_feature(enable = "avx2,fma")]
unsafe fn quant_row_q8_0_avx2(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    zs: &mut [i32],
    ds: &mut [f32],
    zero: i32,
) {
    assert!(
        q.len() == x.len() && d.len() * 32 == x.len() && zs.len() == d.len() && ds.len() == d.len()
    );
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    // packs_epi32 then packs_epi16 leave the 4-byte groups in the order 0 2 4 6 1 3 5 7.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for b in 0..d.len() {
        let v: [__m256; 4] =
            std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(32 * b + 8 * i)));
        let a = v.map(|v| _mm256_andnot_ps(sign, v));
        let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
        let dd = amax / 127.0;
        let id = _mm256_set1_ps(if dd != 0.0 { 1.0 / dd } else { 0.0 });
        let r = v.map(|v| {
            let s = _mm256_mul_ps(v, id);
            let t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let up = _mm256_cmp_ps(
                _mm256_andnot_ps(sign, _mm256_sub_ps(s, t)),
                half,
                _CMP_GE_OQ,
            );
            let step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(s, sign), one));
            _mm256_cvttps_epi32(_mm256_add_ps(t, step))
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01)));
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(r[0], r[1]),
            _mm256_packs_epi32(r[2], r[3]),
        );
        _mm256_storeu_si256(
            q.as_mut_ptr().add(32 * b) as *mut __m256i,
            _mm256_permutevar8x32_epi32(bytes, order),
        );
        let df = f16_to_f32(f32_to_f16(dd));
        d[b] = df;
        zs[b] = zero * sum;
        ds[b] = df * sum as f32;
    }
}

/// `quantize_q8_0` (ggml's: d = amax/127 stored as f16, q = round-half-away(x·127/amax))
/// straight into the `Xq` form, for 32-element sub-blocks.
///
/// # Safety
/// AVX-512F/BW/VL/DQ; `q.len() == x.len()`, `d`, `zs`, `ds` hold `x.len() / 32` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn quant_row_q8_0(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    zs: &mut [i32],
    ds: &mut [f32],
    zero: i32,
) {
    assert!(
        q.len() == x.len() && d.len() * 32 == x.len() && zs.len() == d.len() && ds.len() == d.len()
    );
    let sign = _mm512_set1_ps(-0.0);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_set1_ps(1.0);
    for b in 0..d.len() {
        let v = [
            _mm512_loadu_ps(x.as_ptr().add(32 * b)),
            _mm512_loadu_ps(x.as_ptr().add(32 * b + 16)),
        ];
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        let dd = amax / 127.0;
        let id = _mm512_set1_ps(if dd != 0.0 { 1.0 / dd } else { 0.0 });
        let mut sum = _mm512_setzero_si512();
        for (h, &vh) in v.iter().enumerate() {
            let s = _mm512_mul_ps(vh, id);
            // roundf: truncate, then step away from zero where the dropped part is ≥ 0.5.
            let t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(s, t)), half, _CMP_GE_OQ);
            let step = _mm512_or_ps(_mm512_and_ps(s, sign), one);
            let r = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
            sum = _mm512_add_epi32(sum, r);
            _mm_storeu_si128(
                q.as_mut_ptr().add(32 * b + 16 * h) as *mut __m128i,
                _mm512_cvtepi32_epi8(r),
            );
        }
        let sum = _mm512_reduce_add_epi32(sum);
        let df = f16_to_f32(f32_to_f16(dd));
        d[b] = df;
        zs[b] = zero * sum;
        ds[b] = df * sum as f32;
    }
}

/// `quantize_q8_k` (scale -127/max per 256, round to nearest even, clamp at 127) into
/// the `Xq` form for `f.bs`-element sub-blocks.
///
/// # Safety
/// AVX-512F/BW/VL/DQ; `q.len() == x.len()` (a multiple of 256), `d`, `zs`, `ds` hold
/// `x.len() / f.bs` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn quant_row_q8_k(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    zs: &mut [i32],
    ds: &mut [f32],
    f: Fmt,
) {
    assert!(q.len() == x.len() && x.len().is_multiple_of(QK_K) && d.len() * f.bs == x.len());
    assert!(zs.len() == d.len() && ds.len() == d.len());
    let per = QK_K / f.bs;
    let lim = _mm512_set1_epi32(127);
    for g in 0..x.len() / QK_K {
        let xp = x.as_ptr().add(g * QK_K);
        let mut am = _mm512_setzero_ps();
        for i in 0..16 {
            am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(xp.add(16 * i))));
        }
        let amax = _mm512_reduce_max_ps(am);
        if amax == 0.0 {
            q[g * QK_K..(g + 1) * QK_K].fill(0);
            for s in 0..per {
                let b = g * per + s;
                (d[b], zs[b], ds[b]) = (0.0, 0, 0.0);
            }
            continue;
        }
        // The first element whose |x| is the maximum gives the sign, as in the scalar loop.
        let amv = _mm512_set1_ps(amax);
        let mut max = amax;
        for i in 0..16 {
            let v = _mm512_loadu_ps(xp.add(16 * i));
            let k = _mm512_cmp_ps_mask(_mm512_abs_ps(v), amv, _CMP_EQ_OQ);
            if k != 0 {
                max = *xp.add(16 * i + k.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let isv = _mm512_set1_ps(iscale);
        let dg = 1.0 / iscale;
        let mut sums = [0i32; 16];
        for i in 0..16 {
            let v = _mm512_mul_ps(_mm512_loadu_ps(xp.add(16 * i)), isv);
            let r = _mm512_min_epi32(_mm512_cvtps_epi32(v), lim);
            sums[i] = _mm512_reduce_add_epi32(r);
            _mm_storeu_si128(
                q.as_mut_ptr().add(g * QK_K + 16 * i) as *mut __m128i,
                _mm512_cvtepi32_epi8(r),
            );
        }
        for s in 0..per {
            let sum: i32 = sums[s * f.bs / 16..(s + 1) * f.bs / 16].iter().sum();
            let b = g * per + s;
            d[b] = dg;
            zs[b] = f.zero * sum;
            ds[b] = dg * sum as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The AVX2 Q8_0 quantizer gives the scalar quantizer's operands exactly: random rows,
    /// a zero block, and a block whose scale is 1 so that halves are exact ties.
    #[test]
    fn avx2_q8_0_rows_equal_the_scalar_quantizer() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("no AVX2 here: nothing to check");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (m, k) = (5, 640);
        let mut x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-3.0..3.0)).collect();
        x[32..64].fill(0.0);
        let ties = [127.0, 2.5, -2.5, 0.5, -0.5, 1.5, -126.5, 0.49999997];
        for (i, v) in x[64..96].iter_mut().enumerate() {
            *v = ties[i % ties.len()];
        }
        for ty in [GgmlType::Q5_0, GgmlType::Q8_0] {
            let f = fmt(ty).unwrap();
            // SAFETY: AVX2 and FMA detected above.
            let (a, b) = unsafe {
                (
                    Xq::from_blocks(ty, f, &x, m, k, true),
                    Xq::from_blocks(ty, f, &x, m, k, false),
                )
            };
            assert_eq!(a.q, b.q, "{ty}: quants");
            assert_eq!(a.zs, b.zs, "{ty}: offset sums");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.d), bits(&b.d), "{ty}: scales");
            assert_eq!(bits(&a.ds), bits(&b.ds), "{ty}: scaled sums");
        }
    }
}
