//! smolt-constrain: output constraints (JSON Schema, regex, Lark grammars) as token masks,
//! through llguidance, over smolt's own tokenizer.
//!
//! The pieces, from once per process to once per token:
//! - [`ConstraintEngine`]: the vocabulary's byte trie and llguidance's parser factory (≈0.7 s
//!   for Gemma; build once, share the `Arc`).
//! - [`Constraint`]: a spec ([`ConstraintSpec`]) checked and compiled up front, so that a
//!   schema llguidance cannot honour fails before any generation with a message saying where.
//! - [`ConstraintState`]: one per sequence; mask → sample → commit.
//! - [`generate_constrained`]: the decode loop over any [`LogitsSource`], feeding forced
//!   tokens in one forward pass and telling complete output from truncated.
//!
//! How smolt-decode and the CLI plug in (`smolt generate --schema f.json | --json |
//! --regex RX | --grammar f.lark`):
//! 1. Once per process: `ConstraintEngine::new(Arc::new(Tokenizer::from_gguf(model.gguf())?))`.
//! 2. Per command or request: [`ConstraintSpec::json_schema_file`], [`ConstraintSpec::AnyJson`],
//!    [`ConstraintSpec::Regex`] or [`ConstraintSpec::lark_file`], then
//!    [`ConstraintEngine::compile`]; print its error and exit on failure (it names the
//!    offending keyword, JSON pointer or grammar line), print [`Constraint::warnings`].
//! 3. Per sequence: [`Constraint::start`], then either [`generate_constrained`] with a
//!    [`LogitsSource`] over `Model` + `KvCache` and `|l| sampler.sample(l)`, or smolt-decode's
//!    own loop calling [`ConstraintState::mask`] / [`TokenMask::apply`] / [`ConstraintState::commit`]
//!    and feeding [`ConstraintState::forced_tokens`] with the sampled token in one batch.
//! 4. Report [`Finish::Truncated`] as an error (the output is incomplete, never valid JSON).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tokenizer: std::sync::Arc<smolt_tokenizer::Tokenizer> = todo!();
//! # let mut model: Box<dyn smolt_constrain::LogitsSource> = todo!();
//! # let prompt: Vec<u32> = vec![];
//! use smolt_constrain::{ConstraintEngine, ConstraintSpec, generate_constrained, GenerateLimits};
//! let engine = ConstraintEngine::new(tokenizer)?;
//! let constraint = engine.compile(&ConstraintSpec::json_schema_file("receipt.json")?)?;
//! let mut state = constraint.start();
//! let out = generate_constrained(&mut model, &prompt, &mut state, GenerateLimits::new(128),
//!     |logits| smolt_constrain::greedy(logits))?;
//! assert!(out.finish.is_complete());
//! # Ok(()) }
//! ```

mod constraint;
mod env;
mod error;
mod generate;
mod lark_check;
pub mod ngram;

pub use constraint::{
    Constraint, ConstraintEngine, ConstraintSpec, ConstraintState, JsonLayout, TokenMask,
};
pub use env::{end_tokens, trie_bytes, SmoltTokEnv, SPECIAL_MARKER};
pub use error::{ConstrainError, Result};
pub use generate::{
    generate_constrained, greedy, ConstrainedOutput, Finish, GenerateLimits, GenerationStats,
    LogitsSource,
};
pub use llguidance;

#[cfg(test)]
mod tests {
    /// A server shares one engine and one compiled constraint across request threads and
    /// moves each sequence's state to whichever thread decodes it.
    #[test]
    fn thread_safety() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::ConstraintEngine>();
        send_sync::<crate::Constraint>();
        send::<crate::ConstraintState>();
    }
}
