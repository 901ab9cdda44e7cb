//! The trainable part: per layer and target, `A (r, in)` and `B (out, r)`, named as PEFT names
//! them so that a saved adapter loads in PEFT and vice versa.

use crate::config::{LoraConfig, Target};
use crate::error::{LoraError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smolt_kernels::Float;
use smolt_model::{ArchSpec, RopeStyle};

/// One trainable tensor and its gradient, row-major, in PEFT's shape (`lora_A`: `[r, in]`,
/// `lora_B`: `[out, r]`). Deliberately plain so a training loop can wrap it in its own trait.
#[derive(Clone, Debug, PartialEq)]
pub struct Param<F = f32> {
    /// PEFT's state-dict key, e.g. `base_model.model.model.layers.3.mlp.up_proj.lora_B.weight`.
    pub name: String,
    /// `[rows, cols]`.
    pub shape: [usize; 2],
    pub data: Vec<F>,
    /// `d loss / d data`; the backward pass ACCUMULATES into it (gradient accumulation over
    /// micro-batches is free), so zero it with [`LoraAdapter::zero_grad`] after each update.
    pub grad: Vec<F>,
}

impl<F: Float> Param<F> {
    /// A parameter holding `data`, with a zeroed gradient.
    ///
    /// # Panics
    /// If `shape` does not hold `data.len()` elements (a caller's bug, not bad input: loaders
    /// check the shapes they read).
    pub fn new(name: impl Into<String>, shape: [usize; 2], data: Vec<F>) -> Param<F> {
        assert_eq!(shape[0] * shape[1], data.len(), "shape does not match data");
        let grad = vec![F::ZERO; data.len()];
        Param {
            name: name.into(),
            shape,
            data,
            grad,
        }
    }

    fn zeros(name: String, shape: [usize; 2]) -> Param<F> {
        let n = shape[0] * shape[1];
        Param {
            name,
            shape,
            data: vec![F::ZERO; n],
            grad: vec![F::ZERO; n],
        }
    }
}

/// `(in, out)` features of a target's base projection.
pub fn target_dims(spec: &ArchSpec, t: Target) -> (usize, usize) {
    let (d, q, kv, f) = (spec.d_model, spec.q_dim(), spec.kv_dim(), spec.d_ff);
    match t {
        Target::Q => (d, q),
        Target::K | Target::V => (d, kv),
        Target::O => (q, d),
        Target::Gate | Target::Up => (d, f),
        Target::Down => (f, d),
    }
}

/// The PEFT (Hugging Face) row of row `row` of a `B` for target `t`, i.e. of an output row of
/// the base projection as the GGUF stores it. llama.cpp's converter permutes the q and k rows
/// of the models it runs with interleaved-pair RoPE (`llama`: `LlamaModel.permute`), so that
/// rotating pairs `(2i, 2i+1)` computes HF's `rotate_half` over `(i, i + hd/2)`: GGUF row
/// `h·hd + 2i` is HF row `h·hd + i` and GGUF row `h·hd + 2i + 1` is HF row `h·hd + hd/2 + i`.
/// Every other row (and every `A`) is where HF has it.
pub fn peft_row(spec: &ArchSpec, t: Target, row: usize) -> usize {
    if spec.rope_style != RopeStyle::Interleaved || !matches!(t, Target::Q | Target::K) {
        return row;
    }
    let hd = spec.head_dim;
    let (h, r) = (row / hd, row % hd);
    h * hd + if r % 2 == 0 { r / 2 } else { hd / 2 + r / 2 }
}

/// A `lora_B` of `t` (`cols` values per row, row-major) with its rows moved from the GGUF's
/// order to PEFT's (`to_peft`) or back ([`peft_row`]). A `B` whose length is not a whole
/// number of heads' rows is returned as it is, for the shape checks to refuse.
pub fn reorder_b_rows(
    spec: &ArchSpec,
    t: Target,
    b: &[f32],
    cols: usize,
    to_peft: bool,
) -> Vec<f32> {
    let mut out = b.to_vec();
    if cols == 0 || !b.len().is_multiple_of(cols * spec.head_dim.max(1)) {
        return out;
    }
    for r in 0..b.len() / cols {
        let hr = peft_row(spec, t, r);
        let (dst, src) = if to_peft { (hr, r) } else { (r, hr) };
        out[dst * cols..][..cols].copy_from_slice(&b[src * cols..][..cols]);
    }
    out
}

/// PEFT's state-dict key for a LoRA tensor (`which` is `'A'` or `'B'`).
pub fn peft_name(layer: usize, t: Target, which: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{which}.weight",
        t.hf_module()
    )
}

/// A LoRA adapter for every layer of one model: `y = W·x + scale·B·(A·x)` on each targeted
/// projection. Generic over the float type so the same training code can run in f64 for the
/// gradient checks.
#[derive(Clone, Debug)]
pub struct LoraAdapter<F = f32> {
    pub config: LoraConfig,
    /// `[A, B, A, B, …]`, layer by layer, targets in [`Target::ALL`] order (PEFT's order).
    params: Vec<Param<F>>,
    /// `index[layer][target]`: where that target's `A` sits in `params` (`B` follows).
    index: Vec<[Option<usize>; 7]>,
    n_layers: usize,
}

impl<F: Float> LoraAdapter<F> {
    /// PEFT's initialisation: `A` Kaiming-uniform with `a = √5`, `B` zero, so the adapted model
    /// starts out exactly as the base. `nn.init.kaiming_uniform_(A, a=√5)` has gain
    /// `√(2/(1+a²)) = √(1/3)` and bound `gain·√(3/fan_in) = 1/√in`; the draws come from a
    /// ChaCha8 stream seeded by `seed` (not torch's generator: same law, different numbers).
    pub fn new(spec: &ArchSpec, config: &LoraConfig, seed: u64) -> Result<LoraAdapter<F>> {
        let mut ad = LoraAdapter::zeros(spec, config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for p in ad.params.iter_mut().step_by(2) {
            let bound = 1.0 / (p.shape[1] as f64).sqrt();
            for v in &mut p.data {
                *v = F::from_f64(rng.gen_range(-bound..bound));
            }
        }
        Ok(ad)
    }

    /// An adapter whose `A` and `B` are all zero (fill them with [`LoraAdapter::init_with`] or
    /// by loading).
    pub fn zeros(spec: &ArchSpec, config: &LoraConfig) -> Result<LoraAdapter<F>> {
        if config.rank == 0 {
            return Err(LoraError::Config("rank must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(LoraError::Config(format!(
                "dropout = {} must be in [0, 1)",
                config.dropout
            )));
        }
        if !(config.alpha.is_finite() && config.alpha > 0.0) {
            return Err(LoraError::Config(format!(
                "alpha = {} must be > 0",
                config.alpha
            )));
        }
        let r = config.rank;
        let mut params = Vec::new();
        let mut index = Vec::with_capacity(spec.n_layers());
        for il in 0..spec.n_layers() {
            let mut row = [None; 7];
            for t in Target::ALL {
                if !config.targets(t) {
                    continue;
                }
                let (inp, out) = target_dims(spec, t);
                row[t.index()] = Some(params.len());
                params.push(Param::zeros(peft_name(il, t, 'A'), [r, inp]));
                params.push(Param::zeros(peft_name(il, t, 'B'), [out, r]));
            }
            index.push(row);
        }
        Ok(LoraAdapter {
            config: config.clone(),
            params,
            index,
            n_layers: spec.n_layers(),
        })
    }

    /// Sets every element from a closed-form rule `f(layer, target, is_b, row, col)`: for
    /// reproducing an adapter computed elsewhere (the PEFT fixtures use sin/cos formulas).
    pub fn init_with(&mut self, f: impl Fn(usize, Target, bool, usize, usize) -> f64) {
        for il in 0..self.n_layers {
            for t in Target::ALL {
                let Some(i) = self.index[il][t.index()] else {
                    continue;
                };
                for (k, is_b) in [(i, false), (i + 1, true)] {
                    let p = &mut self.params[k];
                    let cols = p.shape[1];
                    for (e, v) in p.data.iter_mut().enumerate() {
                        *v = F::from_f64(f(il, t, is_b, e / cols, e % cols));
                    }
                }
            }
        }
    }

    /// The output multiplier `alpha/r` (or `alpha/√r`).
    pub fn scale(&self) -> F {
        F::from_f64(self.config.scale())
    }

    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    /// Every tensor, `A` then `B`, layer by layer in PEFT's module order.
    pub fn params(&self) -> &[Param<F>] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [Param<F>] {
        &mut self.params
    }

    /// Trainable scalars in total.
    pub fn n_parameters(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.grad.fill(F::ZERO);
        }
    }

    /// `(A, B)` of `target` in `layer`, if the adapter targets it.
    pub fn pair(&self, layer: usize, t: Target) -> Option<(&Param<F>, &Param<F>)> {
        let i = self.index.get(layer)?[t.index()]?;
        Some((&self.params[i], &self.params[i + 1]))
    }

    /// Mutable `(A, B)`, for the backward pass to write their gradients.
    pub fn pair_mut(&mut self, layer: usize, t: Target) -> Option<(&mut Param<F>, &mut Param<F>)> {
        let i = self.index.get(layer)?[t.index()]?;
        let (a, b) = self.params[i..i + 2].split_at_mut(1);
        Some((&mut a[0], &mut b[0]))
    }

    /// Checks that the adapter was made for a model of this shape.
    pub fn check_matches(&self, spec: &ArchSpec) -> Result<()> {
        if self.n_layers != spec.n_layers() {
            return Err(LoraError::Mismatch(format!(
                "adapter has {} layers, model {}",
                self.n_layers,
                spec.n_layers()
            )));
        }
        for il in 0..self.n_layers {
            for t in Target::ALL {
                if let Some((a, b)) = self.pair(il, t) {
                    let (inp, out) = target_dims(spec, t);
                    let r = self.config.rank;
                    if a.shape != [r, inp] || b.shape != [out, r] {
                        return Err(LoraError::Mismatch(format!(
                            "{}: A {:?} / B {:?}, the model needs [{r}, {inp}] / [{out}, {r}]",
                            a.name, a.shape, b.shape
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}
