//! GGML block formats and their kernels: dequantize, quantize, dot products and the
//! quantized matmul the model's fast path runs on.
//!
//! Everything works on raw GGUF bytes (`&[u8]`), never on typed block structs, so a
//! tensor view from `smolt-gguf` can be used directly and a hostile file can only
//! produce an error. Dequantization is bit-exact with ggml; dot products follow
//! ggml's `vec_dot` scheme (activations quantized to `vec_dot_type(ty)` first) and
//! are picked at run time among scalar, AVX2 and AVX-512 implementations.

// The format code mirrors ggml's index arithmetic (`q[l + 16*half]`, `x[16*j + ii]`);
// iterator rewrites would hide the correspondence the bit-exact tests depend on.
#![allow(clippy::needless_range_loop)]

mod float;
mod kquantize;
mod kquants;
mod legacy;
mod matmul;
mod packed;
mod rows;
mod simd;

pub use float::{bf16_to_f32, dot_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use matmul::{dequantize_matrix, matmul_dequant, matmul_q, matmul_q_on, QMatrix};
pub use packed::DecodePacked;
pub use rows::{rows_available, QuantizedRows, RowsScratch};
pub use simd::{simd_path, SimdPath};
pub use smolt_gguf::GgmlType;

/// What went wrong, in terms of the caller's buffers, so shape bugs are found at the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{ty}: {elems} elements is not a whole number of {block}-element blocks")]
    NotWholeBlocks {
        ty: GgmlType,
        elems: usize,
        block: usize,
    },
    #[error("{ty}: {elems} elements need {expected} bytes, got {got}")]
    ByteLength {
        ty: GgmlType,
        elems: usize,
        expected: usize,
        got: usize,
    },
    #[error("{ty} is not supported for {op}")]
    Unsupported { ty: GgmlType, op: &'static str },
    #[error("{weight} weights pair with {expected} activations, got {got}")]
    ActivationType {
        weight: GgmlType,
        expected: GgmlType,
        got: GgmlType,
    },
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// The activation format ggml quantizes `x` to before a dot product with `ty` weights:
/// the pair is chosen so the inner loop is an integer dot product.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2K | Q3K | Q4K | Q5K | Q6K | Q8K => Q8K,
        Q8_1 => Q8_1,
        F32 => F32,
        F16 => F16,
        BF16 => BF16,
    }
}

/// Bytes for `elems` elements of `ty`, or the error explaining why there is no such size.
pub fn row_bytes(ty: GgmlType, elems: usize) -> Result<usize, QuantError> {
    let block = ty.block_size();
    if !elems.is_multiple_of(block) {
        return Err(QuantError::NotWholeBlocks { ty, elems, block });
    }
    (elems / block)
        .checked_mul(ty.type_size())
        .ok_or_else(|| QuantError::Shape(format!("{elems} elements of {ty} overflow usize")))
}

pub(crate) fn check_len(ty: GgmlType, elems: usize, bytes: usize) -> Result<(), QuantError> {
    let expected = row_bytes(ty, elems)?;
    if expected != bytes {
        return Err(QuantError::ByteLength {
            ty,
            elems,
            expected,
            got: bytes,
        });
    }
    Ok(())
}

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
        Q8_0 => legacy::quantize_q8_0(src, out),
        Q8_1 => legacy::quantize_q8_1(src, out),
        Q2K => kquantize::quantize_q2_k(src, out),
        Q3K => kquantize::quantize_q3_k(src, out),
        Q4K => kquantize::quantize_q4_k(src, out),
        Q5K => kquantize::quantize_q5_k(src, out),
        Q6K => kquantize::quantize_q6_k(src, out),
        Q8K => kquantize::quantize_q8_k(src, out),
    }
}

/// Dot product of one row of `w_ty` weights with one row of activations already
/// quantized to `a_ty` (which must be `vec_dot_type(w_ty)`), on the best SIMD path.
pub fn vec_dot(w_ty: GgmlType, w: &[u8], a_ty: GgmlType, a: &[u8]) -> Result<f32, QuantError> {
    vec_dot_on(simd::active(), w_ty, w, a_ty, a)
}

/// `vec_dot` on a chosen path, so tests and benchmarks can compare paths in one process.
/// Fails with `Unsupported` if this CPU cannot run `path`.
pub fn vec_dot_on(
    path: SimdPath,
    w_ty: GgmlType,
    w: &[u8],
    a_ty: GgmlType,
    a: &[u8],
) -> Result<f32, QuantError> {
    let expected = vec_dot_type(w_ty);
    if a_ty != expected {
        return Err(QuantError::ActivationType {
            weight: w_ty,
            expected,
            got: a_ty,
        });
    }
    let ts = w_ty.type_size();
    if !w.len().is_multiple_of(ts) {
        return Err(QuantError::ByteLength {
            ty: w_ty,
            elems: w.len() / ts * w_ty.block_size(),
            expected: w.len() / ts * ts,
            got: w.len(),
        });
    }
    let elems = w.len() / ts * w_ty.block_size();
    check_len(a_ty, elems, a.len())?;
    let kernels = simd::kernels_for(path).ok_or(QuantError::Unsupported {
        ty: w_ty,
        op: "this SIMD path on this CPU",
    })?;
    let f = kernels.dot(w_ty).ok_or(QuantError::Unsupported {
        ty: w_ty,
        op: "vec_dot",
    })?;
    Ok(f(elems / w_ty.block_size(), w, a))
}

/// Quantize a row of f32 activations to `vec_dot_type(w_ty)`, as `matmul_q` does
/// before its dot products.
pub fn quantize_activations(w_ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, QuantError> {
    let vt = vec_dot_type(w_ty);
    let mut out = vec![0u8; row_bytes(vt, x.len())?];
    quantize_row(vt, x, &mut out)?;
    Ok(out)
}
