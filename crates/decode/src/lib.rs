//! smolt-decode: turning a [`smolt_model::Model`] into text ids — sampling and every decode
//! loop:
//! - [`generate`]: the generation loop (KV cache, batched prefill, streaming callback, stop
//!   tokens).
//! - [`generate_constrained`]: the decode loop under a smolt-constrain
//!   [`ConstraintState`](smolt_constrain::ConstraintState), over any [`LogitsSource`]
//!   ([`ModelLogits`] for the model), feeding forced tokens in one forward pass and telling
//!   complete output from truncated; [`ngram`] proposes its speculative drafts.
//! - [`confidence`]: per-field confidence of a JSON answer from the probabilities of the
//!   tokens the model chose freely ([`ConstrainedOutput::probs`]).
//! - [`answer`]: one answer to one prompt, free or constrained; [`answer_streaming`] reports
//!   its tokens as they come and can be stopped.
//!
//! Token ids in, token ids out: tokenizing the prompt and detokenizing the stream belong to
//! `smolt-tokenizer`, so this crate is usable with any vocabulary.
//!
//! Constrained, per sequence: [`Constraint::start`](smolt_constrain::Constraint::start), then
//! [`generate_constrained`]; report [`Finish::Truncated`] as an error (the output is
//! incomplete, never valid JSON).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tokenizer: std::sync::Arc<smolt_tokenizer::Tokenizer> = todo!();
//! # let mut model: Box<dyn smolt_decode::LogitsSource> = todo!();
//! # let prompt: Vec<u32> = vec![];
//! use smolt_constrain::{ConstraintEngine, ConstraintSpec};
//! use smolt_decode::{generate_constrained, GenerateLimits};
//! let engine = ConstraintEngine::new(tokenizer)?;
//! let constraint = engine.compile(&ConstraintSpec::json_schema_file("receipt.json")?)?;
//! let mut state = constraint.start();
//! let out = generate_constrained(&mut model, &prompt, &mut state, GenerateLimits::new(128),
//!     |logits| smolt_decode::greedy(logits))?;
//! assert!(out.finish.is_complete());
//! # Ok(()) }
//! ```

mod answer;
pub mod confidence;
mod constrained;
mod generate;
mod model_logits;
pub mod ngram;
mod sampler;

pub use answer::{
    answer, answer_in, answer_prefilled, answer_streaming, answer_streaming_with, Answer, Ending,
};
pub use confidence::field_confidence;
pub use constrained::{
    chosen_prob, generate_constrained, generate_constrained_after, greedy, ConstrainedOutput,
    Finish, GenerateLimits, GenerationStats, LogitsSource,
};
pub use generate::{
    generate, generate_in, generate_with, Context, GenerateOptions, Generation, StopReason,
    DEFAULT_DRAFT_TOKENS,
};
pub use model_logits::{scatter_rows, subset_rows, ModelLogits, HEAD_AHEAD, SUBSET_HEAD_FRACTION};
pub use sampler::{argmax, Sampler, SamplingParams};
