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

/// How the training forward multiplies by a base weight that the model holds quantized
/// (`Precision::Fast`); dense weights (`Precision::F32`) always use f32 gemm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BaseMatmul {
    /// `matmul_q` with Q8-quantized activations: the very function the fast inference pass
    /// computes, so training and generation see the same model.
    #[default]
    Quantized,
    /// Decode the matrix into a scratch buffer and use f32 gemm: f32 activations (the
    /// reference arithmetic on the quantized weights), and faster than `matmul_q` once T is in
    /// the hundreds, as in training; the decoded copy lives for one product.
    Decoded,
}

/// smolt-model's projection, borrowed: quantized rows are read from the mmap.
struct ModelLinear<'a> {
    lin: &'a Linear,
    matmul: BaseMatmul,
}

impl FrozenLinear<f32> for ModelLinear<'_> {
    fn shape(&self) -> (usize, usize) {
        (self.lin.out_features, self.lin.in_features)
    }

    fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        if self.matmul == BaseMatmul::Decoded && self.lin.is_quantized() {
            let (out, inp) = self.shape();
            let mut scratch = Vec::new();
            let w = self.rows(0, out, &mut scratch);
            matmul_nt(x, w, t, inp, out, y, false);
        } else {
            self.lin.forward(x, t, y);
        }
    }

    fn rows<'s>(&'s self, r0: usize, r1: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        let inp = self.lin.in_features;
        if !self.lin.is_quantized() {
            if let std::borrow::Cow::Borrowed(w) = self.lin.dequantized() {
                return &w[r0 * inp..r1 * inp];
            }
        }
        use rayon::prelude::*;
        scratch.clear();
        scratch.resize((r1 - r0) * inp, 0.0);
        scratch
            .par_chunks_mut(inp)
            .enumerate()
            .for_each(|(i, row)| self.lin.row(r0 + i, row));
        scratch
    }

    fn rows_into(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let inp = self.lin.in_features;
        assert_eq!(out.len(), (r1 - r0) * inp, "out is not (r1 - r0, in)");
        for (i, row) in out.chunks_mut(inp).enumerate() {
            self.lin.row(r0 + i, row);
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
        Frozen::from_model_with(m, BaseMatmul::Quantized)
    }

    /// [`Frozen::from_model`] with a choice of forward product for quantized weights.
    pub fn from_model_with(m: &'a Model, matmul: BaseMatmul) -> Frozen<'a, f32> {
        let lin = |l: &'a Linear| -> Box<dyn FrozenLinear<f32> + 'a> {
            Box::new(ModelLinear { lin: l, matmul })
        };
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
