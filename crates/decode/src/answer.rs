//! One answer to one prompt, free or under a constraint: the call every front end (eval,
//! `generate --prompts`, the server, the C API) makes, so "constrained or not" is decided in
//! one place. [`answer_streaming`] is the same with the new tokens reported as they are fed.

use smolt_constrain::{ConstrainError, Constraint, TokenMask};
use smolt_model::{KvCache, Model};

use crate::{
    generate_constrained, generate_constrained_after, generate_in, generate_with,
    ConstrainedOutput, Context, Finish, GenerateLimits, GenerateOptions, GenerationStats,
    LogitsSource, ModelLogits, Sampler, StopReason,
};

impl Answer {
    /// A constrained loop's output, its ending in the terms a caller reports.
    fn of_constrained(out: ConstrainedOutput) -> Answer {
        let ending = match out.finish {
            Finish::Truncated => Ending::Truncated,
            Finish::LimitAccepting => Ending::Limit,
            Finish::GrammarEnd | Finish::EndToken(_) => Ending::Complete,
        };
        Answer {
            ids: out.ids,
            probs: out.probs,
            ending,
            stats: Some(out.stats),
        }
    }
}

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
    /// The `on_tokens` callback of [`answer_streaming`] asked to stop.
    Stopped,
}

impl Ending {
    /// The word the JSON outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Limit => "limit",
            Ending::Truncated => "truncated",
            Ending::ContextFull => "context_full",
            Ending::Stopped => "stopped",
        }
    }
}

/// The new token ids (no prompt, no stop token), how they ended, and for a constrained answer
/// the loop's counters (mask time, forward passes, forced tokens).
pub struct Answer {
    pub ids: Vec<u32>,
    /// For a constrained answer, one per id: the model's probability of the chosen token
    /// among those allowed, `None` where the grammar forced it (see [`crate::confidence`]);
    /// empty otherwise.
    pub probs: Vec<Option<f32>>,
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
    cache: KvCache,
    prompt: &[u32],
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
) -> anyhow::Result<Answer> {
    answer_from(model, cache, prompt, 0, constraint, opts)
}

/// [`answer`] for a prompt whose start is in `cache` already: `prompt` is the whole prompt,
/// `cache` holds its first `cache.len()` tokens (not all of them). The constraint's copy
/// fields and the drafts see the whole prompt. Lets a caller prefill while it builds the
/// constraint (`smolt generate` does, on another thread).
pub fn answer_prefilled(
    model: &Model,
    cache: KvCache,
    prompt: &[u32],
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
) -> anyhow::Result<Answer> {
    let fed = cache.len();
    anyhow::ensure!(
        fed < prompt.len(),
        "the cache holds {fed} tokens; the prompt has {}, and its last must be left to feed",
        prompt.len()
    );
    answer_from(model, cache, prompt, fed, constraint, opts)
}

/// The answer to `prompt`, of which `cache` holds the first `fed` tokens (besides anything
/// before the prompt).
fn answer_from(
    model: &Model,
    mut cache: KvCache,
    prompt: &[u32],
    fed: usize,
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
) -> anyhow::Result<Answer> {
    match constraint {
        Some(c) => {
            let mut state = c.start_copying(prompt);
            let mut source = ModelLogits::with_cache(model, cache);
            let mut sampler = Sampler::new(opts.sampling.clone());
            // Speculation keeps the output only where the pick is deterministic.
            let drafts = if opts.sampling.is_greedy() {
                opts.draft_tokens
            } else {
                0
            };
            let out = generate_constrained_after(
                &mut source,
                prompt,
                fed,
                &mut state,
                GenerateLimits::new(opts.max_new_tokens).with_speculation(drafts),
                |logits| sampler.sample(logits),
            )?;
            Ok(Answer::of_constrained(out))
        }
        None => {
            let g = generate_in(model, &mut cache, &prompt[fed..], opts, |_| true)?;
            let ending = match g.stop {
                StopReason::StopToken(_) => Ending::Complete,
                StopReason::ContextFull => Ending::ContextFull,
                StopReason::MaxTokens | StopReason::Callback => Ending::Limit,
            };
            Ok(Answer {
                ids: g.ids,
                ending,
                probs: Vec::new(),
                stats: None,
            })
        }
    }
}

/// [`answer_in`] reporting the output as it comes: `on_tokens` is called with new output ids
/// in order (several at once where the grammar forces a run), each id exactly once, the last
/// ones after the loop ends if it had not fed them; returning `false` stops generation with
/// [`Ending::Stopped`] (the ids passed in that call are part of the answer). Speculative drafts
/// are off: every token fed is output, so nothing reported is taken back.
///
/// `cache` holds the start of the prompt (or nothing) and `prompt` the rest, which must not be
/// empty. After an `Ok` return the cache holds the first `cache.len()` tokens of (cached
/// prompt, `prompt`, answer ids), so the caller can reuse a common prefix for the next prompt;
/// after an error its content is unspecified (clear it).
pub fn answer_streaming(
    model: &Model,
    cache: &mut KvCache,
    prompt: &[u32],
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
    on_tokens: impl FnMut(&[u32]) -> bool,
) -> anyhow::Result<Answer> {
    let context = Context {
        fed: cache.len(),
        length: model.spec.context_length,
        special: &model.special,
    };
    let taken = std::mem::replace(cache, model.new_cache());
    let mut source = ModelLogits::with_cache(model, taken);
    let out = answer_streaming_with(&mut source, context, prompt, constraint, opts, on_tokens);
    *cache = source.cache;
    out
}

/// [`answer_streaming`] over any [`LogitsSource`] (the server's batch engine seats each
/// sequence behind one); `context` says where the source stands.
///
/// Which logits each reported id came from (the server's log-probabilities rely on it): in
/// each call of `on_tokens`, the first id is the one sampled from the logits the source
/// returned last, if it returned any since the previous call; every other id was forced by the
/// grammar, committed without sampling. Both loops report a sampled token before feeding it,
/// and the constrained one feeds forced tokens only right after the token before them.
pub fn answer_streaming_with(
    source: impl LogitsSource,
    context: Context,
    prompt: &[u32],
    constraint: Option<&Constraint>,
    opts: &GenerateOptions,
    mut on_tokens: impl FnMut(&[u32]) -> bool,
) -> anyhow::Result<Answer> {
    let mut source = source;
    anyhow::ensure!(!prompt.is_empty(), "nothing to feed: the prompt is empty");
    let Some(c) = constraint else {
        let g = generate_with(
            |tokens| source.forward(tokens),
            context,
            prompt,
            opts,
            |id| on_tokens(&[id]),
        )?;
        let ending = match g.stop {
            StopReason::StopToken(_) => Ending::Complete,
            StopReason::ContextFull => Ending::ContextFull,
            StopReason::MaxTokens => Ending::Limit,
            StopReason::Callback => Ending::Stopped,
        };
        return Ok(Answer {
            ids: g.ids,
            ending,
            probs: Vec::new(),
            stats: None,
        });
    };
    let mut state = c.start_copying(prompt);
    let mut sampler = Sampler::new(opts.sampling.clone());
    let mut source = Watched {
        inner: source,
        prompt_len: prompt.len(),
        prompt_fed: false,
        seen: Vec::new(),
        on_tokens: &mut on_tokens,
    };
    let out = generate_constrained(
        &mut source,
        prompt,
        &mut state,
        GenerateLimits::new(opts.max_new_tokens),
        |logits| sampler.sample(logits),
    );
    let seen = std::mem::take(&mut source.seen);
    match out {
        Ok(out) => {
            // The loop never feeds its last token (nor forced ones after it): report them now.
            if let Some(rest) = out.ids.get(seen.len()..).filter(|r| !r.is_empty()) {
                on_tokens(rest);
            }
            Ok(Answer::of_constrained(out))
        }
        Err(ConstrainError::Forward(e)) if e.is::<Halt>() => Ok(Answer {
            ids: seen,
            ending: Ending::Stopped,
            probs: Vec::new(),
            stats: None,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The error a [`Watched`] source returns to end the constrained loop when `on_tokens` says
/// stop.
#[derive(Debug)]
struct Halt;

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by the caller")
    }
}

impl std::error::Error for Halt {}

/// The model as the constrained loop sees it, reporting each output token as it is fed (the
/// loop has no per-token callback). It cannot verify drafts (the trait's defaults), so the
/// loop never speculates and every token fed is output.
struct Watched<'f, S: LogitsSource, F: FnMut(&[u32]) -> bool> {
    inner: S,
    prompt_len: usize,
    prompt_fed: bool,
    /// The output ids reported so far.
    seen: Vec<u32>,
    on_tokens: &'f mut F,
}

impl<S: LogitsSource, F: FnMut(&[u32]) -> bool> Watched<'_, S, F> {
    /// Reports the output among `tokens`; a stop leaves them unfed.
    fn observe(&mut self, tokens: &[u32]) -> anyhow::Result<()> {
        // The first feed is the prompt, with any tokens the grammar forces at the start.
        let new = if self.prompt_fed {
            tokens
        } else {
            self.prompt_fed = true;
            &tokens[self.prompt_len.min(tokens.len())..]
        };
        if new.is_empty() {
            return Ok(());
        }
        self.seen.extend_from_slice(new);
        if !(self.on_tokens)(new) {
            return Err(anyhow::Error::new(Halt));
        }
        Ok(())
    }
}

impl<S: LogitsSource, F: FnMut(&[u32]) -> bool> LogitsSource for Watched<'_, S, F> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.observe(tokens)?;
        self.inner.forward(tokens)
    }

    fn forward_masked(&mut self, tokens: &[u32], allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        self.observe(tokens)?;
        self.inner.forward_masked(tokens, allowed)
    }
}
