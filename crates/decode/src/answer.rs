//! One answer to one prompt, free or under a constraint: the call every front end (eval,
//! `generate --prompts`, the server) makes, so "constrained or not" is decided in one place.

use smolt_constrain::Constraint;
use smolt_model::{KvCache, Model};

use crate::{
    generate_constrained, generate_in, Finish, GenerateLimits, GenerateOptions, GenerationStats,
    ModelLogits, Sampler, StopReason,
};

/// How an answer ended, in the terms a caller reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The model ended it (end-of-generation token) or the grammar was complete.
    Complete,
    /// The token limit was hit where stopping leaves a valid answer (or, unconstrained,
    /// anywhere: nothing says what valid is).
    Limit,
    /// The token limit was hit inside an unfinished value: the answer is NOT valid.
    Truncated,
    /// The model's context filled up.
    ContextFull,
}

impl Ending {
    /// The word the JSON outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Limit => "limit",
            Ending::Truncated => "truncated",
            Ending::ContextFull => "context_full",
        }
    }
}

/// The new token ids (no prompt, no stop token), how they ended, and for a constrained answer
/// the loop's counters (mask time, forward passes, forced tokens).
pub struct Answer {
    pub ids: Vec<u32>,
    pub ending: Ending,
    pub stats: Option<GenerationStats>,
}

/// Answers `prompt` (ids, BOS included if the model wants one) in a fresh cache, sampling by
/// `opts.sampling` (greedy at temperature 0) up to `opts.max_new_tokens`. With a constraint,
/// every step samples only among the tokens it allows, forced runs go in one pass, and greedy
/// answers check `opts.draft_tokens` n-gram drafts per pass; without one, `opts`' stop rules
/// apply.
pub fn answer(
    model: &Model,
    prompt: &[u32],
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
) -> anyhow::Result<Answer> {
    answer_in(model, model.new_cache(), prompt, constraint, opts)
}

/// [`answer`] continuing from `cache`, which already holds the start of the prompt (a prefix
/// shared by many prompts, computed once): `prompt` is the rest.
pub fn answer_in(
    model: &Model,
    mut cache: KvCache,
    prompt: &[u32],
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
) -> anyhow::Result<Answer> {
    match constraint {
        Some(c) => {
            let mut state = c.start();
            let mut source = ModelLogits::with_cache(model, cache);
            let mut sampler = Sampler::new(opts.sampling.clone());
            // Speculation keeps the output only where the pick is deterministic.
            let drafts = if opts.sampling.is_greedy() {
                opts.draft_tokens
            } else {
                0
            };
            let out = generate_constrained(
                &mut source,
                prompt,
                &mut state,
                GenerateLimits::new(opts.max_new_tokens).with_speculation(drafts),
                |logits| sampler.sample(logits),
            )?;
            let ending = match out.finish {
                Finish::Truncated => Ending::Truncated,
                Finish::LimitAccepting => Ending::Limit,
                Finish::GrammarEnd | Finish::EndToken(_) => Ending::Complete,
            };
            Ok(Answer {
                ids: out.ids,
                ending,
                stats: Some(out.stats),
            })
        }
        None => {
            let g = generate_in(model, &mut cache, prompt, opts, |_| true)?;
            let ending = match g.stop {
                StopReason::StopToken(_) => Ending::Complete,
                StopReason::ContextFull => Ending::ContextFull,
                StopReason::MaxTokens | StopReason::Callback => Ending::Limit,
            };
            Ok(Answer {
                ids: g.ids,
                ending,
                stats: None,
            })
        }
    }
}
