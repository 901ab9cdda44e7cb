//! The frozen base model as the training pass sees it: projections that can multiply forward
//! and hand out their rows for the backward, without the backward ever holding more than one
//! dequantized matrix.

use crate::attention::{self, AttentionMath};
use crate::config::Target;
use smolt_kernels::bf16::{
    accelerated, amx_enabled, bf16_to_f32, f32_to_bf16, gemm_bf16, gemm_bf16_strided,
    pack_rows_into, pack_w_into, pack_w_q8_0_into, BfRows, PackScratch, PackedB,
};
use smolt_kernels::{matmul_nn, matmul_nt, ChunkProducts, Float};
use smolt_model::{ArchSpec, BlockVectors, Linear, Model};
use smolt_quant::{rows_available, GgmlType, QuantizedRows, RowsScratch};

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

    /// `dx (t, in) += dy (t, out) · W`: the input gradient. By default the rows of `W`,
    /// decoded into `scratch`, and f32 gemm.
    fn backward(&self, dy: &[F], t: usize, dx: &mut [F], scratch: &mut Vec<F>) {
        let (out, inp) = self.shape();
        let w = self.rows(0, out, scratch);
        matmul_nn(dy, w, t, out, inp, dx, true);
    }

    /// The LM head fused with the cross-entropy, when this weight brings its own (the bf16
    /// head); `None` means: use [`crate::linear_cross_entropy`]'s chunks of `rows_into`.
    /// Same contract as [`crate::linear_cross_entropy`].
    fn cross_entropy(
        &self,
        _h: &[F],
        _targets: &[u32],
        _grad_scale: F,
        _dh: Option<&mut [F]>,
    ) -> Option<f64> {
        None
    }
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
    /// Every projection decoded once and kept in bf16, packed for Intel AMX (`tdpbf16ps`, f32
    /// accumulation; AVX-512 BF16's `vdpbf16ps` reads the same packing) in both directions (forward
    /// `x·Wᵀ`, backward `dY·W`): about 4 bytes per projection parameter (≈ 0.4 GB for Gemma 3
    /// 270M), built at load. The LM head is packed the same way, chunk by chunk during each call,
    /// or kept packed too (≈ 0.7 GB more for Gemma's tied table): see [`HeadCache`]. The
    /// activations are rounded to bf16 per product, so this is NOT the reference arithmetic: the
    /// tests bound its loss and gradient against [`BaseMatmul::Decoded`]. The head's logits use
    /// the int8 arithmetic of inference instead where AVX-512 VNNI runs without AMX (see
    /// `Bf16Head`; `SMOLT_HEAD_INT8=0` keeps them in bf16). Attention's products
    /// (scores, probabilities times values, and their gradients) run in bf16 too
    /// ([`crate::attention::Bf16`]). Without either the same bf16 values go through f32 gemm
    /// (correct, but slower than `Decoded`); see [`smolt_kernels::bf16::accelerated`].
    Bf16,
}

/// Whether [`BaseMatmul::Bf16`]'s LM head keeps its bf16 packings resident (ignored by the
/// other modes, whose head always decodes chunk by chunk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadCache {
    /// Each vocabulary chunk decoded from the file and packed at each call, into scratch:
    /// nothing resident.
    #[default]
    Lean,
    /// Every chunk packed once at load, both ways: ≈ 4 bytes per head parameter (≈ 670 MB for
    /// Gemma 3's tied 262,144 × 640 table), saving the per-call decode. Same numbers.
    Resident,
}

/// smolt-model's projection, borrowed: quantized rows are read from the mmap.
#[derive(Clone, Copy)]
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
        let _p = crate::prof::span(crate::prof::Phase::Decode);
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
        let _p = crate::prof::span(crate::prof::Phase::Decode);
        for (i, row) in out.chunks_mut(inp).enumerate() {
            self.lin.row(r0 + i, row);
        }
    }
}

/// A projection held in bf16 in both packings ([`BaseMatmul::Bf16`]); its rows (the token
/// table's lookups) still decode exactly from the file.
struct Bf16Linear<'a> {
    lin: ModelLinear<'a>,
    /// `Wᵀ (in, out)`: the forward's operand.
    fwd: PackedB,
    /// `W (out, in)`: the backward's operand.
    bwd: PackedB,
}

impl<'a> Bf16Linear<'a> {
    fn new(lin: ModelLinear<'a>) -> Self {
        let (out, inp) = lin.shape();
        let mut scratch = Vec::new();
        let w = lin.rows(0, out, &mut scratch);
        Bf16Linear {
            fwd: PackedB::from_rows_transposed(w, out, inp),
            bwd: PackedB::from_rows(out, inp, |i, o| o.copy_from_slice(&w[i * inp..][..inp])),
            lin,
        }
    }
}

impl FrozenLinear<f32> for Bf16Linear<'_> {
    fn shape(&self) -> (usize, usize) {
        self.lin.shape()
    }

    fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        let (out, inp) = self.shape();
        assert_eq!(y.len(), t * out, "y is not (t, out)");
        gemm_bf16(&BfRows::from_f32(x, t, inp, 1.0), &self.fwd, y, false, true);
    }

    fn rows<'s>(&'s self, r0: usize, r1: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        self.lin.rows(r0, r1, scratch)
    }

    fn rows_into(&self, r0: usize, r1: usize, out: &mut [f32]) {
        self.lin.rows_into(r0, r1, out)
    }

    fn backward(&self, dy: &[f32], t: usize, dx: &mut [f32], _scratch: &mut Vec<f32>) {
        let (out, inp) = self.shape();
        assert_eq!(dx.len(), t * inp, "dx is not (t, in)");
        gemm_bf16(
            &BfRows::from_f32(dy, t, out, 1.0),
            &self.bwd,
            dx,
            true,
            true,
        );
    }
}

/// The LM head (the token table, when tied) in bf16, chunk by chunk of [`crate::CHUNK`]
/// vocabulary rows, both packings per chunk; lookups and the forward stay exact.
///
/// Lean (the default): no copy is kept. Each call decodes every chunk's rows from the file's
/// encoding (Q8_0 for Gemma's token table) once, into its vocabulary group's scratch, packed
/// both ways as they come (`pack_rows_into`: rounded once, 32 rows at a time): the logits'
/// packing a slice of [`SLICE`] rows at a time, used at once, the gradient's for the whole
/// chunk, used after the chunk's softmax. The scratch is ≈ 2.8 MB per group in flight (at
/// d = 640), against ≈ 670 MB resident for Gemma's 262,144 × 640 table.
///
/// Resident: both packings of every chunk built once at load. The same values bit for bit
/// (same rounding of the same decoded rows, same products in the same order), without the
/// per-call decode.
///
/// Int8 logits (both modes, where the CPU has AVX-512 VNNI but no AMX): the forward logits
/// come from the file's quantized rows and `h` quantized to 8 bits per 32-block, the
/// arithmetic of inference (`smolt_quant::QuantizedRows`, exact integer block sums), at
/// ≈ 1.3× the rate of the bf16 products here; the gradient's product stays bf16. Without
/// them (or with `SMOLT_HEAD_INT8=0`) the logits are bf16 products too.
struct Bf16Head<'a> {
    lin: ModelLinear<'a>,
    /// Per chunk: `E_chunkᵀ (d, len)` for the logits (none with int8 logits), `E_chunk (len, d)`
    /// for the gradient; `None`: lean.
    chunks: Option<Vec<(Option<PackedB>, PackedB)>>,
    int8: bool,
}

/// Whether the head's logits take the int8 path: the quantized panels run here for the head's
/// type, and AMX (whose bf16 tiles outrun them) does not.
fn int8_logits(lin: &Linear) -> bool {
    let off = std::env::var("SMOLT_HEAD_INT8").is_ok_and(|v| v == "0");
    !off && !amx_enabled() && lin.quantized().is_some_and(|q| rows_available(q.ty))
}

impl<'a> Bf16Head<'a> {
    fn new(lin: ModelLinear<'a>, resident: bool) -> Self {
        let (vocab, d) = lin.shape();
        let int8 = int8_logits(lin.lin);
        let mut scratch = Vec::new();
        let chunks = resident.then(|| {
            (0..vocab)
                .step_by(crate::CHUNK)
                .map(|v0| {
                    let v1 = (v0 + crate::CHUNK).min(vocab);
                    let e = lin.rows(v0, v1, &mut scratch);
                    (
                        (!int8).then(|| PackedB::from_rows_transposed(e, v1 - v0, d)),
                        PackedB::from_rows(v1 - v0, d, |i, o| o.copy_from_slice(&e[i * d..][..d])),
                    )
                })
                .collect()
        });
        Bf16Head { lin, chunks, int8 }
    }
}

/// The head's chunk products for one call: `h` rounded to bf16 once (for the bf16 logits) or
/// quantized once (for the int8 ones).
struct Bf16Chunks<'h> {
    head: &'h Bf16Head<'h>,
    h: BfRows,
    hq: Option<QuantizedRows>,
    n: usize,
    /// Whether `accumulate` will be called: the lean head packs the backward operand only then.
    want_grad: bool,
}

/// A vocabulary group's scratch for the lean head: the current chunk's two packings.
struct ChunkScratch {
    fwd: PackedB,
    bwd: PackedB,
    pack: PackScratch,
    rows: RowsScratch,
}

/// Vocabulary rows the lean head packs for the logits at a time: the forward packing of a
/// slice (`SLICE × d` bf16, 160 KB at d = 640) is used while it is in cache, instead of the
/// whole chunk's (2.6 MB) going out to memory and back. Only the backward packing, which is
/// used after the chunk's softmax, spans the chunk.
const SLICE: usize = 128;

impl ChunkProducts<f32> for Bf16Chunks<'_> {
    type Scratch = ChunkScratch;
    fn scratch(&self) -> ChunkScratch {
        ChunkScratch {
            fwd: PackedB::empty(),
            bwd: PackedB::empty(),
            pack: PackScratch::default(),
            rows: RowsScratch::default(),
        }
    }
    fn logits(&self, s: &mut ChunkScratch, v0: usize, v1: usize, l: &mut [f32]) {
        if let Some(hq) = &self.hq {
            let (len, d) = (v1 - v0, self.head.lin.lin.in_features);
            let q = self
                .head
                .lin
                .lin
                .quantized()
                .expect("int8 logits need quantized rows");
            if self.want_grad && self.head.chunks.is_none() {
                // Gemma's table is Q8_0: packed straight from its bytes where the CPU can,
                // the same values as through the decoded rows (head_bench, one thread, the
                // whole table: 50 → 42 ms).
                let rb = q.row_bytes();
                let direct = q.ty == GgmlType::Q8_0 && {
                    let _p = crate::prof::span(crate::prof::Phase::Decode);
                    pack_w_q8_0_into(&q.data[v0 * rb..v1 * rb], len, d, &mut s.bwd)
                };
                if !direct {
                    let lin = &self.head.lin;
                    pack_w_into(
                        len,
                        d,
                        |a, b, out| lin.rows_into(v0 + a, v0 + b, out),
                        &mut s.bwd,
                        &mut s.pack,
                    );
                }
            }
            hq.matmul_rows(&q, v0, v1, l, len, &mut s.rows)
                .expect("the head's rows and the chunk's logits agree in shape");
            return;
        }
        let Some(chunks) = &self.head.chunks else {
            // Lean: decode the chunk here, packed both ways (`accumulate` follows), a slice
            // of rows at a time for the logits. Without bf16 hardware the fallback's f32 gemm
            // might sum a narrower product in another order: one slice, as the resident head.
            let (len, d) = (v1 - v0, self.head.lin.lin.in_features);
            let slice = if accelerated() { SLICE } else { len };
            if self.want_grad {
                s.bwd.reshape(len, d);
            }
            for r0 in (0..len).step_by(slice) {
                let r1 = (r0 + slice).min(len);
                let lin = &self.head.lin;
                pack_rows_into(
                    r1 - r0,
                    d,
                    |a, b, out| lin.rows_into(v0 + r0 + a, v0 + r0 + b, out),
                    &mut s.fwd,
                    self.want_grad.then_some((&mut s.bwd, r0)),
                    &mut s.pack,
                );
                gemm_bf16_strided(&self.h, &s.fwd, &mut l[r0..], len, false, false);
            }
            return;
        };
        let fwd = chunks[v0 / crate::CHUNK].0.as_ref();
        gemm_bf16(
            &self.h,
            fwd.expect("packed without int8 logits"),
            l,
            false,
            false,
        );
    }
    fn accumulate(&self, s: &mut ChunkScratch, v0: usize, v1: usize, p: &[f32], acc: &mut [f32]) {
        let bwd = match &self.head.chunks {
            Some(c) => &c[v0 / crate::CHUNK].1,
            None => &s.bwd,
        };
        let p = BfRows::from_f32(p, self.n, v1 - v0, 1.0);
        gemm_bf16(&p, bwd, acc, true, false);
    }
    fn approx_exp(&self) -> bool {
        true
    }
    fn row(&self, t: usize, out: &mut [f32]) {
        match &self.head.chunks {
            Some(c) => {
                let (_, bwd) = &c[t / crate::CHUNK];
                for (c, o) in out.iter_mut().enumerate() {
                    *o = bwd.get(t % crate::CHUNK, c);
                }
            }
            None => {
                // What the packings hold: the decoded row rounded to bf16.
                self.head.lin.rows_into(t, t + 1, out);
                out.iter_mut()
                    .for_each(|o| *o = bf16_to_f32(f32_to_bf16(*o)));
            }
        }
    }
}

impl FrozenLinear<f32> for Bf16Head<'_> {
    fn shape(&self) -> (usize, usize) {
        self.lin.shape()
    }

    fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        self.lin.forward(x, t, y)
    }

    fn rows<'s>(&'s self, r0: usize, r1: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        self.lin.rows(r0, r1, scratch)
    }

    fn rows_into(&self, r0: usize, r1: usize, out: &mut [f32]) {
        self.lin.rows_into(r0, r1, out)
    }

    fn cross_entropy(
        &self,
        h: &[f32],
        targets: &[u32],
        grad_scale: f32,
        dh: Option<&mut [f32]>,
    ) -> Option<f64> {
        let (vocab, d) = self.shape();
        let n = targets.len();
        if n == 0 {
            return Some(0.0);
        }
        let hq = self
            .int8
            .then(|| QuantizedRows::new(self.lin.lin.ty, h, n, d))
            .flatten();
        let products = Bf16Chunks {
            head: self,
            h: if hq.is_some() {
                BfRows::from_f32(&[], 0, d, 1.0)
            } else {
                BfRows::from_f32(h, n, d, 1.0)
            },
            hq,
            n,
            want_grad: dh.is_some(),
        };
        // The kernel differentiates the MEAN over the n rows: scale by n for the sum's gradient.
        let scale = grad_scale * n as f32;
        let mean = smolt_kernels::linear_cross_entropy_with(
            &products,
            n,
            targets,
            d,
            vocab,
            crate::CHUNK,
            dh,
            scale,
        );
        Some(mean as f64 * n as f64)
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
    /// q, k, v biases `(nh·hd)`, `(nkv·hd)`, `(nkv·hd)`, if `spec.qkv_bias`.
    pub qkv_bias: Option<[Vec<F>; 3]>,
    /// The seven projections indexed by [`Target::index`].
    pub proj: [Box<dyn FrozenLinear<F> + 'a>; 7],
}

impl<'a, F: Float> FrozenBlock<'a, F> {
    pub fn proj(&self, t: Target) -> &(dyn FrozenLinear<F> + 'a) {
        &*self.proj[t.index()]
    }

    /// The norms and biases, as the shared block reads them.
    pub fn vectors(&self) -> BlockVectors<'_, F> {
        BlockVectors {
            attn_norm: &self.attn_norm,
            qkv_bias: self
                .qkv_bias
                .as_ref()
                .map(|[q, k, v]| [&q[..], &k[..], &v[..]]),
            q_norm: self.q_norm.as_deref(),
            k_norm: self.k_norm.as_deref(),
            post_attn_norm: self.post_attn_norm.as_deref(),
            ffn_norm: &self.ffn_norm,
            post_ffn_norm: self.post_ffn_norm.as_deref(),
        }
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
    /// How attention's products are computed: exactly in `F`, or in bf16 with the bf16 base.
    pub attention: Box<dyn AttentionMath<F>>,
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
        Frozen::from_model_with_head(m, matmul, HeadCache::default())
    }

    /// [`Frozen::from_model_with`] with a choice of what the bf16 head keeps resident.
    pub fn from_model_with_head(
        m: &'a Model,
        matmul: BaseMatmul,
        head_cache: HeadCache,
    ) -> Frozen<'a, f32> {
        let lin = |l: &'a Linear| -> Box<dyn FrozenLinear<f32> + 'a> {
            let ml = ModelLinear {
                lin: l,
                matmul: BaseMatmul::Decoded,
            };
            match matmul {
                BaseMatmul::Bf16 => Box::new(Bf16Linear::new(ml)),
                _ => Box::new(ModelLinear { lin: l, matmul }),
            }
        };
        let head = |l: &'a Linear| -> Box<dyn FrozenLinear<f32> + 'a> {
            let ml = ModelLinear { lin: l, matmul };
            match matmul {
                BaseMatmul::Bf16 => Box::new(Bf16Head::new(ml, head_cache == HeadCache::Resident)),
                _ => Box::new(ml),
            }
        };
        Frozen {
            spec: m.spec.clone(),
            // The token table doubles as the head when tied.
            embed: if m.output.is_some() {
                Box::new(ModelLinear {
                    lin: &m.token_embd,
                    matmul,
                })
            } else {
                head(&m.token_embd)
            },
            output: m.output.as_ref().map(head),
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
                    qkv_bias: b
                        .qkv_bias
                        .as_ref()
                        .map(|q| [q.q.clone(), q.k.clone(), q.v.clone()]),
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
            attention: match matmul {
                BaseMatmul::Bf16 => Box::new(attention::Bf16),
                _ => Box::new(attention::Exact),
            },
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
                    qkv_bias: b
                        .qkv_bias
                        .as_ref()
                        .map(|q| [cast(&q.q), cast(&q.k), cast(&q.v)]),
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
            attention: Box::new(attention::Exact),
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
