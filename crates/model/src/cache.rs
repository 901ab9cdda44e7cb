//! The KV cache: every layer's rotated keys and values for the positions seen so far.

use crate::arch::{ArchSpec, LayerSpec};
use crate::error::{ModelError, Result};
use half::f16;
use smolt_kernels::{attention_forward, attention_forward_f16kv};

/// How a [`KvCache`] stores keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// As computed: the arithmetic of the f32 reference.
    #[default]
    F32,
    /// Half the memory (as llama.cpp keeps its cache by default): each key and value is
    /// rounded to f16 when written (saturating at ±65504 rather than becoming infinite) and
    /// widened when attention reads it. f16 over bf16: 10 mantissa bits against 7, and the
    /// values (rotated, normed projections) sit far inside f16's range.
    F16,
}

/// One layer's keys or values, `(len, kv_dim)` row-major.
#[derive(Clone, Debug)]
enum Rows {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Rows {
    fn new(ty: KvType) -> Rows {
        match ty {
            KvType::F32 => Rows::F32(Vec::new()),
            KvType::F16 => Rows::F16(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Rows::F32(r) => r.len(),
            Rows::F16(r) => r.len(),
        }
    }

    fn extend(&mut self, x: &[f32]) {
        match self {
            Rows::F32(r) => r.extend_from_slice(x),
            Rows::F16(r) => {
                let max = f16::MAX.to_f32();
                r.extend(x.iter().map(|&v| f16::from_f32(v.clamp(-max, max))));
            }
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Rows::F32(r) => r.truncate(n),
            Rows::F16(r) => r.truncate(n),
        }
    }

    /// A copy of the first `n` values.
    fn head(&self, n: usize) -> Rows {
        match self {
            Rows::F32(r) => Rows::F32(r[..n].to_vec()),
            Rows::F16(r) => Rows::F16(r[..n].to_vec()),
        }
    }
}

/// One layer of a [`KvCache`]: its keys and values.
#[derive(Clone, Debug)]
pub(crate) struct LayerKv {
    k: Rows,
    v: Rows,
}

impl LayerKv {
    /// `k`, `v` (T, kv_dim) appended (key j sits at position j), then `att` (T, q_dim) for the
    /// queries `q` at `positions`, attending over the stored rows (the new ones as stored
    /// too, so a prompt split into chunks sees the same keys as one pass).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_and_attend(
        &mut self,
        spec: &ArchSpec,
        layer: &LayerSpec,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        positions: &[usize],
        att: &mut [f32],
    ) {
        self.k.extend(k);
        self.v.extend(v);
        let (n_q, n_kv, d) = (spec.n_heads, spec.n_kv_heads, spec.head_dim);
        let (w, scale) = (layer.window, spec.attn_scale);
        match (&self.k, &self.v) {
            (Rows::F32(k), Rows::F32(v)) => {
                attention_forward(q, k, v, positions, n_q, n_kv, d, w, scale, att, None)
            }
            (Rows::F16(k), Rows::F16(v)) => {
                attention_forward_f16kv(q, k, v, positions, n_q, n_kv, d, w, scale, att, None)
            }
            _ => unreachable!("a layer's keys and values share one type (set in KvCache::new)"),
        }
    }
}

/// Keys and values of positions `0..len()` for every layer, row `j` holding position `j`
/// (`(len, n_kv_heads·head_dim)` per layer, stored as [`KvType`] says).
///
/// Sliding-window layers keep every row too: attention reads only the window, and keeping
/// rows makes [`KvCache::truncate`] (rolling back rejected speculative tokens) trivial. At
/// Gemma 3 270M's 1 KV head × 256 this is 36 KB per position for all 18 layers in f32, 18 KB
/// in f16.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
    kv_dim: usize,
    ty: KvType,
}

impl KvCache {
    /// An empty f32 cache for a model with this spec (`Model::new_cache` uses the model's
    /// `kv_type`).
    pub fn new(spec: &ArchSpec) -> KvCache {
        KvCache::with_type(spec, KvType::F32)
    }

    /// An empty cache storing its rows as `ty`.
    pub fn with_type(spec: &ArchSpec, ty: KvType) -> KvCache {
        let layer = LayerKv {
            k: Rows::new(ty),
            v: Rows::new(ty),
        };
        KvCache {
            layers: vec![layer; spec.n_layers()],
            len: 0,
            kv_dim: spec.kv_dim(),
            ty,
        }
    }

    /// How the rows are stored.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Positions held: the next token fed goes at this position.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the stored rows take (not counting spare capacity).
    pub fn bytes(&self) -> usize {
        let per = match self.ty {
            KvType::F32 => 4,
            KvType::F16 => 2,
        };
        2 * self.layers.len() * self.len * self.kv_dim * per
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
        for l in &mut self.layers {
            l.k.truncate(n * self.kv_dim);
            l.v.truncate(n * self.kv_dim);
        }
        self.len = n;
    }

    /// A new cache holding a copy of positions `0..n` (all of them if `n >= len()`), without
    /// copying the rest: a shared prompt prefix handed to another sequence.
    pub fn prefix(&self, n: usize) -> KvCache {
        let n = n.min(self.len);
        let m = n * self.kv_dim;
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv {
                    k: l.k.head(m),
                    v: l.v.head(m),
                })
                .collect(),
            len: n,
            kv_dim: self.kv_dim,
            ty: self.ty,
        }
    }

    /// Layer `il`'s rows, for the forward pass to append to and attend over.
    pub(crate) fn layer_mut(&mut self, il: usize) -> &mut LayerKv {
        &mut self.layers[il]
    }

    /// Records that the forward pass appended `t` rows to every layer.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
        debug_assert!(self
            .layers
            .iter()
            .all(|l| l.k.len() == self.len * self.kv_dim && l.v.len() == self.len * self.kv_dim));
    }

    pub(crate) fn check_fits(&self, spec: &ArchSpec, more: usize) -> Result<()> {
        if self.layers.len() != spec.n_layers() || self.kv_dim != spec.kv_dim() {
            return Err(ModelError::CacheMismatch(format!(
                "cache has {} layers × {}, model {} × {}",
                self.layers.len(),
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
