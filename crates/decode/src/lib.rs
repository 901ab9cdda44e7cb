//! smolt-decode: turning a [`smolt_model::Model`] into text ids — sampling and the generation
//! loop (KV cache, batched prefill, streaming callback, stop tokens).
//!
//! Token ids in, token ids out: tokenizing the prompt and detokenizing the stream belong to
//! `smolt-tokenizer`, so this crate is usable with any vocabulary.

mod generate;
mod sampler;

mod answer;
mod model_logits;
pub use answer::{answer, answer_in, Answer, Ending};
pub use generate::{
    generate, generate_in, GenerateOptions, Generation, StopReason, DEFAULT_DRAFT_TOKENS,
};
pub use model_logits::ModelLogits;
pub use sampler::{argmax, Sampler, SamplingParams};
