//! One training step of a LoRA-adapted decoder over the frozen base: the forward pass caching
//! what the backward needs, the loss at the answer positions, and the backward pass, written
//! op by op as in llm.c. Each backward step names the forward line it differentiates.
//!
//! Shapes: `T` tokens, `d` model width, `f` MLP width, `nh`/`nkv` query/KV heads of `hd`,
//! `qd = nh·hd`, `kvd = nkv·hd`, `r` LoRA rank.

use crate::adapter::LoraAdapter;
use crate::attention::{self, Grads, Heads};
use crate::base::Frozen;
use crate::config::Target;
use crate::error::{LoraError, Result};
use crate::head::linear_cross_entropy;
use crate::prof::{self, Phase};
use smolt_kernels::{
    geglu_backward, geglu_forward, matmul_nn, matmul_nt, matmul_tn, rms_norm_backward,
    rms_norm_forward, rope_backward, rope_forward, Float,
};

/// The label that means "no loss here", as in HF.
pub const IGNORE: i64 = -100;

/// A training example: token ids and one label per token. With HF's causal-LM shift, the logits
/// at position `t` are scored against `labels[t + 1]`; `labels[t] = IGNORE` puts no loss on
/// predicting token `t` (the prompt), and `labels[0]` is never used.
#[derive(Clone, Copy, Debug)]
pub struct Sequence<'a> {
    pub tokens: &'a [u32],
    pub labels: &'a [i64],
}

/// How to run a step.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepOptions {
    /// Keep only each layer's input during the forward and recompute the layer's activations
    /// just before its backward: about one layer of activations alive instead of all of them,
    /// for one more forward pass of the body.
    pub recompute: bool,
    /// Seed of the dropout masks (if the adapter has dropout): give every step its own, or
    /// every step drops the same elements. Masks do not depend on the thread count.
    pub dropout_seed: u64,
    /// The gradient is that of `loss_sum / normalizer`; `None` means the number of answer
    /// tokens in this sequence (HF's mean). Pass the token count of a whole accumulated batch
    /// to weight every token equally across micro-batches.
    pub normalizer: Option<f64>,
}

/// What a step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutput {
    /// Σ cross-entropy over the answer tokens (natural log).
    pub loss_sum: f64,
    /// Answer tokens scored.
    pub n_targets: usize,
    /// `loss_sum / normalizer` (NaN when nothing was scored and no normalizer was given).
    pub loss: f64,
}

/// Dropout on the adapters' inputs: element `i` of target `t`'s input in layer `l` is kept iff
/// a hash of `(seed, l, t, i)` clears `p`, so the forward, a recomputed forward and the backward
/// all see the same mask without storing it.
#[derive(Clone, Copy, Debug)]
struct Dropout {
    p: f64,
    seed: u64,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dropout {
    /// `x ⊙ mask / (1 − p)` for layer `il`, target `t`.
    fn apply<F: Float>(&self, il: usize, t: Target, x: &[F]) -> Vec<F> {
        let stream = splitmix64(self.seed ^ splitmix64((il * 8 + t.index()) as u64));
        let threshold = (self.p * 2f64.powi(64)) as u64;
        let inv_keep = F::from_f64(1.0 / (1.0 - self.p));
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                if splitmix64(stream.wrapping_add(i as u64)) >= threshold {
                    v * inv_keep
                } else {
                    F::ZERO
                }
            })
            .collect()
    }
}

/// The adapter as one forward pass sees it.
#[derive(Clone, Copy)]
struct Lora<'a, F: Float> {
    adapter: Option<&'a LoraAdapter<F>>,
    dropout: Option<Dropout>,
}

/// What one layer's backward needs from its forward (llm.c's activations), all row-major.
struct LayerCache<F> {
    /// `(T, d)` the layer's input (residual stream).
    x_in: Vec<F>,
    /// `(T)` and `(T, d)`: `a = rmsnorm(x_in)·attn_norm`, the input of q, k, v.
    rstd_attn: Vec<F>,
    a: Vec<F>,
    /// `(T, qd)`, `(T, kvd)`: q and k before their per-head norm; `rstd` `(T·nh)`, `(T·nkv)`.
    q_raw: Vec<F>,
    rstd_q: Vec<F>,
    k_raw: Vec<F>,
    rstd_k: Vec<F>,
    /// `(T, qd)`, `(T, kvd)`, `(T, kvd)`: what attention consumed (q, k normed and rotated).
    q: Vec<F>,
    k: Vec<F>,
    v: Vec<F>,
    /// `(T, qd)` attention output (the input of o) and `(T, nh)` its log-sum-exps.
    att: Vec<F>,
    lse: Vec<F>,
    /// `(T, d)` the o projection's output, before the post-attention norm; `rstd` `(T)`.
    o: Vec<F>,
    rstd_po: Vec<F>,
    /// `(T, d)` residual after attention; `h = rmsnorm(x_mid)·ffn_norm` `(T, d)`.
    x_mid: Vec<F>,
    rstd_ffn: Vec<F>,
    h: Vec<F>,
    /// `(T, f)` MLP pre-activations (`g = gelu(gate)⊙up` is recomputed in the backward).
    gate: Vec<F>,
    up: Vec<F>,
    /// `(T, d)` the down projection's output, before the post-MLP norm; `rstd` `(T)`.
    y: Vec<F>,
    rstd_pf: Vec<F>,
    /// `(T, r)` per target: `s·u` with `u = drop(x)·Aᵀ`, the adapter's scaled bottleneck.
    su: [Vec<F>; 7],
}

/// Per layer, between forward and backward: everything, or only the input (recompute).
enum Saved<F> {
    Full(Box<LayerCache<F>>),
    Input(Vec<F>),
}

/// `y (rows, cols) = x (rows, cols)` normalised per row with weight `w`, or a copy without one.
fn norm_or_copy<F: Float>(
    x: &[F],
    w: Option<&[F]>,
    eps: F,
    cols: usize,
    rstd: &mut Vec<F>,
) -> Vec<F> {
    match w {
        Some(w) => {
            let mut y = vec![F::ZERO; x.len()];
            *rstd = vec![F::ZERO; x.len() / cols];
            rms_norm_forward(x, w, eps, cols, &mut y, Some(rstd));
            y
        }
        None => x.to_vec(),
    }
}

/// Backward of [`norm_or_copy`]: `dx += d(norm)/dx · dy`.
fn norm_or_copy_backward<F: Float>(
    dy: &[F],
    x: &[F],
    w: Option<&[F]>,
    rstd: &[F],
    cols: usize,
    dx: &mut [F],
) {
    match w {
        Some(w) => rms_norm_backward(dy, x, w, rstd, cols, dx, None),
        None => dx.iter_mut().zip(dy).for_each(|(a, &b)| *a += b),
    }
}

impl<F: Float> Frozen<'_, F> {
    fn eps(&self) -> F {
        F::from_f64(self.spec.rms_eps as f64)
    }

    /// Checks the sequence and returns the scored `(position, target)` pairs: the logits at
    /// `position` predict `target = labels[position + 1]`.
    fn targets(&self, seq: &Sequence) -> Result<Vec<(usize, u32)>> {
        let (t, vocab) = (seq.tokens.len(), self.spec.vocab_size);
        if seq.labels.len() != t {
            return Err(LoraError::LabelCount {
                tokens: t,
                labels: seq.labels.len(),
            });
        }
        if t > self.spec.context_length {
            return Err(LoraError::TooLong {
                len: t,
                max: self.spec.context_length,
            });
        }
        if let Some((pos, &id)) = seq
            .tokens
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= vocab)
        {
            return Err(LoraError::TokenOutOfRange { id, pos, vocab });
        }
        let mut out = Vec::new();
        for (pos, &label) in seq.labels.iter().enumerate() {
            if label == IGNORE {
                continue;
            }
            if label < 0 || label as usize >= vocab {
                return Err(LoraError::BadLabel { label, pos, vocab });
            }
            if pos > 0 {
                out.push((pos - 1, label as u32));
            }
        }
        Ok(out)
    }

    /// `x (T, d) = embed(tokens) · embed_scale`
    fn embed(&self, tokens: &[u32]) -> Vec<F> {
        let d = self.spec.d_model;
        let mut x = vec![F::ZERO; tokens.len() * d];
        let mut scratch = Vec::new();
        for (row, &id) in x.chunks_mut(d).zip(tokens) {
            row.copy_from_slice(self.embed.rows(id as usize, id as usize + 1, &mut scratch));
            if let Some(s) = self.spec.embed_scale {
                // The same f32 scale as the inference pass, so both compute the same function.
                let s = F::from_f64(s as f64);
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        x
    }

    /// `y (T, out) = x (T, in)·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ`; returns `s·u` with `u = drop(x)·Aᵀ`
    /// `(T, r)` (empty when the adapter does not target this projection).
    fn lora_forward(
        &self,
        il: usize,
        tg: Target,
        lora: Lora<F>,
        x: &[F],
        t: usize,
        y: &mut [F],
    ) -> Vec<F> {
        let w = self.blocks[il].proj(tg);
        let (out, inp) = w.shape();
        {
            let _p = prof::span(Phase::BaseForward);
            w.forward(x, t, y);
        }
        let Some((ad, (a, b))) = lora.adapter.and_then(|ad| Some((ad, ad.pair(il, tg)?))) else {
            return Vec::new();
        };
        let _p = prof::span(Phase::LoraForward);
        let r = a.shape[0];
        let xd = lora.dropout.map(|dr| dr.apply(il, tg, x));
        // u (T, r) = drop(x) (T, in) · A (r, in)ᵀ
        let mut u = vec![F::ZERO; t * r];
        matmul_nt(
            xd.as_deref().unwrap_or(x),
            &a.data,
            t,
            inp,
            r,
            &mut u,
            false,
        );
        // y (T, out) += (s·u) (T, r) · B (out, r)ᵀ
        let s = ad.scale();
        u.iter_mut().for_each(|v| *v *= s);
        matmul_nt(&u, &b.data, t, r, out, y, true);
        u
    }

    /// Backward of [`Frozen::lora_forward`] given `dy (T, out)`, its input `x (T, in)` and what
    /// it returned, `su = s·u`. `dx (T, in)` ACCUMULATES; so do the adapter's gradients. The base gets none: its
    /// rows are decoded into `scratch` (one matrix at most) only to carry `dy` back to `x`.
    #[allow(clippy::too_many_arguments)]
    fn lora_backward(
        &self,
        il: usize,
        tg: Target,
        adapter: Option<&mut LoraAdapter<F>>,
        dropout: Option<Dropout>,
        x: &[F],
        su: &[F],
        dy: &[F],
        t: usize,
        dx: &mut [F],
        scratch: &mut Vec<F>,
    ) {
        let w = self.blocks[il].proj(tg);
        let (out, inp) = w.shape();
        // forward: y = x·Wᵀ (frozen)  ⇒  dx += dy·W
        {
            let _p = prof::span(Phase::BaseBackward);
            w.backward(dy, t, dx, scratch);
        }

        let Some(ad) = adapter else { return };
        let _p = prof::span(Phase::LoraBackward);
        let s = ad.scale();
        let Some((a, b)) = ad.pair_mut(il, tg) else {
            return;
        };
        let r = a.shape[0];
        // forward: y += s·u·Bᵀ  ⇒  dB (out, r) += dyᵀ·(s·u), du (T, r) = s·(dy·B); the scale
        // stays on the thin (T, r) side (the forward kept s·u), not on a copy of dy.
        matmul_tn(dy, su, out, t, r, &mut b.grad, true);
        let mut du = vec![F::ZERO; t * r];
        matmul_nn(dy, &b.data, t, out, r, &mut du, false);
        du.iter_mut().for_each(|v| *v *= s);
        // forward: u = drop(x)·Aᵀ  ⇒  dA (r, in) += duᵀ·drop(x), d drop(x) (T, in) = du·A
        let xd = dropout.map(|dr| dr.apply(il, tg, x));
        matmul_tn(
            &du,
            xd.as_deref().unwrap_or(x),
            r,
            t,
            inp,
            &mut a.grad,
            true,
        );
        match dropout {
            None => matmul_nn(&du, &a.data, t, r, inp, dx, true),
            Some(dr) => {
                // drop(x) = x ⊙ mask/(1−p) is linear in x: the same mask carries the gradient.
                let mut dxd = vec![F::ZERO; t * inp];
                matmul_nn(&du, &a.data, t, r, inp, &mut dxd, false);
                let masked = dr.apply(il, tg, &dxd);
                dx.iter_mut().zip(&masked).for_each(|(g, &m)| *g += m);
            }
        }
    }

    /// Layer `il`'s attention shape.
    fn heads(&self, il: usize) -> Heads<F> {
        let spec = &self.spec;
        Heads {
            nh: spec.n_heads,
            nkv: spec.n_kv_heads,
            hd: spec.head_dim,
            window: spec.layers[il].window,
            scale: F::from_f64(spec.attn_scale as f64),
        }
    }

    /// One decoder layer over `x_in (T, d)`: returns the layer's output `(T, d)` and what its
    /// backward needs. The same function as smolt-model's `block_forward`, line for line.
    fn block_forward(&self, il: usize, lora: Lora<F>, x_in: Vec<F>) -> (Vec<F>, LayerCache<F>) {
        let (spec, b) = (&self.spec, &self.blocks[il]);
        let layer = &spec.layers[il];
        let (d, f, nh, nkv, hd) = (
            spec.d_model,
            spec.d_ff,
            spec.n_heads,
            spec.n_kv_heads,
            spec.head_dim,
        );
        let t = x_in.len() / d;
        let eps = self.eps();
        let positions: Vec<usize> = (0..t).collect();
        let theta = F::from_f64(layer.rope_base);

        // ---- attention ----
        // a (T, d) = rmsnorm(x_in) · attn_norm
        let mut rstd_attn = Vec::new();
        let a = norm_or_copy(&x_in, Some(&b.attn_norm), eps, d, &mut rstd_attn);
        // q_raw (T, qd), k_raw, v (T, kvd) = a · W{q,k,v}ᵀ + LoRA
        let mut q_raw = vec![F::ZERO; t * nh * hd];
        let mut k_raw = vec![F::ZERO; t * nkv * hd];
        let mut v = vec![F::ZERO; t * nkv * hd];
        let u_q = self.lora_forward(il, Target::Q, lora, &a, t, &mut q_raw);
        let u_k = self.lora_forward(il, Target::K, lora, &a, t, &mut k_raw);
        let u_v = self.lora_forward(il, Target::V, lora, &a, t, &mut v);
        // q, k = rope(rmsnorm_per_head(q_raw, k_raw) · {q,k}_norm)
        let (mut rstd_q, mut rstd_k) = (Vec::new(), Vec::new());
        let mut q = norm_or_copy(&q_raw, b.q_norm.as_deref(), eps, hd, &mut rstd_q);
        let mut k = norm_or_copy(&k_raw, b.k_norm.as_deref(), eps, hd, &mut rstd_k);
        rope_forward(&mut q, &positions, nh, hd, theta);
        rope_forward(&mut k, &positions, nkv, hd, theta);
        // att (T, qd) = softmax(scale · q·kᵀ, causal, window) · v;  lse (T, nh)
        let mut att = vec![F::ZERO; t * nh * hd];
        let mut lse = vec![F::ZERO; t * nh];
        let heads = self.heads(il);
        let p_att = prof::span(Phase::AttentionForward);
        self.attention
            .forward(&q, &k, &v, &heads, &mut att, &mut lse);
        drop(p_att);
        // o (T, d) = att · Woᵀ + LoRA
        let mut o = vec![F::ZERO; t * d];
        let u_o = self.lora_forward(il, Target::O, lora, &att, t, &mut o);
        // x_mid (T, d) = x_in + post_attn_norm(o)
        let mut rstd_po = Vec::new();
        let on = norm_or_copy(&o, b.post_attn_norm.as_deref(), eps, d, &mut rstd_po);
        let x_mid: Vec<F> = x_in.iter().zip(&on).map(|(&a, &b)| a + b).collect();
        drop(on);

        // ---- MLP ----
        // h (T, d) = rmsnorm(x_mid) · ffn_norm
        let mut rstd_ffn = Vec::new();
        let h = norm_or_copy(&x_mid, Some(&b.ffn_norm), eps, d, &mut rstd_ffn);
        // gate, up (T, f) = h · W{gate,up}ᵀ + LoRA;  g (T, f) = gelu_tanh(gate) ⊙ up
        let mut gate = vec![F::ZERO; t * f];
        let mut up = vec![F::ZERO; t * f];
        let u_gate = self.lora_forward(il, Target::Gate, lora, &h, t, &mut gate);
        let u_up = self.lora_forward(il, Target::Up, lora, &h, t, &mut up);
        let mut g = vec![F::ZERO; t * f];
        geglu_forward(&gate, &up, &mut g);
        // y (T, d) = g · Wdownᵀ + LoRA
        let mut y = vec![F::ZERO; t * d];
        let u_down = self.lora_forward(il, Target::Down, lora, &g, t, &mut y);
        drop(g);
        // x_out (T, d) = x_mid + post_ffn_norm(y)
        let mut rstd_pf = Vec::new();
        let yn = norm_or_copy(&y, b.post_ffn_norm.as_deref(), eps, d, &mut rstd_pf);
        let x_out: Vec<F> = x_mid.iter().zip(&yn).map(|(&a, &b)| a + b).collect();

        let cache = LayerCache {
            x_in,
            rstd_attn,
            a,
            q_raw,
            rstd_q,
            k_raw,
            rstd_k,
            q,
            k,
            v,
            att,
            lse,
            o,
            rstd_po,
            x_mid,
            rstd_ffn,
            h,
            gate,
            up,
            y,
            rstd_pf,
            su: [u_q, u_k, u_v, u_o, u_gate, u_up, u_down],
        };
        (x_out, cache)
    }

    /// Backward of [`Frozen::block_forward`]: `dx (T, d)` holds `dL/dx_out` on entry and
    /// `dL/dx_in` on exit. Steps run in the reverse order of the forward's lines.
    fn block_backward(
        &self,
        il: usize,
        c: &LayerCache<F>,
        mut adapter: Option<&mut LoraAdapter<F>>,
        dropout: Option<Dropout>,
        dx: &mut [F],
        scratch: &mut Vec<F>,
    ) {
        let (spec, b) = (&self.spec, &self.blocks[il]);
        let layer = &spec.layers[il];
        let (d, f, nh, nkv, hd) = (
            spec.d_model,
            spec.d_ff,
            spec.n_heads,
            spec.n_kv_heads,
            spec.head_dim,
        );
        let t = c.x_in.len() / d;
        let positions: Vec<usize> = (0..t).collect();
        let theta = F::from_f64(layer.rope_base);
        let mut lb = |tg: Target, x: &[F], dy: &[F], dxx: &mut [F], scratch: &mut Vec<F>| {
            self.lora_backward(
                il,
                tg,
                adapter.as_deref_mut(),
                dropout,
                x,
                &c.su[tg.index()],
                dy,
                t,
                dxx,
                scratch,
            );
        };

        // ---- MLP ----
        // forward: x_out = x_mid + post_ffn_norm(y)  ⇒  dx_mid = dx_out (dx as is), dy:
        let mut dy = vec![F::ZERO; t * d];
        norm_or_copy_backward(dx, &c.y, b.post_ffn_norm.as_deref(), &c.rstd_pf, d, &mut dy);
        // forward: y = g · Wdownᵀ + LoRA  ⇒  dg (T, f); g recomputed from gate, up
        let mut g = vec![F::ZERO; t * f];
        geglu_forward(&c.gate, &c.up, &mut g);
        let mut dg = vec![F::ZERO; t * f];
        lb(Target::Down, &g, &dy, &mut dg, scratch);
        drop((g, dy));
        // forward: g = gelu_tanh(gate) ⊙ up  ⇒  dgate, dup (T, f)
        let mut dgate = vec![F::ZERO; t * f];
        let mut dup = vec![F::ZERO; t * f];
        geglu_backward(&dg, &c.gate, &c.up, &mut dgate, &mut dup);
        drop(dg);
        // forward: gate, up = h · W{gate,up}ᵀ + LoRA  ⇒  dh (T, d)
        let mut dh = vec![F::ZERO; t * d];
        lb(Target::Gate, &c.h, &dgate, &mut dh, scratch);
        lb(Target::Up, &c.h, &dup, &mut dh, scratch);
        drop((dgate, dup));
        // forward: h = rmsnorm(x_mid) · ffn_norm  ⇒  dx_mid += …
        norm_or_copy_backward(&dh, &c.x_mid, Some(&b.ffn_norm), &c.rstd_ffn, d, dx);
        drop(dh);

        // ---- attention ----
        // forward: x_mid = x_in + post_attn_norm(o)  ⇒  dx_in = dx_mid (dx as is), do:
        let mut d_o = vec![F::ZERO; t * d];
        norm_or_copy_backward(
            dx,
            &c.o,
            b.post_attn_norm.as_deref(),
            &c.rstd_po,
            d,
            &mut d_o,
        );
        // forward: o = att · Woᵀ + LoRA  ⇒  datt (T, qd)
        let mut datt = vec![F::ZERO; t * nh * hd];
        lb(Target::O, &c.att, &d_o, &mut datt, scratch);
        drop(d_o);
        // forward: att = attention(q, k, v)  ⇒  dq (T, qd), dk, dv (T, kvd)
        let mut dq = vec![F::ZERO; t * nh * hd];
        let mut dk = vec![F::ZERO; t * nkv * hd];
        let mut dv = vec![F::ZERO; t * nkv * hd];
        let p_att = prof::span(Phase::AttentionBackward);
        let saved = attention::Forward {
            q: &c.q,
            k: &c.k,
            v: &c.v,
            out: &c.att,
            lse: &c.lse,
        };
        let grads = Grads {
            dq: &mut dq,
            dk: &mut dk,
            dv: &mut dv,
        };
        self.attention
            .backward(&datt, saved, &self.heads(il), grads);
        drop((datt, p_att));
        // forward: q, k = rope(·)  ⇒  rotate the gradients back (in place)
        rope_backward(&mut dq, &positions, nh, hd, theta);
        rope_backward(&mut dk, &positions, nkv, hd, theta);
        // forward: q, k = rmsnorm_per_head(q_raw, k_raw) · {q,k}_norm  ⇒  dq_raw, dk_raw
        let mut dq_raw = vec![F::ZERO; t * nh * hd];
        let mut dk_raw = vec![F::ZERO; t * nkv * hd];
        norm_or_copy_backward(
            &dq,
            &c.q_raw,
            b.q_norm.as_deref(),
            &c.rstd_q,
            hd,
            &mut dq_raw,
        );
        norm_or_copy_backward(
            &dk,
            &c.k_raw,
            b.k_norm.as_deref(),
            &c.rstd_k,
            hd,
            &mut dk_raw,
        );
        drop((dq, dk));
        // forward: q_raw, k_raw, v = a · W{q,k,v}ᵀ + LoRA  ⇒  da (T, d)
        let mut da = vec![F::ZERO; t * d];
        lb(Target::Q, &c.a, &dq_raw, &mut da, scratch);
        lb(Target::K, &c.a, &dk_raw, &mut da, scratch);
        lb(Target::V, &c.a, &dv, &mut da, scratch);
        // forward: a = rmsnorm(x_in) · attn_norm  ⇒  dx_in += …
        norm_or_copy_backward(&da, &c.x_in, Some(&b.attn_norm), &c.rstd_attn, d, dx);
    }

    /// The forward pass of the body; caches per layer what the backward will need (or only
    /// the inputs with `recompute`), and returns the last layer's output `(T, d)`.
    fn body_forward(
        &self,
        tokens: &[u32],
        lora: Lora<F>,
        keep: Option<bool>,
    ) -> (Vec<F>, Vec<Saved<F>>) {
        let mut x = self.embed(tokens);
        let mut saved = Vec::new();
        for il in 0..self.blocks.len() {
            let (x_out, cache) = self.block_forward(il, lora, x);
            match keep {
                Some(false) => saved.push(Saved::Full(Box::new(cache))),
                Some(true) => saved.push(Saved::Input(cache.x_in)),
                None => {}
            }
            x = x_out;
        }
        (x, saved)
    }

    /// Final norm at the scored positions: `xs (n, d)` gathered from `x (T, d)`, `hf = rmsnorm(xs)
    /// · output_norm` and its rstd.
    fn final_norm(&self, x: &[F], targets: &[(usize, u32)]) -> (Vec<F>, Vec<F>, Vec<F>) {
        let d = self.spec.d_model;
        let xs: Vec<F> = targets
            .iter()
            .flat_map(|&(p, _)| x[p * d..][..d].iter().copied())
            .collect();
        let mut rstd = Vec::new();
        let hf = norm_or_copy(&xs, Some(&self.output_norm), self.eps(), d, &mut rstd);
        (xs, hf, rstd)
    }

    /// The loss of `seq` under the base plus `adapter` (none: the base alone), forward only,
    /// no dropout.
    pub fn loss(&self, adapter: Option<&LoraAdapter<F>>, seq: &Sequence) -> Result<StepOutput> {
        check_trainable(&self.spec)?;
        if let Some(ad) = adapter {
            ad.check_matches(&self.spec)?;
        }
        let targets = self.targets(seq)?;
        let Some(last) = targets.iter().map(|&(p, _)| p).max() else {
            return Ok(StepOutput {
                loss_sum: 0.0,
                n_targets: 0,
                loss: f64::NAN,
            });
        };
        let (x, _) = self.body_forward(
            &seq.tokens[..=last],
            Lora {
                adapter,
                dropout: None,
            },
            None,
        );
        let (_, hf, _) = self.final_norm(&x, &targets);
        let ys: Vec<u32> = targets.iter().map(|&(_, y)| y).collect();
        let loss_sum = linear_cross_entropy(self.head(), &hf, &ys, F::ONE, None);
        Ok(StepOutput {
            loss_sum,
            n_targets: ys.len(),
            loss: loss_sum / ys.len() as f64,
        })
    }

    /// One forward and backward pass: returns the loss and ADDS `d(loss_sum/normalizer)/dθ`
    /// to every adapter tensor's `grad`. The base and the embedding get no gradient; the
    /// gradient stops at the embedding lookup.
    pub fn step(
        &self,
        adapter: &mut LoraAdapter<F>,
        seq: &Sequence,
        opts: &StepOptions,
    ) -> Result<StepOutput> {
        check_trainable(&self.spec)?;
        adapter.check_matches(&self.spec)?;
        let targets = self.targets(seq)?;
        let n = targets.len();
        let norm = opts.normalizer.unwrap_or(n as f64);
        // Positions after the last scored one cannot influence the loss (causal): skip them.
        let Some(last) = targets.iter().map(|&(p, _)| p).max() else {
            return Ok(StepOutput {
                loss_sum: 0.0,
                n_targets: 0,
                loss: 0.0 / norm,
            });
        };
        let tokens = &seq.tokens[..=last];
        let (t, d) = (tokens.len(), self.spec.d_model);
        let p = adapter.config.dropout;
        let dropout = (p > 0.0).then_some(Dropout {
            p,
            seed: opts.dropout_seed,
        });

        // ---- forward ----
        let lora = Lora {
            adapter: Some(&*adapter),
            dropout,
        };
        let (x, mut saved) = self.body_forward(tokens, lora, Some(opts.recompute));
        // hf (n, d) = rmsnorm(x[scored]) · output_norm;  loss = Σ CE(hf · headᵀ, y)
        let (xs, hf, rstd) = self.final_norm(&x, &targets);
        drop(x);
        let ys: Vec<u32> = targets.iter().map(|&(_, y)| y).collect();
        let mut dhf = vec![F::ZERO; n * d];
        let p_head = prof::span(Phase::Head);
        let loss_sum = linear_cross_entropy(
            self.head(),
            &hf,
            &ys,
            F::from_f64(1.0 / norm),
            Some(&mut dhf),
        );
        drop(p_head);

        // ---- backward ----
        // forward: hf = rmsnorm(xs) · output_norm  ⇒  dxs (n, d), scattered into dx (T, d)
        let mut dxs = vec![F::ZERO; n * d];
        rms_norm_backward(&dhf, &xs, &self.output_norm, &rstd, d, &mut dxs, None);
        let mut dx = vec![F::ZERO; t * d];
        for (&(pos, _), g) in targets.iter().zip(dxs.chunks(d)) {
            dx[pos * d..][..d].copy_from_slice(g);
        }
        drop((xs, hf, dhf, dxs));
        let mut scratch = Vec::new();
        for il in (0..self.blocks.len()).rev() {
            let cache = match saved.pop().expect("one saved entry per layer") {
                Saved::Full(c) => *c,
                Saved::Input(x_in) => {
                    self.block_forward(
                        il,
                        Lora {
                            adapter: Some(&*adapter),
                            dropout,
                        },
                        x_in,
                    )
                    .1
                }
            };
            self.block_backward(
                il,
                &cache,
                Some(&mut *adapter),
                dropout,
                &mut dx,
                &mut scratch,
            );
        }
        // forward: x = embed(tokens) · embed_scale — the table is frozen, so dx stops here.
        Ok(StepOutput {
            loss_sum,
            n_targets: n,
            loss: loss_sum / norm,
        })
    }
}
/// The training pass is written for Gemma 3's block (GEGLU, no projection biases); a model
/// whose block differs is refused by name instead of being trained on the wrong function.
/// (Issue 22: one block for inference and training lifts this.)
pub fn check_trainable(spec: &smolt_model::ArchSpec) -> Result<()> {
    let mut differs = Vec::new();
    if spec.activation != smolt_model::Activation::GeluTanh {
        differs.push(format!("activation {:?}", spec.activation));
    }
    if spec.qkv_bias {
        differs.push("q/k/v biases".to_string());
    }
    if differs.is_empty() {
        Ok(())
    } else {
        Err(crate::LoraError::Unsupported(format!(
            "{} ({}): the LoRA training pass implements Gemma 3's block only; inference works",
            spec.arch.name(),
            differs.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolt_model::{Activation, ArchSpec};

    fn gemma_spec() -> ArchSpec {
        ArchSpec::from_gguf(&smolt_model::testing::tiny_gemma3(1)).unwrap()
    }

    #[test]
    fn only_gemmas_block_is_trainable_and_the_refusal_says_why() {
        check_trainable(&gemma_spec()).unwrap();
        let qwen_like = ArchSpec {
            activation: Activation::Silu,
            qkv_bias: true,
            ..gemma_spec()
        };
        let e = check_trainable(&qwen_like).unwrap_err().to_string();
        assert!(
            e.contains("Silu") && e.contains("q/k/v biases") && e.contains("inference works"),
            "{e}"
        );
        // The refusal reaches the step before any arithmetic.
        let m = smolt_model::Model::from_gguf(
            smolt_model::testing::tiny_gemma3(1),
            smolt_model::Precision::F32,
        )
        .unwrap();
        let mut base = crate::Frozen::from_model(&m);
        base.spec = qwen_like;
        let seq = Sequence {
            tokens: &[2, 5, 6],
            labels: &[-100, 5, 6],
        };
        assert!(matches!(
            base.loss(None, &seq),
            Err(crate::LoraError::Unsupported(_))
        ));
    }
}
