//! The decoder block, written once for every family and every pass.
//!
//! A family is a set of switches in [`ArchSpec`] (q/k/v biases, q/k norms, post-norms, the
//! MLP's activation, per-layer window and RoPE base, RoPE layout and frequency divisors); a pass is a [`BlockPass`]: how it
//! multiplies by a projection (quantized inference with an attached adapter, or the training
//! pass's frozen base plus a trainable adapter) and where its keys and values live (a KV cache,
//! or the training sequence itself). The training pass also hands a [`BlockRecord`] to keep
//! what its backward needs; inference hands none and nothing is kept.
//!
//! Shapes: `T` tokens, `d` model width, `f` MLP width, `nh`/`nkv` query/KV heads of `hd`.

use crate::arch::{ArchSpec, LayerSpec};
use crate::proj::Proj;
use smolt_kernels::{rms_norm_forward, rope_forward, Float};

/// How one pass runs the parts of a block that differ between passes.
pub trait BlockPass<F: Float> {
    /// `y (T, out) = x (T, in) · W_pᵀ`, plus whatever this pass adds to the projection (an
    /// adapter's `s·B·A·x`). `y` is overwritten.
    fn project(&mut self, p: Proj, x: &[F], t: usize, y: &mut [F]);

    /// `att (T, nh·hd)`: causal attention (windowed where `layer` says so, grouped KV heads,
    /// scores scaled by `spec.attn_scale`) of the queries `q (T, nh·hd)` at `positions` over
    /// the keys and values this pass holds, after taking in the new ones `k, v (T, nkv·hd)`,
    /// rotated, at the same positions.
    fn attend(
        &mut self,
        layer: &LayerSpec,
        q: &[F],
        k: &[F],
        v: &[F],
        positions: &[usize],
        att: &mut [F],
    );
}

/// A block's weights that are vectors (norms and biases), in the pass's float type. Norm
/// weights are used as stored: Gemma's `1 + w` is folded into its GGUF by the converter.
#[derive(Clone, Copy, Debug)]
pub struct BlockVectors<'a, F> {
    /// `(d)`: RMSNorm before attention.
    pub attn_norm: &'a [F],
    /// `(nh·hd)`, `(nkv·hd)`, `(nkv·hd)`: added after the q, k, v projections (Qwen 2).
    pub qkv_bias: Option<[&'a [F]; 3]>,
    /// `(hd)`: RMSNorm over each query / key head before RoPE (Gemma 3, Qwen 3).
    pub q_norm: Option<&'a [F]>,
    pub k_norm: Option<&'a [F]>,
    /// `(d)`: RMSNorm on the attention output before the residual (Gemma 2/3).
    pub post_attn_norm: Option<&'a [F]>,
    /// `(d)`: RMSNorm before the MLP.
    pub ffn_norm: &'a [F],
    /// `(d)`: RMSNorm on the MLP output before the residual (Gemma 2/3).
    pub post_ffn_norm: Option<&'a [F]>,
}

/// What a block's backward needs from its forward (llm.c's activations), row-major. Left
/// empty where a switch is off (no q norm: no `q_raw`, `rstd_q`).
#[derive(Clone, Debug, Default)]
pub struct BlockRecord<F> {
    /// `(T, d)` the layer's input (residual stream).
    pub x_in: Vec<F>,
    /// `(T)` and `(T, d)`: `a = rmsnorm(x_in)·attn_norm`, the input of q, k, v.
    pub rstd_attn: Vec<F>,
    pub a: Vec<F>,
    /// `(T, nh·hd)`, `(T, nkv·hd)`: q and k before their per-head norms (biases added), with
    /// the norms' `rstd` `(T·nh)`, `(T·nkv)`; only with q/k norms.
    pub q_raw: Vec<F>,
    pub rstd_q: Vec<F>,
    pub k_raw: Vec<F>,
    pub rstd_k: Vec<F>,
    /// `(T, nh·hd)`, `(T, nkv·hd)`, `(T, nkv·hd)`: what attention consumed (q, k normed and
    /// rotated).
    pub q: Vec<F>,
    pub k: Vec<F>,
    pub v: Vec<F>,
    /// `(T, nh·hd)` attention's output, the input of o.
    pub att: Vec<F>,
    /// `(T, d)` the o projection's output, before the post-attention norm; its `rstd` `(T)`.
    pub o: Vec<F>,
    pub rstd_po: Vec<F>,
    /// `(T, d)` the residual after attention; `h = rmsnorm(x_mid)·ffn_norm` `(T, d)`.
    pub x_mid: Vec<F>,
    pub rstd_ffn: Vec<F>,
    pub h: Vec<F>,
    /// `(T, f)` the MLP's pre-activations (`g = act(gate) ⊙ up` is cheap to recompute).
    pub gate: Vec<F>,
    pub up: Vec<F>,
    /// `(T, d)` the down projection's output, before the post-MLP norm; its `rstd` `(T)`.
    pub y: Vec<F>,
    pub rstd_pf: Vec<F>,
}

/// `y (rows, cols) = rmsnorm(x)·w` per row of `cols`; `rstd` `(rows)` is filled when recording
/// (left empty otherwise: the inference pass does not need it).
fn norm<F: Float>(x: &[F], w: &[F], eps: F, cols: usize, rstd: Option<&mut Vec<F>>) -> Vec<F> {
    let mut y = vec![F::ZERO; x.len()];
    match rstd {
        Some(r) => {
            *r = vec![F::ZERO; x.len() / cols];
            rms_norm_forward(x, w, eps, cols, &mut y, Some(r));
        }
        None => rms_norm_forward(x, w, eps, cols, &mut y, None),
    }
    y
}

/// Two record slots, when recording.
fn slots<'s, F>(
    on: bool,
    a: &'s mut Vec<F>,
    b: &'s mut Vec<F>,
) -> Option<(&'s mut Vec<F>, &'s mut Vec<F>)> {
    on.then_some((a, b))
}

/// `x (T, n) += bias (n)` on every row.
fn add_bias<F: Float>(x: &mut [F], bias: &[F]) {
    for row in x.chunks_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(a, &b)| *a += b);
    }
}

/// `x_in + post_norm(y)` (or `x_in + y` without a post-norm); records `y` and the norm's
/// `rstd` into the given slots.
fn residual<F: Float>(
    x_in: &[F],
    y: Vec<F>,
    w: Option<&[F]>,
    eps: F,
    d: usize,
    slots: Option<(&mut Vec<F>, &mut Vec<F>)>,
) -> Vec<F> {
    let (y_slot, rstd) = match slots {
        Some((y_slot, rstd)) => (Some(y_slot), Some(rstd)),
        None => (None, None),
    };
    let out = match w {
        Some(w) => {
            let yn = norm(&y, w, eps, d, rstd);
            x_in.iter().zip(&yn).map(|(&a, &b)| a + b).collect()
        }
        None => x_in.iter().zip(&y).map(|(&a, &b)| a + b).collect(),
    };
    if let Some(slot) = y_slot {
        *slot = y;
    }
    out
}

/// Per-head RMSNorm of `x (T, heads·hd)` with weight `w (hd)`, if the family has one; records
/// the input and `rstd` when asked.
fn head_norm<F: Float>(
    x: Vec<F>,
    w: Option<&[F]>,
    eps: F,
    hd: usize,
    slots: Option<(&mut Vec<F>, &mut Vec<F>)>,
) -> Vec<F> {
    let Some(w) = w else { return x };
    match slots {
        Some((raw, rstd)) => {
            let y = norm(&x, w, eps, hd, Some(rstd));
            *raw = x;
            y
        }
        None => norm(&x, w, eps, hd, None),
    }
}

/// One decoder layer `il` over `x_in (T, d)` for queries at `positions` (T): returns the
/// layer's output `(T, d)`. With `record`, everything the backward needs is moved into it.
pub fn block_forward<F: Float>(
    spec: &ArchSpec,
    il: usize,
    w: &BlockVectors<F>,
    x_in: Vec<F>,
    positions: &[usize],
    pass: &mut impl BlockPass<F>,
    mut record: Option<&mut BlockRecord<F>>,
) -> Vec<F> {
    let layer = &spec.layers[il];
    let (d, f) = (spec.d_model, spec.d_ff);
    let (nh, nkv, hd) = (spec.n_heads, spec.n_kv_heads, spec.head_dim);
    let t = positions.len();
    assert_eq!(x_in.len(), t * d, "x_in is not (T, d)");
    let eps = F::from_f64(spec.rms_eps as f64);
    let rope = spec.rope(il);
    let recording = record.is_some();

    // ---- attention ----
    // a (T, d) = rmsnorm(x_in) · attn_norm
    let mut rstd_attn = Vec::new();
    let a = norm(
        &x_in,
        w.attn_norm,
        eps,
        d,
        recording.then_some(&mut rstd_attn),
    );
    // q (T, nh·hd), k, v (T, nkv·hd) = a · W{q,k,v}ᵀ (+ biases)
    let mut q = vec![F::ZERO; t * nh * hd];
    let mut k = vec![F::ZERO; t * nkv * hd];
    let mut v = vec![F::ZERO; t * nkv * hd];
    pass.project(Proj::Q, &a, t, &mut q);
    pass.project(Proj::K, &a, t, &mut k);
    pass.project(Proj::V, &a, t, &mut v);
    if let Some([bq, bk, bv]) = w.qkv_bias {
        add_bias(&mut q, bq);
        add_bias(&mut k, bk);
        add_bias(&mut v, bv);
    }
    // q, k = rope(rmsnorm_per_head(q, k) · {q,k}_norm)
    let (mut q_raw, mut rstd_q, mut k_raw, mut rstd_k) = Default::default();
    let mut q = head_norm(
        q,
        w.q_norm,
        eps,
        hd,
        slots(recording, &mut q_raw, &mut rstd_q),
    );
    let mut k = head_norm(
        k,
        w.k_norm,
        eps,
        hd,
        slots(recording, &mut k_raw, &mut rstd_k),
    );
    rope_forward(&mut q, positions, nh, hd, &rope);
    rope_forward(&mut k, positions, nkv, hd, &rope);
    // att (T, nh·hd) = softmax(scale · q·kᵀ, causal, window) · v
    let mut att = vec![F::ZERO; t * nh * hd];
    pass.attend(layer, &q, &k, &v, positions, &mut att);
    // o (T, d) = att · Woᵀ
    let mut o = vec![F::ZERO; t * d];
    pass.project(Proj::O, &att, t, &mut o);
    // x_mid (T, d) = x_in + post_attn_norm(o)
    let (mut o_slot, mut rstd_po) = Default::default();
    let x_mid = residual(
        &x_in,
        o,
        w.post_attn_norm,
        eps,
        d,
        slots(recording, &mut o_slot, &mut rstd_po),
    );
    if let Some(r) = record.as_deref_mut() {
        r.x_in = x_in;
        r.rstd_attn = rstd_attn;
        r.a = a;
        r.q_raw = q_raw;
        r.rstd_q = rstd_q;
        r.k_raw = k_raw;
        r.rstd_k = rstd_k;
        r.q = q;
        r.k = k;
        r.v = v;
        r.att = att;
        r.o = o_slot;
        r.rstd_po = rstd_po;
    }

    // ---- MLP ----
    // h (T, d) = rmsnorm(x_mid) · ffn_norm
    let mut rstd_ffn = Vec::new();
    let h = norm(
        &x_mid,
        w.ffn_norm,
        eps,
        d,
        recording.then_some(&mut rstd_ffn),
    );
    // gate, up (T, f) = h · W{gate,up}ᵀ;  g (T, f) = act(gate) ⊙ up
    let mut gate = vec![F::ZERO; t * f];
    let mut up = vec![F::ZERO; t * f];
    pass.project(Proj::Gate, &h, t, &mut gate);
    pass.project(Proj::Up, &h, t, &mut up);
    let mut g = vec![F::ZERO; t * f];
    spec.activation.forward(&gate, &up, &mut g);
    // y (T, d) = g · Wdownᵀ
    let mut y = vec![F::ZERO; t * d];
    pass.project(Proj::Down, &g, t, &mut y);
    drop(g);
    // x_out (T, d) = x_mid + post_ffn_norm(y)
    let (mut y_slot, mut rstd_pf) = Default::default();
    let x_out = residual(
        &x_mid,
        y,
        w.post_ffn_norm,
        eps,
        d,
        slots(recording, &mut y_slot, &mut rstd_pf),
    );
    if let Some(r) = record {
        r.x_mid = x_mid;
        r.rstd_ffn = rstd_ffn;
        r.h = h;
        r.gate = gate;
        r.up = up;
        r.y = y_slot;
        r.rstd_pf = rstd_pf;
    }
    x_out
}
