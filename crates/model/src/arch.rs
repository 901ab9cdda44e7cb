//! The architecture as numbers: everything the forward pass needs to know about a model family,
//! read once from GGUF metadata so the decoder block itself has no per-family branches beyond
//! the flags here.

use crate::error::{ModelError, Result};
use crate::linear::read_vector;
use smolt_gguf::{Gguf, Value};
use smolt_kernels::{
    geglu_backward, geglu_forward, swiglu_backward, swiglu_forward, Float, Rope, RopeStyle,
};

/// Model families smolt can run. Adding one means teaching [`ArchSpec::from_gguf`] its keys and
/// defaults; the decoder block is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Gemma3,
    /// Qwen 2 and 2.5: SwiGLU, biases on q/k/v, no q/k norm, pre-norms only.
    Qwen2,
    /// Qwen 3 (dense): Qwen 2 without the biases, with per-head q/k RMSNorms and a head size
    /// of its own (`attention.key_length`).
    Qwen3,
    /// Llama 3.x, SmolLM2 and the other `llama` files: SwiGLU, pre-norms only, interleaved-pair
    /// RoPE (the converter permutes q/k rows for it), Llama 3.1's scaling as `rope_freqs.weight`.
    Llama,
}

impl Arch {
    /// The `general.architecture` string, which also prefixes the family's metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Llama => "llama",
        }
    }
}

/// The gated MLP's nonlinearity: `down(act(gate·x) ⊙ up·x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// PyTorch's `gelu(approximate="tanh")`: Gemma.
    GeluTanh,
    /// `silu(x) = x·σ(x)` (SwiGLU): Qwen, Llama.
    Silu,
}

impl Activation {
    /// `g = act(gate) ⊙ up`, all `(T, f)`.
    pub fn forward<F: Float>(self, gate: &[F], up: &[F], g: &mut [F]) {
        match self {
            Activation::GeluTanh => geglu_forward(gate, up, g),
            Activation::Silu => swiglu_forward(gate, up, g),
        }
    }

    /// Backward of [`Activation::forward`]: `dgate`, `dup` ACCUMULATE `dg`'s gradient.
    pub fn backward<F: Float>(
        self,
        dg: &[F],
        gate: &[F],
        up: &[F],
        dgate: &mut [F],
        dup: &mut [F],
    ) {
        match self {
            Activation::GeluTanh => geglu_backward(dg, gate, up, dgate, dup),
            Activation::Silu => swiglu_backward(dg, gate, up, dgate, dup),
        }
    }
}

/// What differs between layers: Gemma 3 interleaves sliding-window layers (local RoPE base)
/// with global ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerSpec {
    /// `Some(w)`: a query at position `p` sees keys `p−w+1..=p`; `None`: all keys `<= p`.
    pub window: Option<usize>,
    /// RoPE base (theta) for this layer's queries and keys.
    pub rope_base: f64,
}

/// Shapes and flags of a decoder-only transformer, as read from GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchSpec {
    pub arch: Arch,
    /// Residual stream width (`embedding_length`).
    pub d_model: usize,
    /// Hidden width of the gated MLP (`feed_forward_length`).
    pub d_ff: usize,
    pub n_heads: usize,
    /// KV heads; query head `h` reads KV head `h / (n_heads / n_kv_heads)`.
    pub n_kv_heads: usize,
    /// Per-head width of queries, keys and values (`attention.key_length`).
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Longest sequence the model was trained for; a KV cache refuses to grow past it.
    pub context_length: usize,
    pub rms_eps: f32,
    /// Scores are `scale · q·k`: Gemma 3 uses `1/sqrt(head_dim)`.
    pub attn_scale: f32,
    /// Embeddings are multiplied by this on input (Gemma: `sqrt(d_model)`).
    pub embed_scale: Option<f32>,
    /// RMSNorm over each query and key head before RoPE (Gemma 3, Qwen 3).
    pub qk_norm: bool,
    /// RMSNorm on the attention and MLP outputs before they join the residual (Gemma 2/3).
    pub post_norms: bool,
    /// Biases on the query, key and value projections (Qwen 2).
    pub qkv_bias: bool,
    pub activation: Activation,
    /// Which elements of a head RoPE pairs: NEOX `(i, i + hd/2)` (llama.cpp's rope type for
    /// Gemma and Qwen), or interleaved `(2i, 2i + 1)` (its NORM type, for `llama`).
    pub rope_style: RopeStyle,
    /// `(hd/2)` divisors of the RoPE frequencies, from the `rope_freqs.weight` tensor (how
    /// llama.cpp's converter writes Llama 3.1's RoPE scaling); `None`: all 1.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// One entry per layer, `len() == n_layers`.
    pub layers: Vec<LayerSpec>,
}

/// llama.cpp hard-codes these for Gemma 3 because the converter writes no key for them.
const GEMMA3_LOCAL_ROPE_BASE: f64 = 10_000.0;
const GEMMA3_SWA_PERIOD: usize = 6;

impl ArchSpec {
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Width of the concatenated query heads, `n_heads · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the concatenated KV heads, `n_kv_heads · head_dim`: one cache row.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Layer `il`'s RoPE: the family's layout and divisors with the layer's base.
    pub fn rope(&self, il: usize) -> Rope<'_> {
        Rope {
            style: self.rope_style,
            base: self.layers[il].rope_base,
            freq_factors: self.rope_freq_factors.as_deref(),
        }
    }

    /// Reads the spec from `general.architecture` and that family's keys; an unknown family is
    /// an error rather than a guess, because a wrong guess gives plausible-looking garbage.
    pub fn from_gguf(g: &Gguf) -> Result<ArchSpec> {
        let arch = g.get_str("general.architecture")?;
        match arch {
            "gemma3" => Self::gemma3(g),
            "qwen2" => Self::qwen2(g),
            "qwen3" => Self::qwen3(g),
            "llama" => Self::llama(g),
            other => Err(ModelError::UnsupportedArch(other.to_string())),
        }
    }

    /// The shapes every family writes under `{arch}.…`, checked; the family fills in its
    /// switches and layers.
    fn common(g: &Gguf, arch: Arch) -> Result<ArchSpec> {
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");
        let d_model = get_usize(g, &key("embedding_length"))?;
        let n_heads = get_usize(g, &key("attention.head_count"))?;
        let n_kv_heads = get_usize(g, &key("attention.head_count_kv"))?;
        // Written by Gemma's converter; Llama-style files leave it to d_model / n_heads.
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => get_usize(g, &key("attention.key_length"))?,
            None if d_model % n_heads == 0 => d_model / n_heads,
            None => {
                return Err(bad(
                    &key("attention.head_count"),
                    n_heads,
                    &format!("must divide embedding_length ({d_model})"),
                ))
            }
        };
        let value_dim = match g.get(&key("attention.value_length")) {
            Some(_) => get_usize(g, &key("attention.value_length"))?,
            None => head_dim,
        };
        if value_dim != head_dim {
            return Err(bad(
                &key("attention.value_length"),
                value_dim,
                &format!("must equal attention.key_length ({head_dim})"),
            ));
        }
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(
                &key("attention.head_count_kv"),
                n_kv_heads,
                &format!("must divide attention.head_count ({n_heads})"),
            ));
        }
        if head_dim % 2 != 0 {
            return Err(bad(
                &key("attention.key_length"),
                head_dim,
                "RoPE needs an even head size",
            ));
        }
        // Scaled RoPE (long-context variants) would need scaled frequencies; refuse rather than
        // silently run the unscaled rotation.
        if let Some(v) = g.get(&key("rope.scaling.factor")) {
            if v.as_f64().is_some_and(|f| f != 1.0) {
                return Err(bad(
                    &key("rope.scaling.factor"),
                    v,
                    "RoPE scaling is not supported yet",
                ));
            }
        }
        // Partial rotary embeddings (only the first `rope.dimension_count` elements of a head
        // rotated) are another rotation; refuse rather than rotate the whole head.
        if g.get(&key("rope.dimension_count")).is_some() {
            let n_rot = get_usize(g, &key("rope.dimension_count"))?;
            if n_rot != head_dim {
                return Err(bad(
                    &key("rope.dimension_count"),
                    n_rot,
                    &format!("partial RoPE (head size {head_dim}) is not supported yet"),
                ));
            }
        }
        let rope_base = g.get_f64(&key("rope.freq_base"))?;
        let n_layers = get_usize(g, &key("block_count"))?;
        Ok(ArchSpec {
            arch,
            d_model,
            d_ff: get_usize(g, &key("feed_forward_length"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size: vocab_size(g, a)?,
            context_length: get_usize(g, &key("context_length"))?,
            rms_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            embed_scale: None,
            qk_norm: false,
            post_norms: false,
            qkv_bias: false,
            activation: Activation::Silu,
            rope_style: RopeStyle::Neox,
            rope_freq_factors: None,
            layers: vec![
                LayerSpec {
                    window: None,
                    rope_base,
                };
                n_layers
            ],
        })
    }

    fn gemma3(g: &Gguf) -> Result<ArchSpec> {
        let mut spec = Self::common(g, Arch::Gemma3)?;
        let key = |k: &str| format!("gemma3.{k}");
        let global_base = g.get_f64(&key("rope.freq_base"))?;
        let local_base = match g.get(&key("rope.freq_base_swa")) {
            Some(_) => g.get_f64(&key("rope.freq_base_swa"))?,
            None => GEMMA3_LOCAL_ROPE_BASE,
        };
        let window = get_usize(g, &key("attention.sliding_window"))?;
        let n_layers = spec.n_layers();
        if window == 0 {
            return Err(bad(
                &key("attention.sliding_window"),
                0,
                "a window must hold at least one key",
            ));
        }
        let sliding = sliding_layers(g, &key("attention.sliding_window_pattern"), n_layers)?;
        let layers = sliding
            .into_iter()
            .map(|is_sliding| {
                if is_sliding {
                    LayerSpec {
                        window: Some(window),
                        rope_base: local_base,
                    }
                } else {
                    LayerSpec {
                        window: None,
                        rope_base: global_base,
                    }
                }
            })
            .collect();

        spec.layers = layers;
        spec.embed_scale = Some((spec.d_model as f32).sqrt());
        spec.qk_norm = true;
        spec.post_norms = true;
        spec.activation = Activation::GeluTanh;
        Ok(spec)
    }

    /// Qwen 2 / 2.5: the common shapes with SwiGLU, q/k/v biases and full attention in every
    /// layer (the GGUF of a model that slides a window says so, and is refused until then).
    fn qwen2(g: &Gguf) -> Result<ArchSpec> {
        let mut spec = Self::common(g, Arch::Qwen2)?;
        refuse_sliding_window(g, "qwen2")?;
        spec.qkv_bias = true;
        Ok(spec)
    }

    /// Qwen 3 (dense): per-head q/k RMSNorms before RoPE, no biases, NEOX RoPE; the head size
    /// is `attention.key_length` (it need not be `embedding_length / head_count`).
    fn qwen3(g: &Gguf) -> Result<ArchSpec> {
        let mut spec = Self::common(g, Arch::Qwen3)?;
        refuse_sliding_window(g, "qwen3")?;
        spec.qk_norm = true;
        Ok(spec)
    }

    /// `llama` (Llama 2/3.x, SmolLM2, …): the common shapes with interleaved-pair RoPE, as
    /// llama.cpp runs it (rope type NORM; its converter permutes the q/k rows so that this equals
    /// HF's `rotate_half`). Llama 3.1's RoPE scaling is the `rope_freqs.weight` tensor, one
    /// divisor per frequency. q/k/v biases where the file has them; mixture-of-experts and
    /// sliding-window files are refused.
    fn llama(g: &Gguf) -> Result<ArchSpec> {
        let mut spec = Self::common(g, Arch::Llama)?;
        refuse_sliding_window(g, "llama")?;
        if let Some(v) = g.get("llama.expert_count") {
            if v.as_u64().is_some_and(|n| n > 0) {
                return Err(bad(
                    "llama.expert_count",
                    v,
                    "mixture-of-experts models are not supported yet",
                ));
            }
        }
        spec.rope_style = RopeStyle::Interleaved;
        if let Some(info) = g.tensor_info("rope_freqs.weight") {
            let half = spec.head_dim / 2;
            if info.dims != [half as u64] {
                return Err(ModelError::Shape {
                    name: info.name.clone(),
                    expected: vec![half as u64],
                    found: info.dims.clone(),
                });
            }
            let factors = read_vector(g, info)?;
            if let Some(f) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                return Err(bad(
                    "rope_freqs.weight",
                    f,
                    "RoPE frequency divisors must be positive",
                ));
            }
            spec.rope_freq_factors = Some(factors);
        }
        if g.tensor_info("blk.0.attn_output.bias").is_some() {
            return Err(bad(
                "blk.0.attn_output.bias",
                "present",
                "a bias on the attention output is not supported yet",
            ));
        }
        spec.qkv_bias = g.tensor_info("blk.0.attn_q.bias").is_some();
        Ok(spec)
    }
}

/// Families whose every layer attends to the whole prefix: a GGUF that names a window is a
/// model smolt would run wrongly, so it is refused.
fn refuse_sliding_window(g: &Gguf, arch: &str) -> Result<()> {
    let key = format!("{arch}.attention.sliding_window");
    match g.get(&key) {
        Some(v) => Err(bad(
            &key,
            v,
            &format!("sliding-window {arch} models are not supported yet"),
        )),
        None => Ok(()),
    }
}

fn bad(key: &str, value: impl std::fmt::Display, reason: &str) -> ModelError {
    ModelError::BadMetadata {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn get_usize(g: &Gguf, key: &str) -> Result<usize> {
    let v = g.get_u64(key)?;
    if v == 0 {
        return Err(bad(key, v, "must be positive"));
    }
    usize::try_from(v).map_err(|_| bad(key, v, "does not fit in usize"))
}

/// `{arch}.vocab_size` if written, else the tokenizer's vocabulary; the embedding's shape is
/// then checked against it, so a disagreement is reported rather than papered over.
fn vocab_size(g: &Gguf, arch: &str) -> Result<usize> {
    let key = format!("{arch}.vocab_size");
    if g.get(&key).is_some() {
        return get_usize(g, &key);
    }
    if let Some(Value::Array(_, tokens)) = g.get("tokenizer.ggml.tokens") {
        return Ok(tokens.len());
    }
    match g.tensor_info("token_embd.weight") {
        Some(t) if t.dims.len() == 2 => Ok(t.dims[1] as usize),
        _ => Err(ModelError::MissingTensor("token_embd.weight".into())),
    }
}

/// Which layers use the sliding window. The key may be a period `n` (layer `il` is global iff
/// `(il+1) % n == 0`, llama.cpp's `set_swa_pattern`) or a per-layer array of booleans (true =
/// sliding); absent, Gemma 3's period of 6 applies.
fn sliding_layers(g: &Gguf, key: &str, n_layers: usize) -> Result<Vec<bool>> {
    match g.get(key) {
        None => Ok(period_pattern(GEMMA3_SWA_PERIOD, n_layers)),
        Some(Value::Array(_, items)) => {
            if items.len() != n_layers {
                return Err(bad(
                    key,
                    format!("an array of {}", items.len()),
                    &format!("needs one entry per layer ({n_layers})"),
                ));
            }
            items
                .iter()
                .map(|v| match v {
                    Value::Bool(b) => Ok(*b),
                    other => other
                        .as_u64()
                        .map(|x| x != 0)
                        .ok_or_else(|| bad(key, other, "entries must be booleans")),
                })
                .collect()
        }
        Some(v) => match v.as_u64() {
            Some(p) if p > 0 => Ok(period_pattern(p as usize, n_layers)),
            _ => Err(bad(
                key,
                v,
                "must be a positive period or a per-layer array",
            )),
        },
    }
}

fn period_pattern(period: usize, n_layers: usize) -> Vec<bool> {
    (0..n_layers).map(|il| (il + 1) % period != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_pattern_makes_every_sixth_layer_global() {
        let p = period_pattern(6, 18);
        let global: Vec<usize> = (0..18).filter(|&i| !p[i]).collect();
        assert_eq!(global, vec![5, 11, 17]);
    }
}
