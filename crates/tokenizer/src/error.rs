//! Everything that can be wrong with a vocabulary, each variant naming the culprit so that a
//! user holding a broken or unusual GGUF knows which key to look at.

/// Why a [`crate::Tokenizer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required key is missing or has the wrong type (the GGUF error names the key).
    #[error("tokenizer metadata: {0}")]
    Gguf(#[from] smolt_gguf::Error),
    #[error(
        "tokenizer.ggml.model is `{0}`; smolt-tokenizer implements `llama` (SentencePiece-style) \
         and `gpt2` (byte-level BPE) vocabularies"
    )]
    UnsupportedModel(String),
    #[error(
        "tokenizer.ggml.pre is `{pre}`, a pre-tokenizer smolt-tokenizer does not implement \
         (it implements: {supported})"
    )]
    UnsupportedPre { pre: String, supported: String },
    #[error("the vocabulary has no tokens")]
    EmptyVocab,
    #[error("the vocabulary has {0} tokens, more than a u32 id can address")]
    TooManyTokens(usize),
    #[error("{what} has {got} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{what} is {id}, outside the vocabulary of {n_tokens} tokens")]
    BadSpecialId {
        what: &'static str,
        id: u64,
        n_tokens: usize,
    },
    #[error("metadata `{key}` should be a boolean but is {found}")]
    NotABool { key: &'static str, found: String },
    #[error("token id {id} is outside the vocabulary of {n_tokens} tokens")]
    BadTokenId { id: u32, n_tokens: usize },
}
