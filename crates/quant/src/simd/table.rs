//! The kernel table: one plain function pointer per weight type, and the scalar table every
//! SIMD table starts from.

use crate::cpu::SimdPath;
use crate::{kquants, legacy, GgmlType};

/// `nb` blocks of weights `w` dotted with `nb` blocks of activations `a` (in the
/// weight type's `vec_dot_type`). Callers guarantee both slices hold `nb` blocks.
pub(crate) type DotFn = fn(nb: usize, w: &[u8], a: &[u8]) -> f32;

pub(crate) struct Kernels {
    // Read only where there is an AVX-512 table to compare with (`matmul_q`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub path: SimdPath,
    pub q4_0: DotFn,
    pub q4_1: DotFn,
    pub q5_0: DotFn,
    pub q5_1: DotFn,
    pub q8_0: DotFn,
    pub q2_k: DotFn,
    pub q3_k: DotFn,
    pub q4_k: DotFn,
    pub q5_k: DotFn,
    pub q6_k: DotFn,
    pub q8_k: DotFn,
    pub f32: DotFn,
    pub f16: DotFn,
    pub bf16: DotFn,
}

impl Kernels {
    pub fn dot(&self, ty: GgmlType) -> Option<DotFn> {
        use GgmlType::*;
        Some(match ty {
            Q4_0 => self.q4_0,
            Q4_1 => self.q4_1,
            Q5_0 => self.q5_0,
            Q5_1 => self.q5_1,
            Q8_0 => self.q8_0,
            Q2K => self.q2_k,
            Q3K => self.q3_k,
            Q4K => self.q4_k,
            Q5K => self.q5_k,
            Q6K => self.q6_k,
            Q8K => self.q8_k,
            F32 => self.f32,
            F16 => self.f16,
            BF16 => self.bf16,
            Q8_1 => return None,
        })
    }
}

fn dot_f32_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f64;
    for (cw, ca) in w[..4 * n].chunks_exact(4).zip(a[..4 * n].chunks_exact(4)) {
        let x = f32::from_le_bytes([cw[0], cw[1], cw[2], cw[3]]);
        let y = f32::from_le_bytes([ca[0], ca[1], ca[2], ca[3]]);
        s += x as f64 * y as f64;
    }
    s as f32
}

fn dot_half_bytes(n: usize, w: &[u8], a: &[u8], conv: fn(u16) -> f32) -> f32 {
    let mut s = 0.0f64;
    for (cw, ca) in w[..2 * n].chunks_exact(2).zip(a[..2 * n].chunks_exact(2)) {
        let x = conv(u16::from_le_bytes([cw[0], cw[1]]));
        let y = conv(u16::from_le_bytes([ca[0], ca[1]]));
        s += x as f64 * y as f64;
    }
    s as f32
}

fn dot_f16_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_half_bytes(n, w, a, crate::float::f16_to_f32)
}

fn dot_bf16_bytes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_half_bytes(n, w, a, crate::float::bf16_to_f32)
}

pub(crate) static SCALAR: Kernels = Kernels {
    path: SimdPath::Scalar,
    q4_0: legacy::dot_q4_0_q8_0,
    q4_1: legacy::dot_q4_1_q8_1,
    q5_0: legacy::dot_q5_0_q8_0,
    q5_1: legacy::dot_q5_1_q8_1,
    q8_0: legacy::dot_q8_0_q8_0,
    q2_k: kquants::dot_q2_k_q8_k,
    q3_k: kquants::dot_q3_k_q8_k,
    q4_k: kquants::dot_q4_k_q8_k,
    q5_k: kquants::dot_q5_k_q8_k,
    q6_k: kquants::dot_q6_k_q8_k,
    q8_k: kquants::dot_q8_k_q8_k,
    f32: dot_f32_bytes,
    f16: dot_f16_bytes,
    bf16: dot_bf16_bytes,
};
