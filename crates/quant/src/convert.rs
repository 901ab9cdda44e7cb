//! Whole rows of any type to f32 and back: the lengths checked, then the per-type dispatch
//! to the format modules.

use crate::GgmlType;

use crate::format::{check_len, QuantError};
use crate::{float, kquantize, kquants, legacy};

/// Decode `out.len()` elements of `ty` from `bytes` (which must hold exactly that many).
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_len(ty, out.len(), bytes.len())?;
    dequantize_unchecked(ty, bytes, out);
    Ok(())
}

/// `dequantize_row` for callers that validated the lengths (short input decodes fewer elements).
pub(crate) fn dequantize_unchecked(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match ty {
        F32 => float::dequantize_f32(bytes, out),
        F16 => float::dequantize_f16(bytes, out),
        BF16 => float::dequantize_bf16(bytes, out),
        Q4_0 => legacy::dequantize_q4_0(bytes, out),
        Q4_1 => legacy::dequantize_q4_1(bytes, out),
        Q5_0 => legacy::dequantize_q5_0(bytes, out),
        Q5_1 => legacy::dequantize_q5_1(bytes, out),
        Q8_0 => legacy::dequantize_q8_0(bytes, out),
        Q8_1 => legacy::dequantize_q8_1(bytes, out),
        Q2K => kquants::dequantize_q2_k(bytes, out),
        Q3K => kquants::dequantize_q3_k(bytes, out),
        Q4K => kquants::dequantize_q4_k(bytes, out),
        Q5K => kquants::dequantize_q5_k(bytes, out),
        Q6K => kquants::dequantize_q6_k(bytes, out),
        Q8K => kquants::dequantize_q8_k(bytes, out),
    }
}

/// Encode `src` as `ty` with ggml's reference quantizer (deterministic, no importance
/// matrix), so exported files match what llama.cpp's own tools would write.
pub fn quantize_row(ty: GgmlType, src: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    check_len(ty, src.len(), out.len())?;
    quantize_unchecked(ty, src, out);
    Ok(())
}

/// `quantize_row` for callers that validated the lengths.
pub(crate) fn quantize_unchecked(ty: GgmlType, src: &[f32], out: &mut [u8]) {
    use GgmlType::*;
    match ty {
        F32 => float::quantize_f32(src, out),
        F16 => float::quantize_f16(src, out),
        BF16 => float::quantize_bf16(src, out),
        Q4_0 => legacy::quantize_q4_0(src, out),
        Q4_1 => legacy::quantize_q4_1(src, out),
        Q5_0 => legacy::quantize_q5_0(src, out),
        Q5_1 => legacy::quantize_q5_1(src, out),
        Q8_0 => quantize_q8_0(src, out),
        Q8_1 => legacy::quantize_q8_1(src, out),
        Q2K => kquantize::quantize_q2_k(src, out),
        Q3K => kquantize::quantize_q3_k(src, out),
        Q4K => kquantize::quantize_q4_k(src, out),
        Q5K => kquantize::quantize_q5_k(src, out),
        Q6K => kquantize::quantize_q6_k(src, out),
        Q8K => quantize_q8_k(src, out),
    }
}

/// Q8_0 activation quantization: the NEON version where the CPU path is NEON (bit for bit the
/// scalar one), else the scalar one. The choice lives here, above both, so that the scalar
/// formats and the SIMD kernels do not import each other.
fn quantize_q8_0(src: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "aarch64")]
    if crate::cpu::active() == crate::cpu::SimdPath::Neon {
        return crate::simd::neon::quantize_q8_0(src, out);
    }
    legacy::quantize_q8_0_scalar(src, out)
}

/// Q8_K activation quantization (8-bit quants, one f32 scale per 256, sums of each 16 for the
/// K-quants' mins), chosen as [`quantize_q8_0`] is.
fn quantize_q8_k(src: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "aarch64")]
    if crate::cpu::active() == crate::cpu::SimdPath::Neon {
        return crate::simd::neon::quantize_q8_k(src, out);
    }
    kquantize::quantize_q8_k_scalar(src, out)
}
