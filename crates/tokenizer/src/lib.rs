//! smolt-tokenizer: the tokenizer of a GGUF vocabulary, SentencePiece-style (Gemma) or
//! byte-level BPE (Qwen2, Llama 3, SmolLM, GPT-2).
//!
//! Training data, prompts and constrained decoding all have to agree with the model about token
//! boundaries, so encoding must give exactly the ids llama.cpp gives (its `LLAMA_VOCAB_TYPE_SPM`
//! and `LLAMA_VOCAB_TYPE_BPE` paths) and decoding must give exactly the text Hugging Face's
//! tokenizer gives. Both are pinned by fixtures of real outputs in `tests/`: Gemma 3, and
//! Qwen2.5-Coder plus Llama 3- and SmolLM-style vocabularies against llama.cpp.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = smolt_gguf::Gguf::open("gemma-3-270m-q4_k_m.gguf")?;
//! let tok = smolt_tokenizer::Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("<start_of_turn>user\nHi", true, true);
//! assert_eq!(tok.decode(&ids, true), "user\nHi");
//! # Ok(()) }
//! ```

mod bpe;
mod error;
mod fxhash;
mod pretokenize;
mod special;
mod spm;
pub mod stream;
mod tokenizer;
mod unicode;
mod untrained;

pub use error::TokenizerError;
pub use tokenizer::{BpeSpec, TokenType, Tokenizer, VocabSpec};
