//! smolt-constrain: output constraints (JSON Schema, regex, Lark grammars) as token masks,
//! through llguidance, over smolt's own tokenizer.
//!
//! The pieces, from once per process to once per token:
//! - [`ConstraintEngine`]: the vocabulary's byte trie and llguidance's parser factory (≈0.7 s
//!   for Gemma; build once, share the `Arc`).
//! - [`Constraint`]: a spec ([`ConstraintSpec`]) checked and compiled up front, so that a
//!   schema llguidance cannot honour fails before any generation with a message saying where.
//! - [`ConstraintState`]: one per sequence; mask → sample → commit.
//!
//! Function calling ([`tools`]): a request's tools and tool choice become one
//! [`ConstraintSpec::ToolCalls`], compiled like any other constraint.
//!
//! The decode loop that drives them (smolt-decode's `generate_constrained`, over any
//! `LogitsSource`, feeding forced tokens in one forward pass and telling complete output from
//! truncated) lives in smolt-decode, next to the model: this crate knows tokens, not models.
//!
//! How smolt-decode and the CLI plug in (`smolt generate --schema f.json | --json |
//! --regex RX | --grammar f.lark`):
//! 1. Once per process: `ConstraintEngine::new(Arc::new(Tokenizer::from_gguf(model.gguf())?))`.
//! 2. Per command or request: [`ConstraintSpec::json_schema_file`], [`ConstraintSpec::AnyJson`],
//!    [`ConstraintSpec::Regex`] or [`ConstraintSpec::lark_file`], then
//!    [`ConstraintEngine::compile`]; print its error and exit on failure (it names the
//!    offending keyword, JSON pointer or grammar line), print [`Constraint::warnings`].
//! 3. Per sequence: [`Constraint::start`], then either smolt-decode's `generate_constrained`
//!    with its `ModelLogits` (a `LogitsSource` over `Model` + `KvCache`) and
//!    `|l| sampler.sample(l)`, or a loop of one's own calling [`ConstraintState::mask`] /
//!    [`TokenMask::apply`] / [`ConstraintState::commit`] and feeding
//!    [`ConstraintState::forced_tokens`] with the sampled token in one batch.
//! 4. Report smolt-decode's `Finish::Truncated` as an error (the output is incomplete, never
//!    valid JSON).

mod constraint;
pub mod copy;
mod env;
mod error;
mod formats;
mod lark_check;
mod layout;
mod meta_schema;
pub mod ramble;
pub mod tools;

pub use constraint::{Constraint, ConstraintEngine, ConstraintSpec, ConstraintState, TokenMask};
pub use env::{end_tokens, trie_bytes, SmoltTokEnv, SPECIAL_MARKER};
pub use error::{ConstrainError, Result};
pub use layout::JsonLayout;
pub use llguidance;
pub use ramble::{GuardCounts, NumberCaps};
pub use tools::{
    CallParseError, CallSyntax, Tool, ToolCall, ToolCallSpec, ToolChoice, ToolError, ToolOutput,
    ToolSet, DEFAULT_MAX_PARALLEL_CALLS, MAX_PARALLEL_CALLS,
};

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
