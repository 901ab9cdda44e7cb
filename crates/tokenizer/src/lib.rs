//! smolt-tokenizer: the SentencePiece-style tokenizer of a GGUF vocabulary.
//!
//! Training data, prompts and constrained decoding all have to agree with the model about token
//! boundaries, so encoding must give exactly the ids llama.cpp gives (its `LLAMA_VOCAB_TYPE_SPM`
//! path) and decoding must give exactly the text Hugging Face's tokenizer gives. Both are pinned
//! by a fixture of real Gemma 3 outputs in `tests/`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = smolt_gguf::Gguf::open("gemma-3-270m-q4_k_m.gguf")?;
//! let tok = smolt_tokenizer::Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("<start_of_turn>user\nHi", true, true);
//! assert_eq!(tok.decode(&ids, true), "user\nHi");
//! # Ok(()) }
//! ```

mod error;
mod fxhash;
mod special;
mod spm;
mod tokenizer;

pub use error::TokenizerError;
pub use tokenizer::{TokenType, Tokenizer, VocabSpec};
