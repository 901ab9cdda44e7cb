//! The model as a logit source for constrained decoding ([`crate::generate_constrained`]
//! drives the loop: masks, forced-token batching, truncation detection).

use smolt_constrain::TokenMask;
use smolt_model::{KvCache, Logits, Model};

use crate::constrained::LogitsSource;

/// A model and its KV cache: each `forward` feeds the new tokens and returns the logits of
/// the last one.
pub struct ModelLogits<'a> {
    pub model: &'a Model,
    pub cache: KvCache,
    /// Score only the allowed head rows when few are allowed (on by default; off only to
    /// measure what it saves — the values are the same either way).
    pub subset_head: bool,
    /// Final hidden states kept by `feed_for_verify`, `(n, d_model)`.
    pending: Vec<f32>,
}

impl<'a> ModelLogits<'a> {
    /// A fresh cache for one sequence.
    pub fn new(model: &'a Model) -> Self {
        Self::with_cache(model, model.new_cache())
    }

    /// Continuing from `cache` (it holds a prefix already run through the model).
    pub fn with_cache(model: &'a Model, cache: KvCache) -> Self {
        ModelLogits {
            model,
            cache,
            subset_head: true,
            pending: Vec::new(),
        }
    }
}

/// Score only the allowed head rows when at most this share of the vocabulary is allowed.
/// Gathering a row costs about as much as scoring it, so below the break-even point of one
/// half the subset always wins; one eighth leaves margin for the gather's scattered reads.
pub const SUBSET_HEAD_FRACTION: usize = 8;

impl LogitsSource for ModelLogits<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        Ok(self.model.forward(tokens, &mut self.cache, Logits::Last)?)
    }

    /// Inside a number, a date pattern or an enum the grammar allows a handful of tokens, and
    /// the 262k-row tied head is most of a decode step's memory traffic: score only those
    /// rows then (bit-identical values, see `Model::lm_head_rows`).
    fn forward_masked(&mut self, tokens: &[u32], allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        if tokens.is_empty() {
            let mut logits = self.forward(tokens)?;
            allowed.apply(&mut logits);
            return Ok(logits);
        }
        let hidden = self.model.forward_hidden(tokens, &mut self.cache)?;
        let last = &hidden[hidden.len() - self.model.spec.d_model..];
        Ok(head_masked(self.model, self.subset_head, last, allowed))
    }

    /// Speculative verification: one body pass over `tokens`, the final hidden states of the
    /// last `n` kept; the head then runs per position, only as far as the drafts hold.
    fn feed_for_verify(&mut self, tokens: &[u32], n: usize) -> anyhow::Result<bool> {
        anyhow::ensure!(
            n <= tokens.len(),
            "more positions to verify than tokens fed"
        );
        let d = self.model.spec.d_model;
        let hidden = self.model.forward_hidden(tokens, &mut self.cache)?;
        self.pending = hidden[hidden.len() - n * d..].to_vec();
        Ok(true)
    }

    /// One position's head, as `forward_masked` would compute it for that hidden state:
    /// only the allowed rows when few are allowed.
    fn verify_logits(&mut self, i: usize, allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        let d = self.model.spec.d_model;
        anyhow::ensure!((i + 1) * d <= self.pending.len(), "no kept position {i}");
        let h = &self.pending[i * d..(i + 1) * d];
        Ok(head_masked(self.model, self.subset_head, h, allowed))
    }

    fn discard(&mut self, n: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            n <= self.cache.len(),
            "discarding more tokens than were fed"
        );
        self.cache.truncate(self.cache.len() - n);
        Ok(())
    }
}

/// The head rows worth scoring alone under `allowed`: its allowed ids when they are at most
/// 1/[`SUBSET_HEAD_FRACTION`] of `vocab`, else `None` (score the whole head, then mask).
pub fn subset_rows(allowed: &TokenMask, vocab: usize) -> Option<Vec<u32>> {
    if allowed.num_allowed() * SUBSET_HEAD_FRACTION > vocab {
        return None;
    }
    Some(
        allowed
            .allowed()
            .into_iter()
            .filter(|&id| (id as usize) < vocab)
            .collect(),
    )
}

/// A full row of `vocab` logits from the values of rows `ids` alone: `-inf` everywhere else,
/// as the mask would leave them.
pub fn scatter_rows(ids: &[u32], values: &[f32], vocab: usize) -> Vec<f32> {
    let mut logits = vec![f32::NEG_INFINITY; vocab];
    for (&id, &v) in ids.iter().zip(values) {
        logits[id as usize] = v;
    }
    logits
}

/// The head on one final hidden state with `allowed` applied: only the allowed rows when few
/// are and `subset` permits, else the full head, then the mask.
fn head_masked(model: &Model, subset: bool, hidden: &[f32], allowed: &TokenMask) -> Vec<f32> {
    let vocab = model.spec.vocab_size;
    match subset.then(|| subset_rows(allowed, vocab)).flatten() {
        Some(ids) => scatter_rows(&ids, &model.lm_head_rows(hidden, &ids), vocab),
        None => {
            let mut logits = model.lm_head(hidden);
            allowed.apply(&mut logits);
            logits
        }
    }
}
