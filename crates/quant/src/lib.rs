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

mod convert;
pub mod cpu;
mod decode_layout;
mod float;
mod format;
mod kquantize;
mod kquants;
mod legacy;
mod matmul;
mod packed;
mod qmatrix;
mod regrid;
mod rows;
mod simd;

pub use convert::{dequantize_row, quantize_row};
pub use cpu::{simd_path, SimdPath};
pub use float::{bf16_to_f32, dot_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use format::{row_bytes, vec_dot_type, QuantError};
pub use matmul::{dequantize_matrix, matmul_dequant, matmul_q, matmul_q_on};
pub use packed::{DecodePacked, PanelPacked};
pub use qmatrix::QMatrix;
pub use regrid::{can_nudge, nudge_row};
pub use rows::{rows_available, QuantizedRows, RowsScratch};
pub use smolt_gguf::GgmlType;

use format::check_len;

/// Dot product of one row of `w_ty` weights with one row of activations already
/// quantized to `a_ty` (which must be `vec_dot_type(w_ty)`), on the best SIMD path.
pub fn vec_dot(w_ty: GgmlType, w: &[u8], a_ty: GgmlType, a: &[u8]) -> Result<f32, QuantError> {
    vec_dot_on(cpu::active(), w_ty, w, a_ty, a)
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
