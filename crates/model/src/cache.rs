//! The KV cache: every layer's rotated keys and values for the positions seen so far.

use crate::arch::ArchSpec;
use crate::error::{ModelError, Result};

/// Keys and values of positions `0..len()` for every layer, row `j` holding position `j`
/// (`(len, n_kv_heads·head_dim)` per layer, f32).
///
/// Sliding-window layers keep every row too: attention reads only the window, and keeping
/// rows makes [`KvCache::truncate`] (rolling back rejected speculative tokens) trivial. At
/// Gemma 3 270M's 1 KV head × 256 this is 36 KB per position for all 18 layers.
#[derive(Clone, Debug)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    kv_dim: usize,
}

impl KvCache {
    /// An empty cache for a model with this spec (see also `Model::new_cache`).
    pub fn new(spec: &ArchSpec) -> KvCache {
        let n = spec.n_layers();
        KvCache {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            len: 0,
            kv_dim: spec.kv_dim(),
        }
    }

    /// Positions held: the next token fed goes at this position.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position, keeping the allocations for the next sequence.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps positions `0..n` only (no-op if `n >= len()`): drop rejected draft tokens, or
    /// reuse a shared prompt prefix.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        for c in self.k.iter_mut().chain(self.v.iter_mut()) {
            c.truncate(n * self.kv_dim);
        }
        self.len = n;
    }

    /// Layer `il`'s key and value rows, for the forward pass to append to.
    pub(crate) fn layer_mut(&mut self, il: usize) -> (&mut Vec<f32>, &mut Vec<f32>) {
        (&mut self.k[il], &mut self.v[il])
    }

    /// Layer `il`'s keys and values `(len, kv_dim)`.
    pub fn layer(&self, il: usize) -> (&[f32], &[f32]) {
        (&self.k[il], &self.v[il])
    }

    /// Records that the forward pass appended `t` rows to every layer.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
        debug_assert!(self
            .k
            .iter()
            .chain(&self.v)
            .all(|c| c.len() == self.len * self.kv_dim));
    }

    pub(crate) fn check_fits(&self, spec: &ArchSpec, more: usize) -> Result<()> {
        if self.k.len() != spec.n_layers() || self.kv_dim != spec.kv_dim() {
            return Err(ModelError::CacheMismatch(format!(
                "cache has {} layers × {}, model {} × {}",
                self.k.len(),
                self.kv_dim,
                spec.n_layers(),
                spec.kv_dim()
            )));
        }
        if self.len + more > spec.context_length {
            return Err(ModelError::ContextFull {
                len: self.len,
                more,
                max: spec.context_length,
            });
        }
        Ok(())
    }
}
