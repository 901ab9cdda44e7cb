//! Many sequences in one forward pass, each with its own KV cache and its own adapter (or
//! none): every projection reads its base weights once for all the rows of the step, then each
//! sequence's rows get their adapter's low-rank term (per-row LoRA, as punica and S-LoRA do
//! it); attention runs per sequence over its own cache. The server's batch engine runs its
//! decoding sequences (one token each) and new prompts (a chunk each) together this way.

use crate::arch::LayerSpec;
use crate::block::{block_forward, BlockPass};
use crate::cache::{KvCache, LayerKv};
use crate::error::{ModelError, Result};
use crate::model::{Block, Model};
use crate::proj::Proj;
use rayon::prelude::*;
use smolt_kernels::rms_norm_forward;

/// One sequence of a batched step.
pub struct BatchSeq<'a> {
    /// Tokens to append after what `cache` holds (one to decode, a chunk of a prompt, or none).
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// A model over the same base whose projections carry this sequence's adapter (as
    /// `smolt_lora::attach_adapter` leaves it); `None`: the base alone.
    pub adapter: Option<&'a Model>,
}

/// The batched pass through one block: `spans[i]` are sequence `i`'s rows of the step.
struct BatchPass<'a, 'c> {
    block: &'a Block,
    il: usize,
    spans: &'a [(usize, usize)],
    positions: &'a [usize],
    adapters: &'a [Option<&'a Model>],
    caches: Vec<&'c mut LayerKv>,
    model: &'a Model,
}

impl BlockPass<f32> for BatchPass<'_, '_> {
    fn project(&mut self, p: Proj, x: &[f32], t: usize, y: &mut [f32]) {
        let lin = self.block.proj(p);
        lin.forward(x, t, y);
        let (inp, out) = (lin.in_features, lin.out_features);
        for (&(start, n), adapter) in self.spans.iter().zip(self.adapters) {
            let delta = adapter.and_then(|m| m.blocks[self.il].proj(p).lora());
            if let (Some(d), true) = (delta, n > 0) {
                d.add_to(
                    &x[start * inp..(start + n) * inp],
                    n,
                    &mut y[start * out..(start + n) * out],
                );
            }
        }
    }

    fn attend(
        &mut self,
        layer: &LayerSpec,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        _positions: &[usize],
        att: &mut [f32],
    ) {
        let spec = &self.model.spec;
        let (qd, kvd) = (spec.q_dim(), spec.kv_dim());
        // Each sequence attends over its own cache: they run side by side on the pool (one
        // decode row's attention is too small to split, and sixteen of them in a row left the
        // second thread idle for a tenth of a served step).
        let mut outs = Vec::with_capacity(self.spans.len());
        let mut rest = att;
        for &(_, n) in self.spans {
            let (this, tail) = rest.split_at_mut(n * qd);
            outs.push(this);
            rest = tail;
        }
        self.spans
            .par_iter()
            .zip(self.caches.par_iter_mut())
            .zip(outs.into_par_iter())
            .filter(|((&(_, n), _), _)| n > 0)
            .for_each(|((&(start, n), kv), out)| {
                let rows = |w: usize| start * w..(start + n) * w;
                kv.append_and_attend(
                    spec,
                    layer,
                    &q[rows(qd)],
                    &k[rows(kvd)],
                    &v[rows(kvd)],
                    &self.positions[start..start + n],
                    out,
                );
            });
    }
}

impl Model {
    /// Runs every sequence's tokens in one pass (appending them to its cache) and returns the
    /// final-normed hidden state of each sequence's last new token, `(seqs.len(), d_model)`
    /// (zeros for a sequence given no tokens); [`Model::lm_head`] or
    /// [`Model::lm_head_rows`] turns them into logits.
    ///
    /// `self` must be the plain base (an adapter attached to it would apply to every row).
    /// Rows are grouped into the kernels' tiles differently than in a one-sequence pass, so
    /// results agree with [`Model::forward_hidden`] up to rounding, not bit for bit.
    pub fn forward_batch(&self, seqs: &mut [BatchSeq]) -> Result<Vec<f32>> {
        let spec = &self.spec;
        let d = spec.d_model;
        let mut spans = Vec::with_capacity(seqs.len());
        let mut positions = Vec::new();
        let mut tokens = Vec::new();
        for s in seqs.iter() {
            s.cache.check_fits(spec, s.tokens.len())?;
            if let Some(m) = s.adapter {
                if m.spec != *spec {
                    return Err(ModelError::Adapter(
                        "a batched sequence's adapter model is not over this base".into(),
                    ));
                }
            }
            spans.push((tokens.len(), s.tokens.len()));
            positions.extend(s.cache.len()..s.cache.len() + s.tokens.len());
            tokens.extend_from_slice(s.tokens);
        }
        let adapters: Vec<Option<&Model>> = seqs.iter().map(|s| s.adapter).collect();
        let mut x = self.embed(&tokens)?;
        if tokens.is_empty() {
            return Ok(vec![0f32; seqs.len() * d]);
        }
        for (il, block) in self.blocks.iter().enumerate() {
            let mut pass = BatchPass {
                block,
                il,
                spans: &spans,
                positions: &positions,
                adapters: &adapters,
                caches: seqs.iter_mut().map(|s| s.cache.layer_mut(il)).collect(),
                model: self,
            };
            x = block_forward(spec, il, &block.vectors(), x, &positions, &mut pass, None);
        }
        for s in seqs.iter_mut() {
            s.cache.advance(s.tokens.len());
        }

        // out (n, d) = rmsnorm(x[last row of each sequence]) · output_norm
        let mut out = vec![0f32; seqs.len() * d];
        for (&(start, n), o) in spans.iter().zip(out.chunks_mut(d)) {
            if n > 0 {
                let last = &x[(start + n - 1) * d..(start + n) * d];
                rms_norm_forward(last, &self.output_norm, spec.rms_eps, d, o, None);
            }
        }
        Ok(out)
    }
}
