//! The model as a logit source for constrained decoding (smolt-constrain drives the loop:
//! masks, forced-token batching, truncation detection).

use smolt_model::{KvCache, Logits, Model};

/// A model and its KV cache: each `forward` feeds the new tokens and returns the logits of
/// the last one.
pub struct ModelLogits<'a> {
    pub model: &'a Model,
    pub cache: KvCache,
    /// Score only the allowed head rows when few are allowed (on by default; off only to
    /// measure what it saves — the values are the same either way).
    pub subset_head: bool,
}

impl<'a> ModelLogits<'a> {
    /// A fresh cache for one sequence.
    pub fn new(model: &'a Model) -> Self {
        ModelLogits {
            model,
            cache: model.new_cache(),
            subset_head: true,
        }
    }
}

/// Score only the allowed head rows when at most this share of the vocabulary is allowed.
/// Gathering a row costs about as much as scoring it, so below the break-even point of one
/// half the subset always wins; one eighth leaves margin for the gather's scattered reads.
const SUBSET_HEAD_FRACTION: usize = 8;

impl smolt_constrain::LogitsSource for ModelLogits<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        Ok(self.model.forward(tokens, &mut self.cache, Logits::Last)?)
    }

    /// Inside a number, a date pattern or an enum the grammar allows a handful of tokens, and
    /// the 262k-row tied head is most of a decode step's memory traffic: score only those
    /// rows then (bit-identical values, see `Model::lm_head_rows`).
    fn forward_masked(
        &mut self,
        tokens: &[u32],
        allowed: &smolt_constrain::TokenMask,
    ) -> anyhow::Result<Vec<f32>> {
        let vocab = self.model.spec.vocab_size;
        if !self.subset_head
            || tokens.is_empty()
            || allowed.num_allowed() * SUBSET_HEAD_FRACTION > vocab
        {
            let mut logits = self.forward(tokens)?;
            allowed.apply(&mut logits);
            return Ok(logits);
        }
        let hidden = self.model.forward_hidden(tokens, &mut self.cache)?;
        let last = &hidden[hidden.len() - self.model.spec.d_model..];
        let ids: Vec<u32> = allowed
            .allowed()
            .into_iter()
            .filter(|&id| (id as usize) < vocab)
            .collect();
        Ok(self.masked_rows(last, &ids))
    }

    /// Speculative verification: one pass over `tokens`, logits at the last `masks.len()`
    /// positions. The head runs on those positions only, and only on the allowed rows when
    /// all the masks together allow few.
    fn forward_verify(
        &mut self,
        tokens: &[u32],
        masks: &[smolt_constrain::TokenMask],
    ) -> anyhow::Result<Option<Vec<Vec<f32>>>> {
        let (vocab, d, m) = (
            self.model.spec.vocab_size,
            self.model.spec.d_model,
            masks.len(),
        );
        anyhow::ensure!(m <= tokens.len(), "more masks than tokens to verify");
        let hidden = self.model.forward_hidden(tokens, &mut self.cache)?;
        let rows = &hidden[hidden.len() - m * d..];
        let allowed: usize = masks.iter().map(|k| k.num_allowed()).sum();
        if self.subset_head && allowed * SUBSET_HEAD_FRACTION <= vocab {
            return Ok(Some(
                masks
                    .iter()
                    .zip(rows.chunks(d))
                    .map(|(k, h)| {
                        let ids: Vec<u32> = k
                            .allowed()
                            .into_iter()
                            .filter(|&id| (id as usize) < vocab)
                            .collect();
                        self.masked_rows(h, &ids)
                    })
                    .collect(),
            ));
        }
        let all = self.model.lm_head(rows);
        Ok(Some(
            all.chunks(vocab)
                .zip(masks)
                .map(|(l, k)| {
                    let mut l = l.to_vec();
                    k.apply(&mut l);
                    l
                })
                .collect(),
        ))
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

impl ModelLogits<'_> {
    /// Logits of `ids` only for one final hidden state, `-inf` everywhere else.
    fn masked_rows(&self, hidden: &[f32], ids: &[u32]) -> Vec<f32> {
        let values = self.model.lm_head_rows(hidden, ids);
        let mut logits = vec![f32::NEG_INFINITY; self.model.spec.vocab_size];
        for (&id, v) in ids.iter().zip(values) {
            logits[id as usize] = v;
        }
        logits
    }
}
