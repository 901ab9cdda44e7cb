//! The 256-element "K-quant" super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and Q8_K
//! (the activation format their dot products pair with).
//!
//! Layouts (byte offsets within one block, little endian):
//! - Q2_K (84):  scales[16] @0 (lo nibble = scale, hi = min), qs[64] @16, d:f16 @80, dmin:f16 @82
//! - Q3_K (110): hmask[32] @0, qs[64] @32, scales[12] @96 (16 packed 6-bit), d:f16 @108
//! - Q4_K (144): d @0, dmin @2, scales[12] @4 (8 6-bit scales + 8 6-bit mins), qs[128] @16
//! - Q5_K (176): d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
//! - Q6_K (210): ql[128] @0, qh[64] @128, scales[16] (i8) @192, d:f16 @208
//! - Q8_K (292): d:f32 @0, qs[256] (i8) @4, bsums[16] (i16, sums of 16 quants) @260
//!
//! Dequantization repeats ggml's float operations in ggml's order (`d*sc` first, then
//! `*q`, then `- dmin*m`) because the result is compared bit for bit with ggml.

use crate::float::read_f16;

pub const QK_K: usize = 256;
pub const Q2_K_BYTES: usize = 84;
pub const Q3_K_BYTES: usize = 110;
pub const Q4_K_BYTES: usize = 144;
pub const Q5_K_BYTES: usize = 176;
pub const Q6_K_BYTES: usize = 210;
pub const Q8_K_BYTES: usize = 292;

/// Scale and min `j` (0..8) of the 12-byte packed 6-bit table of Q4_K/Q5_K.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 12-byte 6-bit table of Q4_K/Q5_K as four little-endian words of plain bytes: scales
/// 0..8, then mins 0..8 (what [`scale_min_k4`] gives one pair at a time), for the vector
/// kernels and the Q4_K decode layout.
#[inline(always)]
pub(crate) fn scale_min_words_k4(q: &[u8; 12]) -> [u32; 4] {
    let u = |o: usize| u32::from_le_bytes([q[o], q[o + 1], q[o + 2], q[o + 3]]);
    let (u0, u1, u2) = (u(0), u(4), u(8));
    let (k1, k2, k3) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    [
        u0 & k1,
        (u2 & k2) | (((u0 >> 6) & k3) << 4),
        u1 & k1,
        ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4),
    ]
}

/// The 16 signed 6-bit scales of a Q3_K block (already minus 32).
#[inline(always)]
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
        let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((lo | (hi << 4)) as i8) - 32;
    }
    out
}

// ---------------------------------------------------------------- dequantize

pub(crate) fn dequantize_q2_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes
        .chunks_exact(Q2_K_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = read_f16(b, 80);
        let min = read_f16(b, 82);
        let scales = &b[0..16];
        let mut is = 0;
        let mut yi = 0;
        for n in 0..2 {
            let q = &b[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0f) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        y[yi] = dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml;
                        yi += 1;
                    }
                }
            }
        }
    }
}

pub(crate) fn dequantize_q3_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes
        .chunks_exact(Q3_K_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d_all = read_f16(b, 108);
        let hm = &b[0..32];
        let scales = q3k_scales(&b[96..108]);
        let mut m = 1u8;
        let mut is = 0;
        let mut yi = 0;
        for n in 0..2 {
            let q = &b[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let i = l + 16 * half;
                        let v = ((q[i] >> shift) & 3) as i32 - if hm[i] & m != 0 { 0 } else { 4 };
                        y[yi] = dl * v as f32;
                        yi += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

pub(crate) fn dequantize_q4_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes
        .chunks_exact(Q4_K_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = read_f16(b, 0);
        let min = read_f16(b, 2);
        let scales = &b[4..16];
        for j in 0..4 {
            let q = &b[16 + 32 * j..16 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub(crate) fn dequantize_q5_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes
        .chunks_exact(Q5_K_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = read_f16(b, 0);
        let min = read_f16(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        for j in 0..4 {
            let ql = &b[48 + 32 * j..48 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0x0f) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// The 6-bit quant `l` (0..32) of group `g` (0..4) in 128-element half `n` of a Q6_K block, minus 32.
#[inline(always)]
fn q6(ql: &[u8], qh: &[u8], l: usize, g: usize) -> i32 {
    let lo = match g {
        0 => ql[l] & 0x0f,
        1 => ql[l + 32] & 0x0f,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let hi = (qh[l] >> (2 * g)) & 3;
    (lo | (hi << 4)) as i32 - 32
}

pub(crate) fn dequantize_q6_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes
        .chunks_exact(Q6_K_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = read_f16(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                for g in 0..4 {
                    y[l + 32 * g] = d * (sc[is + 2 * g] as i8) as f32 * q6(ql, qh, l, g) as f32;
                }
            }
        }
    }
}

pub(crate) fn dequantize_q8_k(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes
        .chunks_exact(Q8_K_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..QK_K {
            y[j] = (b[4 + j] as i8) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------- Q8_K activation access

#[inline(always)]
pub(crate) fn q8k_d(a: &[u8]) -> f32 {
    f32::from_le_bytes([a[0], a[1], a[2], a[3]])
}

#[inline(always)]
pub(crate) fn q8k_q(a: &[u8], j: usize) -> i32 {
    a[4 + j] as i8 as i32
}

#[inline(always)]
pub(crate) fn q8k_bsum(a: &[u8], j: usize) -> i32 {
    i16::from_le_bytes([a[260 + 2 * j], a[261 + 2 * j]]) as i32
}

// ---------------------------------------------------------------- scalar dot products
//
// Every kernel computes, per super-block, exact integer sums and then
// `sumf += d_w*d_a * Σ sc·(q·a)  -  dmin_w*d_a * Σ m·bsum` in f32. The SIMD kernels
// compute the same integers, so they differ from these only in float summation order.

pub(crate) fn dot_q2_k_q8_k(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q2_K_BYTES..(i + 1) * Q2_K_BYTES];
        let ba = &a[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let scales = &bw[0..16];
        let mut summs = 0i32;
        for (j, &s) in scales.iter().enumerate() {
            summs += q8k_bsum(ba, j) * (s >> 4) as i32;
        }
        let mut isum = 0i32;
        let mut is = 0;
        let mut k = 0;
        for n in 0..2 {
            let q = &bw[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let mut s = 0i32;
                    for l in 0..16 {
                        s += ((q[l + 16 * half] >> shift) & 3) as i32 * q8k_q(ba, k);
                        k += 1;
                    }
                    isum += (scales[is] & 0x0f) as i32 * s;
                    is += 1;
                }
            }
        }
        let dall = q8k_d(ba) * read_f16(bw, 80);
        let dmin = q8k_d(ba) * read_f16(bw, 82);
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub(crate) fn dot_q3_k_q8_k(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q3_K_BYTES..(i + 1) * Q3_K_BYTES];
        let ba = &a[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let hm = &bw[0..32];
        let scales = q3k_scales(&bw[96..108]);
        let mut isum = 0i32;
        let mut m = 1u8;
        let mut is = 0;
        let mut k = 0;
        for n in 0..2 {
            let q = &bw[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let mut s = 0i32;
                    for l in 0..16 {
                        let idx = l + 16 * half;
                        let v =
                            ((q[idx] >> shift) & 3) as i32 - if hm[idx] & m != 0 { 0 } else { 4 };
                        s += v * q8k_q(ba, k);
                        k += 1;
                    }
                    isum += scales[is] as i32 * s;
                    is += 1;
                }
                m <<= 1;
            }
        }
        sumf += (read_f16(bw, 108) * q8k_d(ba)) * isum as f32;
    }
    sumf
}

pub(crate) fn dot_q4_k_q8_k(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q4_K_BYTES..(i + 1) * Q4_K_BYTES];
        let ba = &a[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let scales = &bw[4..16];
        let (mut isum, mut summs) = (0i32, 0i32);
        for j in 0..4 {
            let q = &bw[16 + 32 * j..16 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (mut s1, mut s2) = (0i32, 0i32);
            for l in 0..32 {
                s1 += (q[l] & 0x0f) as i32 * q8k_q(ba, 64 * j + l);
                s2 += (q[l] >> 4) as i32 * q8k_q(ba, 64 * j + 32 + l);
            }
            isum += sc1 as i32 * s1 + sc2 as i32 * s2;
            let b1 = q8k_bsum(ba, 4 * j) + q8k_bsum(ba, 4 * j + 1);
            let b2 = q8k_bsum(ba, 4 * j + 2) + q8k_bsum(ba, 4 * j + 3);
            summs += m1 as i32 * b1 + m2 as i32 * b2;
        }
        let d = read_f16(bw, 0) * q8k_d(ba);
        let dmin = read_f16(bw, 2) * q8k_d(ba);
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub(crate) fn dot_q5_k_q8_k(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q5_K_BYTES..(i + 1) * Q5_K_BYTES];
        let ba = &a[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let scales = &bw[4..16];
        let qh = &bw[16..48];
        let (mut isum, mut summs) = (0i32, 0i32);
        for j in 0..4 {
            let ql = &bw[48 + 32 * j..48 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let (mut s1, mut s2) = (0i32, 0i32);
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                s1 += ((ql[l] & 0x0f) as i32 + h1) * q8k_q(ba, 64 * j + l);
                s2 += ((ql[l] >> 4) as i32 + h2) * q8k_q(ba, 64 * j + 32 + l);
            }
            isum += sc1 as i32 * s1 + sc2 as i32 * s2;
            let b1 = q8k_bsum(ba, 4 * j) + q8k_bsum(ba, 4 * j + 1);
            let b2 = q8k_bsum(ba, 4 * j + 2) + q8k_bsum(ba, 4 * j + 3);
            summs += m1 as i32 * b1 + m2 as i32 * b2;
        }
        let d = read_f16(bw, 0) * q8k_d(ba);
        let dmin = read_f16(bw, 2) * q8k_d(ba);
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub(crate) fn dot_q6_k_q8_k(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q6_K_BYTES..(i + 1) * Q6_K_BYTES];
        let ba = &a[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let mut isum = 0i32;
        for n in 0..2 {
            let ql = &bw[64 * n..64 * n + 64];
            let qh = &bw[128 + 32 * n..128 + 32 * n + 32];
            let sc = &bw[192 + 8 * n..192 + 8 * n + 8];
            for g in 0..4 {
                for half in 0..2 {
                    let mut s = 0i32;
                    for l in 16 * half..16 * half + 16 {
                        s += q6(ql, qh, l, g) * q8k_q(ba, 128 * n + 32 * g + l);
                    }
                    isum += (sc[2 * g + half] as i8) as i32 * s;
                }
            }
        }
        sumf += (read_f16(bw, 208) * q8k_d(ba)) * isum as f32;
    }
    sumf
}

pub(crate) fn dot_q8_k_q8_k(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let ba = &a[i * Q8_K_BYTES..(i + 1) * Q8_K_BYTES];
        let mut isum = 0i32;
        for j in 0..QK_K {
            isum += q8k_q(bw, j) * q8k_q(ba, j);
        }
        sumf += (q8k_d(bw) * q8k_d(ba)) * isum as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    /// The vector kernels' word form of the 6-bit table holds what the scalar pairs read.
    #[test]
    fn scale_min_words_agree_with_the_pairs() {
        let mut seed = 3u32;
        for _ in 0..200 {
            let q: [u8; 12] = std::array::from_fn(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            });
            let bytes: Vec<u8> = super::scale_min_words_k4(&q)
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            for j in 0..8 {
                assert_eq!(
                    (bytes[j], bytes[8 + j]),
                    super::scale_min_k4(j, &q),
                    "{q:?} {j}"
                );
            }
        }
    }
}
