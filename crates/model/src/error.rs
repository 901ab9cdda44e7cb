//! What can go wrong when loading or running a model, each variant naming the culprit so a
//! user with a bad or unsupported file knows what to try.

/// Errors from loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] smolt_gguf::Error),
    #[error(
        "architecture `{0}` is not supported (general.architecture); smolt runs: gemma3, qwen2, \
         qwen3, llama. Use a GGUF of one of these, or add the architecture to \
         smolt_model::ArchSpec"
    )]
    UnsupportedArch(String),
    #[error("metadata `{key}` = {value} is invalid: {reason}")]
    BadMetadata {
        key: String,
        value: String,
        reason: String,
    },
    #[error("tensor `{0}` is not in the file (is this GGUF complete, and of the architecture it claims?)")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?} but the metadata implies {expected:?} (GGML order: [row length, rows])")]
    Shape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor `{name}`: {source}")]
    Quant {
        name: String,
        source: smolt_quant::QuantError,
    },
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "the KV cache holds {len} positions; {more} more would exceed the context length {max}"
    )]
    ContextFull { len: usize, more: usize, max: usize },
    #[error("adapter does not fit this model: {0}")]
    Adapter(String),
    #[error("this KV cache was made for a different model ({0})")]
    CacheMismatch(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
