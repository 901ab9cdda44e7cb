//! The 32-element "legacy" block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and Q8_1 (activations only).
//!
//! Layouts (little endian, as stored in GGUF):
//! - Q4_0: d:f16, qs[16]             x = d * (nibble - 8)
//! - Q4_1: d:f16, m:f16, qs[16]      x = d * nibble + m
//! - Q5_0: d:f16, qh:u32, qs[16]     x = d * (nibble | bit<<4 - 16)
//! - Q5_1: d:f16, m:f16, qh:u32, qs[16]
//! - Q8_0: d:f16, qs[32] (i8)        x = d * q
//! - Q8_1: d:f16, s:f16 (= d * sum(qs)), qs[32]
//!
//! Byte j of `qs` holds element j in its low nibble and element j+16 in its high nibble;
//! bit j of `qh` is the fifth bit of element j. Arithmetic mirrors ggml's reference code
//! operation for operation, because the dequantized values are checked bit for bit.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[cfg(target_arch = "x86_64")]
use crate::cpu::{self, SimdPath};
use crate::float::{read_f16, write_f16};

pub const QK: usize = 32;
pub const Q4_0_BYTES: usize = 18;
pub const Q4_1_BYTES: usize = 20;
pub const Q5_0_BYTES: usize = 22;
pub const Q5_1_BYTES: usize = 24;
pub const Q8_0_BYTES: usize = 34;
pub const Q8_1_BYTES: usize = 36;

#[inline(always)]
fn read_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

// ---------------------------------------------------------------- dequantize

pub(crate) fn dequantize_q4_0(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(Q4_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub(crate) fn dequantize_q4_1(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(Q4_1_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(b, 0);
        let m = read_f16(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            y[j] = (qs[j] & 0x0f) as f32 * d + m;
            y[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The two 5-bit values of byte `j`: elements j and j+16, before any offset.
#[inline(always)]
pub(crate) fn q5_pair(qs: &[u8], qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (
        ((qs[j] & 0x0f) as u32 | h0) as i32,
        ((qs[j] >> 4) as u32 | h1) as i32,
    )
}

pub(crate) fn dequantize_q5_0(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(Q5_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(b, 0);
        let qh = read_u32(b, 2);
        let qs = &b[6..22];
        for j in 0..16 {
            let (x0, x1) = q5_pair(qs, qh, j);
            y[j] = (x0 - 16) as f32 * d;
            y[j + 16] = (x1 - 16) as f32 * d;
        }
    }
}

pub(crate) fn dequantize_q5_1(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(Q5_1_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(b, 0);
        let m = read_f16(b, 2);
        let qh = read_u32(b, 4);
        let qs = &b[8..24];
        for j in 0..16 {
            let (x0, x1) = q5_pair(qs, qh, j);
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

pub(crate) fn dequantize_q8_0(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match cpu::active() {
        // SAFETY: the active path is AVX-512 only where the CPU has AVX-512 F/BW (and AVX2,
        // checked with that path's features), AVX2 only where it has AVX2.
        SimdPath::Avx512 => return unsafe { dequantize_q8_0_avx512(bytes, out) },
        SimdPath::Avx2 => return unsafe { dequantize_q8_0_avx2(bytes, out) },
        SimdPath::Scalar | SimdPath::Neon => {}
    }
    dequantize_q8_0_body(bytes, out)
}

/// The Q8_0 decode, compiled once per instruction set below: the same operations (an exact
/// widening, one f32 product) whatever the vector width, so the same values bit for bit. It
/// is the LM head's per-chunk decode in training, where the baseline build was the cost.
#[inline(always)]
fn dequantize_q8_0_body(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(b, 0);
        let q: &[u8; QK] = b[2..].try_into().expect("a Q8_0 block holds 32 quants");
        for j in 0..QK {
            y[j] = (q[j] as i8) as f32 * d;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequantize_q8_0_avx2(bytes: &[u8], out: &mut [f32]) {
    dequantize_q8_0_body(bytes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn dequantize_q8_0_avx512(bytes: &[u8], out: &mut [f32]) {
    dequantize_q8_0_body(bytes, out)
}

pub(crate) fn dequantize_q8_1(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(Q8_1_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(b, 0);
        for j in 0..QK {
            y[j] = (b[4 + j] as i8) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------- quantize (ggml's *_ref)

/// The element of largest magnitude, keeping its sign (first one wins on ties).
#[inline]
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// C's `(int8_t)(float)` truncation followed by `MIN(cap, ·)` on the byte.
#[inline(always)]
fn trunc_i8_min(v: f32, cap: u8) -> u8 {
    // `as i8` saturates where C would be UB; in range both truncate toward zero.
    ((v as i8) as u8).min(cap)
}

pub(crate) fn quantize_q4_0(src: &[f32], out: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q4_0_BYTES)) {
        let d = signed_absmax(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(b, 0, d);
        for j in 0..16 {
            let x0 = trunc_i8_min(x[j] * id + 8.5, 15);
            let x1 = trunc_i8_min(x[j + 16] * id + 8.5, 15);
            b[2 + j] = x0 | (x1 << 4);
        }
    }
}

pub(crate) fn quantize_q4_1(src: &[f32], out: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q4_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(b, 0, d);
        write_f16(b, 2, min);
        for j in 0..16 {
            let x0 = trunc_i8_min((x[j] - min) * id + 0.5, 15);
            let x1 = trunc_i8_min((x[j + 16] - min) * id + 0.5, 15);
            b[4 + j] = x0 | (x1 << 4);
        }
    }
}

fn pack_q5(xi: impl Fn(usize) -> (u8, u8), qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..16 {
        let (x0, x1) = xi(j);
        qs[j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
        qh |= (((x0 & 0x10) >> 4) as u32) << j;
        qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
    }
    qh
}

pub(crate) fn quantize_q5_0(src: &[f32], out: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q5_0_BYTES)) {
        let d = signed_absmax(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(b, 0, d);
        let qh = pack_q5(
            |j| {
                (
                    trunc_i8_min(x[j] * id + 16.5, 31),
                    trunc_i8_min(x[j + 16] * id + 16.5, 31),
                )
            },
            &mut b[6..22],
        );
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

pub(crate) fn quantize_q5_1(src: &[f32], out: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q5_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(b, 0, d);
        write_f16(b, 2, min);
        // ggml casts straight to uint8_t here (no MIN); in range that is truncation.
        let qh = pack_q5(
            |j| {
                (
                    ((x[j] - min) * id + 0.5) as u8,
                    ((x[j + 16] - min) * id + 0.5) as u8,
                )
            },
            &mut b[8..24],
        );
        b[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

/// Scale and quants for one 32-element Q8 block; `roundf` rounds half away from zero.
#[inline]
fn q8_block(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = (v * id).round() as i8;
        sum += r as i32;
        *q = r as u8;
    }
    (d, sum)
}

pub(crate) fn quantize_q8_0_scalar(src: &[f32], out: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        let (d, _) = q8_block(x, &mut b[2..34]);
        write_f16(b, 0, d);
    }
}

pub(crate) fn quantize_q8_1(src: &[f32], out: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_1_BYTES)) {
        let (d, sum) = q8_block(x, &mut b[4..36]);
        write_f16(b, 0, d);
        write_f16(b, 2, sum as f32 * d);
    }
}

// ---------------------------------------------------------------- scalar dot products

/// Σ_blocks (Σ q_w·q_a) · (d_w·d_a): integer inner sums, one float multiply-add per block.
pub(crate) fn dot_q8_0_q8_0(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
        let ba = &a[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
        let mut sumi = 0i32;
        for j in 0..QK {
            sumi += (bw[2 + j] as i8 as i32) * (ba[2 + j] as i8 as i32);
        }
        sumf += sumi as f32 * (read_f16(bw, 0) * read_f16(ba, 0));
    }
    sumf
}

pub(crate) fn dot_q4_0_q8_0(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q4_0_BYTES..(i + 1) * Q4_0_BYTES];
        let ba = &a[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
        let qa = &ba[2..];
        let mut sumi = 0i32;
        for j in 0..16 {
            let x0 = (bw[2 + j] & 0x0f) as i32 - 8;
            let x1 = (bw[2 + j] >> 4) as i32 - 8;
            sumi += x0 * (qa[j] as i8 as i32) + x1 * (qa[j + 16] as i8 as i32);
        }
        sumf += sumi as f32 * (read_f16(bw, 0) * read_f16(ba, 0));
    }
    sumf
}

pub(crate) fn dot_q5_0_q8_0(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q5_0_BYTES..(i + 1) * Q5_0_BYTES];
        let ba = &a[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
        let qh = read_u32(bw, 2);
        let qs = &bw[6..22];
        let qa = &ba[2..];
        let mut sumi = 0i32;
        for j in 0..16 {
            let (x0, x1) = q5_pair(qs, qh, j);
            sumi += (x0 - 16) * (qa[j] as i8 as i32) + (x1 - 16) * (qa[j + 16] as i8 as i32);
        }
        sumf += sumi as f32 * (read_f16(bw, 0) * read_f16(ba, 0));
    }
    sumf
}

/// Q4_1 and Q5_1 carry a min `m`; the Q8_1 activation's `s = d_a·Σq_a` turns m·Σx into one multiply.
pub(crate) fn dot_q4_1_q8_1(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q4_1_BYTES..(i + 1) * Q4_1_BYTES];
        let ba = &a[i * Q8_1_BYTES..(i + 1) * Q8_1_BYTES];
        let qa = &ba[4..];
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += (bw[4 + j] & 0x0f) as i32 * (qa[j] as i8 as i32)
                + (bw[4 + j] >> 4) as i32 * (qa[j + 16] as i8 as i32);
        }
        sumf +=
            (read_f16(bw, 0) * read_f16(ba, 0)) * sumi as f32 + read_f16(bw, 2) * read_f16(ba, 2);
    }
    sumf
}

pub(crate) fn dot_q5_1_q8_1(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let bw = &w[i * Q5_1_BYTES..(i + 1) * Q5_1_BYTES];
        let ba = &a[i * Q8_1_BYTES..(i + 1) * Q8_1_BYTES];
        let qh = read_u32(bw, 4);
        let qs = &bw[8..24];
        let qa = &ba[4..];
        let mut sumi = 0i32;
        for j in 0..16 {
            let (x0, x1) = q5_pair(qs, qh, j);
            sumi += x0 * (qa[j] as i8 as i32) + x1 * (qa[j + 16] as i8 as i32);
        }
        sumf +=
            (read_f16(bw, 0) * read_f16(ba, 0)) * sumi as f32 + read_f16(bw, 2) * read_f16(ba, 2);
    }
    sumf
}
