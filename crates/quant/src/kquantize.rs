//! Reference K-quant quantizers (ggml's `quantize_row_q*_K_ref`, no importance matrix).
//!
//! These are line-by-line ports, float operation for float operation, because K-quant
//! quantization searches over candidate scales and the winner can flip on a single
//! rounding difference; only a faithful port reproduces llama.cpp's bytes. C's implicit
//! conversions (`int8_t l = nearest_int(..)`, `uint8_t ls = ..`) are spelled out with `as`.

use crate::float::{f16_to_f32, f32_to_f16};
use crate::kquants::{
    scale_min_k4, Q2_K_BYTES, Q3_K_BYTES, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, QK_K,
};

const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even via the 1.5·2^23 trick (valid for |x| ≤ 2^22;
/// outside that it returns the same wrapped value C does, never panics).
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    ((val.to_bits() & 0x007f_ffff) as i32) - 0x0040_0000
}

/// Round-trip a value through f16, as the block stores it.
#[inline(always)]
fn via_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

fn make_qx_quants(
    n: usize,
    nmax: i32,
    x: &[f32],
    l_out: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in &x[..n] {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let weight = |i: usize| -> f32 {
        match qw {
            Some(w) => w[i],
            None => match rmse_type {
                1 => x[i] * x[i],
                2 => 1.0,
                3 => x[i].abs(),
                _ => x[i].abs().sqrt(),
            },
        }
    };
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = weight(i);
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            let w = weight(i);
            sumlx += w * x[i] * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

fn make_q3_quants(n: usize, nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in &x[..n] {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    // do_rmse = true (the only caller's choice).
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = l as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l_out[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l_out[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for l in &mut l_out[..n] {
        *l += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Fit `x ≈ scale*L + min` (min ≤ 0) by trying `nstep+1` candidate scales; returns
/// `(scale, -min)`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    n: usize,
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.clamp(0, nmax) as u8;
        let mut diff = scale * l_out[i] as f32 + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let mut diff = this_scale * laux[i] as f32 + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

fn pack_2bit(l: &[u8], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

pub(crate) fn quantize_q2_k(src: &[f32], out: &mut [u8]) {
    const Q4SCALE: f32 = 15.0;
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q2_K_BYTES)) {
        let mut l = [0u8; QK_K];
        let mut laux = [0u8; 16];
        let mut weights = [0f32; 16];
        let mut mins = [0f32; 16];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            for i in 0..16 {
                weights[i] = x[16 * j + i].abs();
            }
            let (s, m) = make_qkx2_quants(
                16,
                3,
                &x[16 * j..],
                &weights,
                &mut l[16 * j..],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let (sc, rest) = y.split_at_mut(16);
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..16 {
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
            rest[64..66].copy_from_slice(&f32_to_f16(max_scale / Q4SCALE).to_le_bytes());
        } else {
            sc.fill(0);
            rest[64..66].copy_from_slice(&f32_to_f16(0.0).to_le_bytes());
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..16 {
                sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            rest[66..68].copy_from_slice(&f32_to_f16(max_min / Q4SCALE).to_le_bytes());
        } else {
            rest[66..68].copy_from_slice(&f32_to_f16(0.0).to_le_bytes());
        }
        let dd = f16_to_f32(u16::from_le_bytes([rest[64], rest[65]]));
        let dmin = f16_to_f32(u16::from_le_bytes([rest[66], rest[67]]));
        for j in 0..16 {
            let d = dd * (sc[j] & 0x0f) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin * (sc[j] >> 4) as f32;
            for ii in 0..16 {
                let q = nearest_int((x[16 * j + ii] + dm) / d);
                l[16 * j + ii] = q.clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut rest[0..64]);
    }
}

pub(crate) fn quantize_q3_k(src: &[f32], out: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q3_K_BYTES)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(16, 4, &x[16 * j..], &mut l[16 * j..]);
            let s = scales[j].abs();
            if s > amax {
                amax = s;
                max_scale = scales[j];
            }
        }
        let (hmask, rest) = y.split_at_mut(32);
        let (qs, rest) = rest.split_at_mut(64);
        let (ysc, dbytes) = rest.split_at_mut(12);
        ysc.fill(0);
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                let li = nearest_int(iscale * scales[j]) as i8;
                let li = (li.clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    ysc[j] = li & 0x0f;
                } else {
                    ysc[j - 8] |= (li & 0x0f) << 4;
                }
                ysc[j % 4 + 8] |= (li >> 4) << (2 * (j / 4));
            }
            dbytes.copy_from_slice(&f32_to_f16(1.0 / iscale).to_le_bytes());
        } else {
            dbytes.copy_from_slice(&f32_to_f16(0.0).to_le_bytes());
        }
        let dall = f16_to_f32(u16::from_le_bytes([dbytes[0], dbytes[1]]));
        for j in 0..16 {
            let lo = if j < 8 {
                ysc[j] & 0x0f
            } else {
                ysc[j - 8] >> 4
            };
            let sc = ((lo | (((ysc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8) - 32;
            let d = dall * sc as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }
        hmask.fill(0);
        let mut m = 0;
        let mut hm = 1u8;
        for v in l.iter_mut() {
            if *v > 3 {
                hmask[m] |= hm;
                *v -= 4;
            }
            m += 1;
            if m == QK_K / 8 {
                m = 0;
                hm = hm.wrapping_shl(1);
            }
        }
        let lu: [u8; QK_K] = l.map(|v| v as u8);
        pack_2bit(&lu, qs);
    }
}

/// Shared by Q4_K and Q5_K: per 32-element sub-block scales/mins packed into 6 bits.
fn quantize_q45_k(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
    head: &mut [u8],
) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xb = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xb {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for i in 0..32 {
            weights[i] = av_x + xb[i].abs();
        }
        let (s, m) = make_qkx2_quants(
            32,
            nmax,
            xb,
            &weights,
            &mut l[32 * j..],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc = &mut head[4..16];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    head[0..2].copy_from_slice(&f32_to_f16(max_scale / 63.0).to_le_bytes());
    head[2..4].copy_from_slice(&f32_to_f16(max_min / 63.0).to_le_bytes());
    let dd = via_f16(max_scale / 63.0);
    let dmin = via_f16(max_min / 63.0);
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &head[4..16]);
        let d = dd * s as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / d);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
}

pub(crate) fn quantize_q4_k(src: &[f32], out: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q4_K_BYTES)) {
        let mut l = [0u8; QK_K];
        quantize_q45_k(x, 15, -1.0, 20, &mut l, &mut y[0..16]);
        let q = &mut y[16..];
        for j in 0..4 {
            for i in 0..32 {
                q[32 * j + i] = l[64 * j + i] | (l[64 * j + i + 32] << 4);
            }
        }
    }
}

pub(crate) fn quantize_q5_k(src: &[f32], out: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q5_K_BYTES)) {
        let mut l = [0u8; QK_K];
        quantize_q45_k(x, 31, -0.5, 15, &mut l, &mut y[0..16]);
        let (qh, ql) = y[16..].split_at_mut(32);
        qh.fill(0);
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in 0..4 {
            for j in 0..32 {
                let mut l1 = l[64 * n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[64 * n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * n + j] = l1 | (l2 << 4);
            }
            m1 = m1.wrapping_shl(2);
            m2 = m2.wrapping_shl(2);
        }
    }
}

pub(crate) fn quantize_q6_k(src: &[f32], out: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q6_K_BYTES)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            let s = make_qx_quants(16, 32, &x[16 * ib..], &mut l[16 * ib..], 1, None);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            y.fill(0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        y[208..210].copy_from_slice(&f32_to_f16(1.0 / iscale).to_le_bytes());
        let d_all = via_f16(1.0 / iscale);
        for ib in 0..16 {
            y[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let d = d_all * (y[192 + j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        let lu: [u8; QK_K] = l.map(|v| v as u8);
        let (ql, rest) = y.split_at_mut(128);
        let qh = &mut rest[..64];
        for n in 0..2 {
            let (ql, qh, lb) = (&mut ql[64 * n..], &mut qh[32 * n..], &lu[128 * n..]);
            for i in 0..32 {
                let (q1, q2, q3, q4) = (
                    lb[i] & 0xf,
                    lb[i + 32] & 0xf,
                    lb[i + 64] & 0xf,
                    lb[i + 96] & 0xf,
                );
                ql[i] = q1 | (q3 << 4);
                ql[i + 32] = q2 | (q4 << 4);
                qh[i] = (lb[i] >> 4)
                    | ((lb[i + 32] >> 4) << 2)
                    | ((lb[i + 64] >> 4) << 4)
                    | ((lb[i + 96] >> 4) << 6);
            }
        }
    }
}

/// Activation quantization for K-quant dot products: 8-bit quants with one f32 scale
/// per 256 and sums of each 16 quants, so that a weight's per-group min can be applied
/// as `min * bsum` instead of per element.
pub(crate) fn quantize_q8_k_scalar(src: &[f32], out: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8_K_BYTES)) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            y.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            y[4 + j] = nearest_int(iscale * x[j]).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let s: i32 = y[4 + 16 * j..4 + 16 * j + 16]
                .iter()
                .map(|&q| q as i8 as i32)
                .sum();
            y[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
        }
        y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}
