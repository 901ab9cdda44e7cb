//! Everything that can be wrong with a GGUF file, each variant naming the culprit.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "not a GGUF file: the first four bytes are {found:02x?}, expected \"GGUF\" (47 47 55 46)"
    )]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0}; smolt reads versions 2 and 3{hint}", hint = endian_hint(*.0))]
    UnsupportedVersion(u32),
    #[error("file is truncated: reading the {what} at byte {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("the {what} says {count}, which cannot fit in the {remaining} bytes left in the file (is the file damaged or truncated?)")]
    AbsurdCount {
        what: String,
        count: u64,
        remaining: u64,
    },
    #[error("{what} at byte {offset} is not valid UTF-8")]
    BadUtf8 { what: String, offset: u64 },
    #[error("metadata `{key}` has unknown value type {id}")]
    UnknownValueType { key: String, id: u32 },
    #[error("metadata `{key}` holds a boolean byte {byte}, expected 0 or 1")]
    BadBool { key: String, byte: u8 },
    #[error("metadata `{0}` nests arrays too deeply")]
    TooDeep(String),
    #[error("metadata key `{0}` appears twice")]
    DuplicateKey(String),
    #[error("general.alignment is {0}; it must be a power of two no larger than 1 MiB")]
    BadAlignment(String),
    #[error("tensor `{tensor}` has bad dimensions: {reason}")]
    BadDims { tensor: String, reason: String },
    #[error("tensor `{tensor}` has unknown GGML type id {id}")]
    UnknownTensorType { tensor: String, id: u32 },
    #[error(
        "tensor `{tensor}` has data offset {offset}, not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor name `{0}` appears twice")]
    DuplicateTensor(String),
    #[error("tensor `{tensor}` needs bytes {start}..{} but the file has only {file_len} bytes (truncated download?)", start.saturating_add(*n_bytes))]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        n_bytes: u64,
        file_len: u64,
    },
    #[error("tensors `{first}` and `{second}` overlap in the data section")]
    OverlappingTensors { first: String, second: String },
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    #[error("metadata `{key}` should be {expected} but is {found}")]
    WrongType {
        key: String,
        expected: String,
        found: String,
    },
    #[error("tensor `{0}` is not in the file")]
    MissingTensor(String),
    #[error("cannot write tensor `{tensor}`: {reason}")]
    BadTensorData { tensor: String, reason: String },
}

/// A big-endian GGUF (made for s390x) reads as version 0x0300_0000; saying so saves a user
/// from hunting for a "version 50331648" converter.
fn endian_hint(version: u32) -> &'static str {
    if (2..=3).contains(&version.swap_bytes()) {
        " (this looks like a big-endian GGUF file, which smolt does not read)"
    } else {
        ""
    }
}
