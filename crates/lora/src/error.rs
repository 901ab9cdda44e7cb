//! What can go wrong, naming the culprit.

/// Errors from building an adapter or running a training step.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("invalid LoRA config: {0}")]
    Config(String),
    #[error("the adapter does not fit this model: {0}")]
    Mismatch(String),
    #[error("training is not supported for this model yet: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Model(#[from] smolt_model::ModelError),
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("label {label} at position {pos} is neither -100 nor a token id below {vocab}")]
    BadLabel {
        label: i64,
        pos: usize,
        vocab: usize,
    },
    #[error("{tokens} tokens but {labels} labels: give one label per token (-100 = no loss)")]
    LabelCount { tokens: usize, labels: usize },
    #[error("a sequence of {len} tokens exceeds the model's context length {max}")]
    TooLong { len: usize, max: usize },
}

pub type Result<T, E = LoraError> = std::result::Result<T, E>;
