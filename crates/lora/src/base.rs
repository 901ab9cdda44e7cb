//! The frozen base model as the training pass sees it: projections that can multiply forward
//! and hand out their rows for the backward, without the backward ever holding more than one
//! dequantized matrix.

use crate::config::Target;
use smolt_kernels::{matmul_nt, Float};
use smolt_model::{ArchSpec, Linear, Model};

/// A frozen projection `in → out` with weight `W (out, in)`.
///
/// The training pass needs two things from it: the forward product, computed however the
/// weight is stored (quantized kernels in the fast mode), and rows of `W` as floats for
/// `dX = dY·W` and for the chunked LM head. `rows` borrows when `W` is dense already and
/// decodes into the caller's scratch otherwise, so the caller decides how long the decoded
/// copy lives (one matrix, or one vocabulary chunk).
pub trait FrozenLinear<F: Float>: Send + Sync {
    /// `(out, in)`.
    fn shape(&self) -> (usize, usize);

    /// `y (t, out) = x (t, in) · Wᵀ`.
    fn forward(&self, x: &[F], t: usize, y: &mut [F]);

    /// Rows `r0..r1` of `W`, `(r1 − r0, in)`.
    fn rows<'s>(&'s self, r0: usize, r1: usize, scratch: &'s mut Vec<F>) -> &'s [F];

    /// Rows `r0..r1` of `W` copied (decoded) into `out` `(r1 − r0, in)`, on the calling thread:
    /// for callers that are themselves parallel, such as the LM head's vocabulary groups.
    fn rows_into(&self, r0: usize, r1: usize, out: &mut [F]);
}

/// A dense weight in any float type: the f64 reference engine and tests.
pub struct Dense<F> {
    /// `(out, in)` row-major.
    pub w: Vec<F>,
    pub out: usize,
    pub inp: usize,
}

impl<F: Float> FrozenLinear<F> for Dense<F> {
    fn shape(&self) -> (usize, usize) {
        (self.out, self.inp)
    }

    fn forward(&self, x: &[F], t: usize, y: &mut [F]) {
        matmul_nt(x, &self.w, t, self.inp, self.out, y, false);
    }

    fn rows<'s>(&'s self, r0: usize, r1: usize, _scratch: &'s mut Vec<F>) -> &'s [F] {
        &self.w[r0 * self.inp..r1 * self.inp]
    }

    fn rows_into(&self, r0: usize, r1: usize, out: &mut [F]) {
        out.copy_from_slice(&self.w[r0 * self.inp..r1 * self.inp]);
    }
}

/// smolt-model's projection: the exact forward the inference engine runs (`matmul_q` with Q8
/// activations in `Precision::Fast`, f32 gemm in `Precision::F32`).
impl FrozenLinear<f32> for &Linear {
    fn shape(&self) -> (usize, usize) {
        (self.out_features, self.in_features)
    }

    fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        Linear::forward(self, x, t, y);
    }

    fn rows<'s>(&'s self, r0: usize, r1: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        let inp = self.in_features;
        if !self.is_quantized() {
            if let std::borrow::Cow::Borrowed(w) = self.dequantized() {
                return &w[r0 * inp..r1 * inp];
            }
        }
        use rayon::prelude::*;
        scratch.clear();
        scratch.resize((r1 - r0) * inp, 0.0);
        scratch
            .par_chunks_mut(inp)
            .enumerate()
            .for_each(|(i, row)| self.row(r0 + i, row));
        scratch
    }

    fn rows_into(&self, r0: usize, r1: usize, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            (r1 - r0) * self.in_features,
            "out is not (r1 - r0, in)"
        );
        for (i, row) in out.chunks_mut(self.in_features).enumerate() {
            self.row(r0 + i, row);
        }
    }
}

/// One decoder layer's frozen weights. Norm weights are used as stored (the GGUF has Gemma's
/// `1 + w` folded in), converted to `F`.
pub struct FrozenBlock<'a, F: Float> {
    /// `(d)`.
    pub attn_norm: Vec<F>,
    /// `(head_dim)` each, if `spec.qk_norm`.
    pub q_norm: Option<Vec<F>>,
    pub k_norm: Option<Vec<F>>,
    /// `(d)`, if `spec.post_norms`.
    pub post_attn_norm: Option<Vec<F>>,
    /// `(d)`.
    pub ffn_norm: Vec<F>,
    /// `(d)`, if `spec.post_norms`.
    pub post_ffn_norm: Option<Vec<F>>,
    /// The seven projections indexed by [`Target::index`].
    pub proj: [Box<dyn FrozenLinear<F> + 'a>; 7],
}

impl<'a, F: Float> FrozenBlock<'a, F> {
    pub fn proj(&self, t: Target) -> &(dyn FrozenLinear<F> + 'a) {
        &*self.proj[t.index()]
    }
}

/// The frozen base model: everything a training step reads and nothing it writes.
pub struct Frozen<'a, F: Float> {
    pub spec: ArchSpec,
    /// `(vocab, d)`: the token table, read row by row for the input.
    pub embed: Box<dyn FrozenLinear<F> + 'a>,
    /// `(vocab, d)`: the LM head when the model has an untied one; `None` means tied to `embed`.
    pub output: Option<Box<dyn FrozenLinear<F> + 'a>>,
    /// `(d)`: the final RMSNorm.
    pub output_norm: Vec<F>,
    pub blocks: Vec<FrozenBlock<'a, F>>,
}

fn cast<F: Float>(v: &[f32]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x as f64)).collect()
}

impl<'a> Frozen<'a, f32> {
    /// Borrows a loaded model's weights as they are: quantized and read from the mmap for
    /// `Precision::Fast`, dense f32 for `Precision::F32`. Nothing is copied but the norms.
    pub fn from_model(m: &'a Model) -> Frozen<'a, f32> {
        let lin = |l: &'a Linear| -> Box<dyn FrozenLinear<f32> + 'a> { Box::new(l) };
        Frozen {
            spec: m.spec.clone(),
            embed: lin(&m.token_embd),
            output: m.output.as_ref().map(lin),
            output_norm: m.output_norm.clone(),
            blocks: m
                .blocks
                .iter()
                .map(|b| FrozenBlock {
                    attn_norm: b.attn_norm.clone(),
                    q_norm: b.q_norm.clone(),
                    k_norm: b.k_norm.clone(),
                    post_attn_norm: b.post_attn_norm.clone(),
                    ffn_norm: b.ffn_norm.clone(),
                    post_ffn_norm: b.post_ffn_norm.clone(),
                    proj: [
                        lin(&b.wq),
                        lin(&b.wk),
                        lin(&b.wv),
                        lin(&b.wo),
                        lin(&b.w_gate),
                        lin(&b.w_up),
                        lin(&b.w_down),
                    ],
                })
                .collect(),
        }
    }
}

impl<F: Float> Frozen<'static, F> {
    /// Every weight dequantized and converted to `F`: the f64 engine that the finite-difference
    /// checks run (same code as the f32 one, other float type). Needs `size_of::<F>()` bytes
    /// per parameter, so it is for small models and reference runs.
    pub fn dense_from_model(m: &Model) -> Frozen<'static, F> {
        let dense = |l: &Linear| -> Box<dyn FrozenLinear<F>> {
            Box::new(Dense {
                w: cast(&l.dequantized()),
                out: l.out_features,
                inp: l.in_features,
            })
        };
        let opt = |v: &Option<Vec<f32>>| v.as_deref().map(cast);
        Frozen {
            spec: m.spec.clone(),
            embed: dense(&m.token_embd),
            output: m.output.as_ref().map(dense),
            output_norm: cast(&m.output_norm),
            blocks: m
                .blocks
                .iter()
                .map(|b| FrozenBlock {
                    attn_norm: cast(&b.attn_norm),
                    q_norm: opt(&b.q_norm),
                    k_norm: opt(&b.k_norm),
                    post_attn_norm: opt(&b.post_attn_norm),
                    ffn_norm: cast(&b.ffn_norm),
                    post_ffn_norm: opt(&b.post_ffn_norm),
                    proj: [
                        dense(&b.wq),
                        dense(&b.wk),
                        dense(&b.wv),
                        dense(&b.wo),
                        dense(&b.w_gate),
                        dense(&b.w_up),
                        dense(&b.w_down),
                    ],
                })
                .collect(),
        }
    }
}

impl<F: Float> Frozen<'_, F> {
    /// The LM head `(vocab, d)`: the untied output, or the embedding table.
    pub fn head(&self) -> &dyn FrozenLinear<F> {
        match &self.output {
            Some(o) => &**o,
            None => &*self.embed,
        }
    }
}
