//! The constrained decode loop, generic over where logits come from: smolt-constrain says
//! which tokens may come next, this loop asks the model and picks among them.

use std::time::Instant;

use smolt_constrain::{ConstrainError, ConstraintState, GuardCounts, Result, TokenMask};

/// A model with its KV cache, seen from the decode loop. `ModelLogits` implements it for
/// `Model` + `KvCache`; tests can script it, so the loop's rules (masks, forced tokens,
/// truncation, speculation) are checked without running a model.
pub trait LogitsSource {
    /// Feeds `tokens` after everything fed before (one batched forward pass) and returns the
    /// logits of the last of them, one per vocabulary entry.
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>>;

    /// [`forward`](Self::forward) for a step whose next token must be in `allowed`: returns
    /// the logits with every disallowed entry at `-inf`. A source may skip computing the
    /// disallowed entries (the model scores only the allowed rows of its head when they are
    /// few); the allowed values must be exactly what `forward` gives.
    fn forward_masked(&mut self, tokens: &[u32], allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        let mut logits = self.forward(tokens)?;
        allowed.apply(&mut logits);
        Ok(logits)
    }

    /// Speculative decoding, step 1: feeds `tokens` in one pass and keeps what it takes to
    /// produce the logits at the last `n` of them later, one position at a time
    /// ([`verify_logits`](Self::verify_logits)), so that positions after a rejected draft
    /// cost nothing more. `false` (the default) means this source cannot: nothing was fed and
    /// the loop never speculates.
    fn feed_for_verify(&mut self, _tokens: &[u32], _n: usize) -> anyhow::Result<bool> {
        Ok(false)
    }

    /// Speculative decoding, step 2: the logits at kept position `i` (0 = the first of the last
    /// `n` fed), with `allowed` applied as [`forward_masked`](Self::forward_masked) does.
    fn verify_logits(&mut self, _i: usize, _allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        anyhow::bail!("this logits source cannot verify drafts")
    }

    /// How many of `k` drafts a speculative pass after `fed` tokens to feed may carry: all
    /// of them by default. The model takes fewer where more would move the pass's rows onto
    /// kernels that round otherwise than the plain pass over the same `fed` tokens, so that
    /// drafting never changes the output.
    fn draft_room(&self, _fed: usize, k: usize) -> usize {
        k
    }

    /// Forgets the last `n` fed tokens (rejected drafts), as if they had never been fed.
    fn discard(&mut self, _n: usize) -> anyhow::Result<()> {
        anyhow::bail!("this logits source cannot discard fed tokens")
    }
}

impl<T: LogitsSource + ?Sized> LogitsSource for &mut T {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        (**self).forward(tokens)
    }
    fn forward_masked(&mut self, tokens: &[u32], allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        (**self).forward_masked(tokens, allowed)
    }
    fn feed_for_verify(&mut self, tokens: &[u32], n: usize) -> anyhow::Result<bool> {
        (**self).feed_for_verify(tokens, n)
    }
    fn verify_logits(&mut self, i: usize, allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        (**self).verify_logits(i, allowed)
    }
    fn draft_room(&self, fed: usize, k: usize) -> usize {
        (**self).draft_room(fed, k)
    }
    fn discard(&mut self, n: usize) -> anyhow::Result<()> {
        (**self).discard(n)
    }
}

impl<T: LogitsSource + ?Sized> LogitsSource for Box<T> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        (**self).forward(tokens)
    }
    fn forward_masked(&mut self, tokens: &[u32], allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        (**self).forward_masked(tokens, allowed)
    }
    fn feed_for_verify(&mut self, tokens: &[u32], n: usize) -> anyhow::Result<bool> {
        (**self).feed_for_verify(tokens, n)
    }
    fn verify_logits(&mut self, i: usize, allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        (**self).verify_logits(i, allowed)
    }
    fn draft_room(&self, fed: usize, k: usize) -> usize {
        (**self).draft_room(fed, k)
    }
    fn discard(&mut self, n: usize) -> anyhow::Result<()> {
        (**self).discard(n)
    }
}

/// How long to go on and whether to batch forced tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateLimits {
    /// At most this many output tokens (forced ones included, the end token excluded).
    pub max_tokens: usize,
    /// Feed grammar-forced tokens together with the sampled token before them in one forward
    /// pass. Off only to measure what batching saves: the greedy output is the same.
    pub batch_forced: bool,
    /// Speculative decoding: up to this many draft tokens per step, proposed by n-gram lookup
    /// in the prompt and output so far and checked in the same forward pass (0: off). Only
    /// for greedy sampling: a draft is kept when it is what `sample` picks at its position,
    /// which keeps the output greedy's only if `sample` is deterministic.
    pub speculate: usize,
}

impl GenerateLimits {
    pub fn new(max_tokens: usize) -> GenerateLimits {
        GenerateLimits {
            max_tokens,
            batch_forced: true,
            speculate: 0,
        }
    }

    /// The same limits with speculative decoding of up to `drafts` tokens per step.
    pub fn with_speculation(self, drafts: usize) -> GenerateLimits {
        GenerateLimits {
            speculate: drafts,
            ..self
        }
    }
}

/// Why constrained generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The grammar reached its end (e.g. a JSON value's closing bracket): nothing else could
    /// follow, so no end token was sampled.
    GrammarEnd,
    /// The model chose this end token where the output was complete (it is not in the ids).
    EndToken(u32),
    /// The token limit hit where the output happens to be complete (a number, a regex that
    /// could go on); valid, but the model might have continued.
    LimitAccepting,
    /// The token limit hit inside an unfinished output: it is NOT valid and must not be
    /// treated as such.
    Truncated,
}

impl Finish {
    /// Whether the output is a complete match of the constraint.
    pub fn is_complete(self) -> bool {
        self != Finish::Truncated
    }
}

/// Counters for one generation; the numbers the mask benchmark reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// Forward passes, the prompt's included.
    pub forward_passes: usize,
    /// Output tokens the grammar forced, committed without sampling.
    pub forced_tokens: usize,
    /// Forward passes avoided by feeding forced tokens in the batch of the token before them
    /// (each would otherwise have cost its own pass).
    pub passes_saved: usize,
    /// Time to compute each sampled step's mask, in nanoseconds.
    pub mask_nanos: Vec<u64>,
    /// Draft tokens checked by speculative steps, and how many of them the model agreed with
    /// (each accepted one is a forward pass saved).
    pub drafted: usize,
    pub drafts_accepted: usize,
    /// Where the ramble guard bounded a number or closed a looping string
    /// ([`smolt_constrain::ramble`]).
    pub guard: GuardCounts,
}

/// Output ids (without the prompt and the end token), why generation stopped, and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstrainedOutput {
    pub ids: Vec<u32>,
    /// One per id: the probability the model gave the chosen token among those the grammar
    /// allowed (softmax of the masked logits), or `None` where the grammar left no choice
    /// (forced tokens, one-token masks). What [`crate::confidence`] reads.
    pub probs: Vec<Option<f32>>,
    pub finish: Finish,
    pub stats: GenerationStats,
}

/// The probability of `token` under the softmax of masked `logits` (disallowed = `-inf`), or
/// `None` when the mask allowed only one token: the grammar chose it, not the model.
pub fn chosen_prob(logits: &[f32], token: u32) -> Option<f32> {
    let mut allowed = 0usize;
    let mut max = f32::NEG_INFINITY;
    for &l in logits.iter().filter(|l| l.is_finite()) {
        allowed += 1;
        max = max.max(l);
    }
    let chosen = *logits.get(token as usize)?;
    if allowed < 2 || !chosen.is_finite() {
        return None;
    }
    // Vectorised (the server computes this for every token of every JSON answer: an f64 `exp`
    // per logit took 10% of a 16-sequence constrained load); within 1e-6 of the f64 sum.
    let sum = f64::from(smolt_kernels::exp_shifted_sum(logits, max));
    Some((f64::from(chosen - max).exp() / sum) as f32)
}

/// Argmax: a `sample` function for greedy decoding (lowest id on a tie).
pub fn greedy(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Generates from `prompt` (ids, BOS included if the model wants one; nothing fed to `source`
/// yet) under `state`'s constraint.
///
/// Each step masks the logits (disallowed = `-inf`) and asks `sample` for a token, so any
/// sampler works: [`greedy`], or [`Sampler::sample`](crate::Sampler::sample). Tokens the
/// grammar forces are committed without sampling and fed with the sampled token before them
/// (or with the prompt) as one batch. The last output token is never fed: nothing needs its
/// logits.
pub fn generate_constrained(
    source: &mut impl LogitsSource,
    prompt: &[u32],
    state: &mut ConstraintState,
    limits: GenerateLimits,
    sample: impl FnMut(&[f32]) -> u32,
) -> Result<ConstrainedOutput> {
    generate_constrained_after(source, prompt, 0, state, limits, sample)
}

/// [`generate_constrained`] where `source` already holds `prompt[..fed]` (`fed <
/// prompt.len()`): a caller can run most of the prompt through the model while the constraint
/// is still being built. Drafts still search the whole prompt.
pub fn generate_constrained_after(
    source: &mut impl LogitsSource,
    prompt: &[u32],
    fed: usize,
    state: &mut ConstraintState,
    limits: GenerateLimits,
    mut sample: impl FnMut(&[f32]) -> u32,
) -> Result<ConstrainedOutput> {
    if fed >= prompt.len().max(1) {
        return Err(ConstrainError::Engine(format!(
            "{fed} of the prompt's {} tokens were fed already: at least its last must be left \
             to feed",
            prompt.len()
        )));
    }
    // Every pick's probability, in the order of the picks; each pick becomes the next output
    // token (a speculative step's accepted drafts, then its own pick).
    let picks: std::cell::RefCell<std::collections::VecDeque<Option<f32>>> = Default::default();
    let mut sample = |logits: &[f32]| {
        let t = sample(logits);
        picks.borrow_mut().push_back(chosen_prob(logits, t));
        t
    };
    let next_pick = || picks.borrow_mut().pop_front().flatten();
    let mut probs: Vec<Option<f32>> = Vec::new();
    // The prompt and the output so far in one vector (n-gram drafts search both); the output
    // is what follows the prompt.
    let p = prompt.len();
    let mut seq: Vec<u32> = prompt.to_vec();
    let mut stats = GenerationStats::default();
    let mut feed: Vec<u32> = prompt[fed..].to_vec();
    let finish = loop {
        if limits.batch_forced && !state.is_finished() && seq.len() - p < limits.max_tokens {
            let mut forced = state.forced_tokens();
            forced.truncate(limits.max_tokens + p - seq.len());
            if !forced.is_empty() {
                state.commit_forced(&forced)?;
                stats.forced_tokens += forced.len();
                stats.passes_saved += forced.len();
                probs.extend(std::iter::repeat_n(None, forced.len()));
                seq.extend_from_slice(&forced);
                feed.extend_from_slice(&forced);
            }
        }
        if state.is_finished() {
            break Finish::GrammarEnd;
        }
        if seq.len() - p >= limits.max_tokens {
            break if state.is_accepting() {
                Finish::LimitAccepting
            } else {
                Finish::Truncated
            };
        }
        // The mask depends only on what is committed, so it is known before the forward
        // pass: the source can then skip the head rows it forbids.
        let t0 = Instant::now();
        let mask = state.mask()?;
        stats.mask_nanos.push(t0.elapsed().as_nanos() as u64);
        if mask.num_allowed() == 0 {
            return Err(ConstrainError::Engine(format!(
                "no token is allowed after {} output tokens{}",
                seq.len() - p,
                state.error().map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        let room = limits.max_tokens + p - seq.len() - 1;
        let (accepted, token) = match limits.speculate.min(room) {
            0 => (0, None),
            k => speculate(
                source,
                &seq,
                &mut feed,
                state,
                k,
                limits.batch_forced,
                &mut stats,
                &mut sample,
            )?,
        };
        if accepted > 0 {
            probs.extend((0..accepted).map(|_| next_pick()));
            seq.extend_from_slice(&feed[feed.len() - accepted..]);
            if token.is_none() {
                // The drafts finished the grammar or reached tokens it forces: nothing to
                // pick here; the top of the loop takes it from there.
                feed.clear();
                continue;
            }
        }
        let token = match token {
            Some(t) => t,
            None => {
                let mask = state.mask()?;
                let logits = source
                    .forward_masked(&feed, mask)
                    .map_err(ConstrainError::Forward)?;
                stats.forward_passes += 1;
                if logits.is_empty() {
                    return Err(ConstrainError::Engine(
                        "the model returned no logits (empty prompt?)".into(),
                    ));
                }
                let token = sample(&logits);
                if !mask.is_allowed(token) {
                    return Err(disallowed(token));
                }
                token
            }
        };
        feed.clear();
        state.commit(token)?;
        if state.end_tokens().contains(&token) {
            break Finish::EndToken(token);
        }
        probs.push(next_pick());
        seq.push(token);
        feed.push(token);
    };
    stats.guard = state.guard_counts();
    Ok(ConstrainedOutput {
        ids: seq.split_off(p),
        probs,
        finish,
        stats,
    })
}

fn disallowed(token: u32) -> ConstrainError {
    ConstrainError::Engine(format!(
        "the sampler chose token {token}, which the constraint forbids"
    ))
}

/// One speculative step, with the mask of the next position computed and at most `k` drafts.
/// Drafts come from n-gram lookup in `history` (prompt + output), are cut where the grammar would refuse
/// them or at an end token, and are committed one by one to get the mask of each following
/// position. One forward pass feeds `feed` + drafts; draft i is kept if `sample` picks it from
/// its position's logits; the first disagreement's pick (or, all kept, the pick after the last
/// draft) is returned as the next token, uncommitted — none when the last draft finished the
/// grammar or is followed by forced tokens. The logits are asked for one position at a time,
/// so a wrong draft costs its share of the body pass and nothing of the head after it. Rejected drafts are rolled back in the
/// constraint and discarded from the source. Kept drafts are appended to `feed` (already fed;
/// the caller moves them to the output). Returns (drafts kept, next token), or (0, None) when
/// nothing was proposed or the source cannot verify, leaving everything as it was.
#[allow(clippy::too_many_arguments)]
fn speculate(
    source: &mut impl LogitsSource,
    history: &[u32],
    feed: &mut Vec<u32>,
    state: &mut ConstraintState,
    k: usize,
    batch_forced: bool,
    stats: &mut GenerationStats,
    sample: &mut impl FnMut(&[f32]) -> u32,
) -> Result<(usize, Option<u32>)> {
    let k = source.draft_room(feed.len(), k);
    if k == 0 {
        return Ok((0, None));
    }
    let mut drafts = crate::ngram::propose(history, k);
    if let Some(e) = drafts.iter().position(|t| state.end_tokens().contains(t)) {
        drafts.truncate(e);
    }
    drafts.truncate(state.valid_prefix(&drafts));
    if drafts.is_empty() {
        return Ok((0, None));
    }
    // masks[i]: the mask of the position after drafts[..i] — one more than the drafts, or as
    // many where the last draft ends the model's say.
    let mut masks = vec![state.mask()?.clone()];
    for i in 0..drafts.len() {
        state.commit(drafts[i])?;
        // Where the grammar is done, or forces what comes next, the plain loop would not ask
        // the model: stop drafting there and let the loop commit the forced tokens, so the
        // output stays exactly what it would have been.
        if state.is_finished() || (batch_forced && !state.forced_tokens().is_empty()) {
            drafts.truncate(i + 1);
            break;
        }
        let t0 = Instant::now();
        masks.push(state.mask()?.clone());
        stats.mask_nanos.push(t0.elapsed().as_nanos() as u64);
    }
    let tokens: Vec<u32> = feed.iter().chain(&drafts).copied().collect();
    if !source
        .feed_for_verify(&tokens, drafts.len() + 1)
        .map_err(ConstrainError::Forward)?
    {
        state.rollback(drafts.len())?;
        return Ok((0, None));
    }
    stats.forward_passes += 1;
    stats.drafted += drafts.len();
    let mut kept = 0;
    let mut next = None;
    for (i, mask) in masks.iter().enumerate() {
        let logits = source
            .verify_logits(i, mask)
            .map_err(ConstrainError::Forward)?;
        let t = sample(&logits);
        if !mask.is_allowed(t) {
            return Err(disallowed(t));
        }
        if i < drafts.len() && t == drafts[i] {
            kept += 1;
        } else {
            next = Some(t);
            break;
        }
    }
    let rejected = drafts.len() - kept;
    if rejected > 0 {
        state.rollback(rejected)?;
        source.discard(rejected).map_err(ConstrainError::Forward)?;
    }
    stats.drafts_accepted += kept;
    feed.clear();
    feed.extend_from_slice(&drafts[..kept]);
    Ok((kept, next))
}
