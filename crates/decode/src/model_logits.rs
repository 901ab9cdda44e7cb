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
    /// Whole-head logits of kept positions `ahead_from ..` computed together (one read of
    /// the head for several positions), unmasked.
    ahead: Vec<Vec<f32>>,
    ahead_from: usize,
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
            ahead: Vec::new(),
            ahead_from: 0,
        }
    }
}

/// Score only the allowed head rows when at most this share of the vocabulary is allowed.
/// Gathering a row costs about as much as scoring it, so below the break-even point of one
/// half the subset always wins; one eighth leaves margin for the gather's scattered reads.
pub const SUBSET_HEAD_FRACTION: usize = 8;

/// Kept positions whose whole head one verification step computes together: as many as
/// keep each row on the bits of its one-row product. The head's one-row kernels read each
/// weight row once for all of them: on a 2-core Xeon the 262k-row Q8_0 head took 9.1 / 9.5 /
/// 10.5 ms for 1 / 2 / 3 rows (`headbench --rows`), so when drafts hold — most do on
/// structured output — the next positions cost a fraction of theirs.
pub const HEAD_AHEAD: usize = Model::SAME_BITS_BELOW - 1;

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
        self.ahead.clear();
        self.ahead_from = 0;
        Ok(true)
    }

    /// One position's head, as `forward_masked` would compute it for that hidden state (the
    /// same bits): only the allowed rows when few are allowed, else the whole head for this
    /// position and up to [`HEAD_AHEAD`]` - 1` after it at once, kept for the next calls.
    fn verify_logits(&mut self, i: usize, allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        let d = self.model.spec.d_model;
        let n = self.pending.len() / d;
        anyhow::ensure!(i < n, "no kept position {i}");
        if let Some(logits) = i
            .checked_sub(self.ahead_from)
            .and_then(|k| self.ahead.get_mut(k))
        {
            let mut logits = std::mem::take(logits);
            anyhow::ensure!(!logits.is_empty(), "kept position {i} was verified already");
            allowed.apply(&mut logits);
            return Ok(logits);
        }
        let vocab = self.model.spec.vocab_size;
        let h = &self.pending[i * d..(i + 1) * d];
        if let Some(logits) = allowed_rows_only(self.model, self.subset_head, h, allowed) {
            return Ok(logits);
        }
        let end = (i + HEAD_AHEAD).min(n);
        let all = self.model.lm_head(&self.pending[i * d..end * d]);
        self.ahead = all.chunks_exact(vocab).map(<[f32]>::to_vec).collect();
        self.ahead_from = i;
        let mut logits = std::mem::take(&mut self.ahead[0]);
        allowed.apply(&mut logits);
        Ok(logits)
    }

    /// A pass below [`Model::SAME_BITS_BELOW`] rows computes each row as a one-token pass
    /// would, so drafts go only where the pass stays below it: the drafted answer is then the
    /// plain one, bit for bit. (Above it the kernels' row groupings depend on the row count,
    /// so the `fed` rows would not keep the plain pass's bits either.)
    fn draft_room(&self, fed: usize, k: usize) -> usize {
        k.min(Model::SAME_BITS_BELOW.saturating_sub(fed + 1))
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
    allowed_rows_only(model, subset, hidden, allowed).unwrap_or_else(|| {
        let mut logits = model.lm_head(hidden);
        allowed.apply(&mut logits);
        logits
    })
}

/// The head on one final hidden state scoring only the allowed rows, where few are allowed
/// and `subset` permits (`None` otherwise: the caller scores the whole head).
fn allowed_rows_only(
    model: &Model,
    subset: bool,
    hidden: &[f32],
    allowed: &TokenMask,
) -> Option<Vec<f32>> {
    let vocab = model.spec.vocab_size;
    let ids = subset.then(|| subset_rows(allowed, vocab)).flatten()?;
    Some(scatter_rows(&ids, &model.lm_head_rows(hidden, &ids), vocab))
}
