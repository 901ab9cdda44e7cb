//! The model as a logit source for constrained decoding (smolt-constrain drives the loop:
//! masks, forced-token batching, truncation detection).

use smolt_model::{KvCache, Logits, Model};

/// A model and its KV cache: each `forward` feeds the new tokens and returns the logits of
/// the last one.
pub struct ModelLogits<'a> {
    pub model: &'a Model,
    pub cache: KvCache,
}

impl<'a> ModelLogits<'a> {
    /// A fresh cache for one sequence.
    pub fn new(model: &'a Model) -> Self {
        ModelLogits {
            model,
            cache: model.new_cache(),
        }
    }
}

impl smolt_constrain::LogitsSource for ModelLogits<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        Ok(self.model.forward(tokens, &mut self.cache, Logits::Last)?)
    }
}
