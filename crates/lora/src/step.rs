//! One training step of a LoRA-adapted decoder over the frozen base: the forward pass (the
//! one decoder block of `smolt_model::block`, recording what the backward needs), the loss at
//! the answer positions, and the backward pass, written op by op as in llm.c. Each backward
//! step names the forward line it differentiates.
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
    matmul_nn, matmul_nt, matmul_tn, rms_norm_backward, rms_norm_forward, rope_backward, Float,
};
use smolt_model::{block_forward, BlockPass, BlockRecord, LayerSpec};

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

/// What one layer's backward needs from its forward: the shared block's record, plus what
/// this pass's own parts kept (attention's log-sum-exps, the adapters' bottlenecks).
struct LayerCache<F> {
    block: BlockRecord<F>,
    /// `(T, nh)` attention's log-sum-exps.
    lse: Vec<F>,
    /// `(T, r)` per target: `s·u` with `u = drop(x)·Aᵀ`, the adapter's scaled bottleneck.
    su: [Vec<F>; 7],
}

/// The training pass through a block: the frozen base plus the adapter for projections, the
/// sequence itself for keys and values (positions `0..T`).
struct TrainPass<'p, 'a, F: Float> {
    base: &'p Frozen<'a, F>,
    il: usize,
    lora: Lora<'p, F>,
    lse: Vec<F>,
    su: [Vec<F>; 7],
}

impl<F: Float> BlockPass<F> for TrainPass<'_, '_, F> {
    fn project(&mut self, p: Target, x: &[F], t: usize, y: &mut [F]) {
        self.su[p.index()] = self.base.lora_forward(self.il, p, self.lora, x, t, y);
    }

    fn attend(
        &mut self,
        _layer: &LayerSpec,
        q: &[F],
        k: &[F],
        v: &[F],
        positions: &[usize],
        att: &mut [F],
    ) {
        debug_assert!(positions.iter().enumerate().all(|(i, &p)| i == p));
        self.lse = vec![F::ZERO; positions.len() * self.base.spec.n_heads];
        let _p = prof::span(Phase::AttentionForward);
        self.base
            .attention
            .forward(q, k, v, &self.base.heads(self.il), att, &mut self.lse);
    }
}

/// Per layer, between forward and backward: everything, or only the input (recompute).
enum Saved<F> {
    Full(Box<LayerCache<F>>),
    Input(Vec<F>),
}

/// Backward of an optional RMSNorm (the identity without a weight): `dx += d(norm)/dx · dy`.
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

    /// One decoder layer over `x_in (T, d)`: the shared block (`smolt_model::block_forward`)
    /// through the training pass; returns the layer's output `(T, d)` and what its backward needs.
    fn block_forward(&self, il: usize, lora: Lora<F>, x_in: Vec<F>) -> (Vec<F>, LayerCache<F>) {
        let t = x_in.len() / self.spec.d_model;
        let positions: Vec<usize> = (0..t).collect();
        let mut pass = TrainPass {
            base: self,
            il,
            lora,
            lse: Vec::new(),
            su: Default::default(),
        };
        let mut record = BlockRecord::default();
        let x_out = block_forward(
            &self.spec,
            il,
            &self.blocks[il].vectors(),
            x_in,
            &positions,
            &mut pass,
            Some(&mut record),
        );
        let cache = LayerCache {
            block: record,
            lse: pass.lse,
            su: pass.su,
        };
        (x_out, cache)
    }

    /// Backward of [`Frozen::block_forward`]: `dx (T, d)` holds `dL/dx_out` on entry and
    /// `dL/dx_in` on exit. Steps run in the reverse order of the forward's lines.
    fn block_backward(
        &self,
        il: usize,
        cache: &LayerCache<F>,
        mut adapter: Option<&mut LoraAdapter<F>>,
        dropout: Option<Dropout>,
        dx: &mut [F],
        scratch: &mut Vec<F>,
    ) {
        let (spec, b) = (&self.spec, &self.blocks[il]);
        let (d, f, nh, nkv, hd) = (
            spec.d_model,
            spec.d_ff,
            spec.n_heads,
            spec.n_kv_heads,
            spec.head_dim,
        );
        let c = &cache.block;
        let t = c.x_in.len() / d;
        let positions: Vec<usize> = (0..t).collect();
        let rope = spec.rope(il);
        let mut lb = |tg: Target, x: &[F], dy: &[F], dxx: &mut [F], scratch: &mut Vec<F>| {
            self.lora_backward(
                il,
                tg,
                adapter.as_deref_mut(),
                dropout,
                x,
                &cache.su[tg.index()],
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
        spec.activation.forward(&c.gate, &c.up, &mut g);
        let mut dg = vec![F::ZERO; t * f];
        lb(Target::Down, &g, &dy, &mut dg, scratch);
        drop((g, dy));
        // forward: g = act(gate) ⊙ up  ⇒  dgate, dup (T, f)
        let mut dgate = vec![F::ZERO; t * f];
        let mut dup = vec![F::ZERO; t * f];
        spec.activation
            .backward(&dg, &c.gate, &c.up, &mut dgate, &mut dup);
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
            lse: &cache.lse,
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
        rope_backward(&mut dq, &positions, nh, hd, &rope);
        rope_backward(&mut dk, &positions, nkv, hd, &rope);
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
        // forward: q_raw, k_raw, v = a · W{q,k,v}ᵀ + LoRA (+ biases, constant)  ⇒  da (T, d)
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
                Some(true) => saved.push(Saved::Input(cache.block.x_in)),
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
        let mut rstd = vec![F::ZERO; targets.len()];
        let mut hf = vec![F::ZERO; xs.len()];
        rms_norm_forward(
            &xs,
            &self.output_norm,
            self.eps(),
            d,
            &mut hf,
            Some(&mut rstd),
        );
        (xs, hf, rstd)
    }

    /// The loss of `seq` under the base plus `adapter` (none: the base alone), forward only,
    /// no dropout.
    pub fn loss(&self, adapter: Option<&LoraAdapter<F>>, seq: &Sequence) -> Result<StepOutput> {
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
