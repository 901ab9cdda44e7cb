//! Shared helpers: random data for every format.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smolt_quant::{f32_to_f16, GgmlType};

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Approximately N(0, 1) (sum of uniforms), enough for kernel tests.
pub fn normal(r: &mut impl Rng) -> f32 {
    (0..12).map(|_| r.gen::<f32>()).sum::<f32>() - 6.0
}

pub fn normals(r: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| normal(r) * scale).collect()
}

/// Byte offsets of the f16 scale fields of one block of `ty`.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 => &[0, 2],
        Q2K => &[80, 82],
        Q3K => &[108],
        Q4K | Q5K => &[0, 2],
        Q6K => &[208],
        _ => &[],
    }
}

/// `nb` blocks of uniformly random bytes with every scale field replaced by a finite
/// f16 of magnitude 1e-3..1e-1, so every bit pattern of the quants is exercised
/// without producing infinities.
pub fn random_blocks(r: &mut impl Rng, ty: GgmlType, nb: usize) -> Vec<u8> {
    let ts = ty.type_size();
    let mut b: Vec<u8> = (0..nb * ts).map(|_| r.gen()).collect();
    for blk in b.chunks_exact_mut(ts) {
        for &off in f16_fields(ty) {
            let mag = 10f32.powf(r.gen_range(-3.0..-1.0));
            let sign = if r.gen::<bool>() { 1.0 } else { -1.0 };
            blk[off..off + 2].copy_from_slice(&f32_to_f16(sign * mag).to_le_bytes());
        }
    }
    b
}

pub const QUANT_TYPES: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

pub fn is_kquant(ty: GgmlType) -> bool {
    ty.block_size() == 256
}
