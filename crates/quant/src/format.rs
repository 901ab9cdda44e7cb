//! What every module needs to know about a type's rows, whatever it does with them: the
//! error type, a row's size in bytes, and the activation format each weight type pairs with.

use crate::GgmlType;

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
