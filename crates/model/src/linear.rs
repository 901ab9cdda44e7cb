//! A linear projection over a frozen base weight: `y (T, out) = x (T, in) · Wᵀ`.
//!
//! The base weight stays what the file holds (quantized blocks read straight from the mmap) for
//! [`Precision::Fast`], or becomes an f32 copy for [`Precision::F32`]. A LoRA adapter will sit
//! beside the base here: `y = W·x + s·B·(A·x)`, with only `A` and `B` trainable; the base product
//! is [`Linear::forward`] and the adapter's term is added to its output.

use crate::error::{ModelError, Result};
use crate::Precision;
use smolt_gguf::{GgmlType, Gguf, TensorInfo};
use smolt_quant::{DecodePacked, PanelPacked, QMatrix};
use std::sync::{Arc, OnceLock};

/// The frozen weight of a [`Linear`], `(out, in)` row-major as in GGUF and PyTorch.
enum BaseWeight {
    /// Dequantized once at load: the reference arithmetic (gemm in f32).
    Dense(Vec<f32>),
    /// The file's quantized rows, borrowed from the mmap on every call; for decode-sized
    /// products (fewer than [`DecodePacked::MAX_ROWS`] rows) a Q5_0, Q8_0 or Q4_K weight is
    /// re-laid out once, on first use, into the layout its one-row kernel reads fastest (the
    /// same bytes, Q4_K's scales unpacked; the same results); the file's pages of that matrix
    /// are then released from the resident set.
    Quantized {
        file: Arc<Gguf>,
        info: TensorInfo,
        decode: OnceLock<Option<DecodePacked>>,
        /// The int8 panels, packed on the first product of 4 rows or more once
        /// [`Linear::keep_panels`] asked for them (a server's batched steps).
        panels: OnceLock<Option<PanelPacked>>,
    },
}

/// A projection `in → out` (GGUF dims `[in, out]`).
pub struct Linear {
    /// The GGUF tensor name, for error messages and for naming adapters after it.
    pub name: String,
    /// Output features (GGUF ne1).
    pub out_features: usize,
    /// Input features (GGUF ne0).
    pub in_features: usize,
    /// The file's storage type (what `Fast` computes on).
    pub ty: GgmlType,
    base: BaseWeight,
    /// Whether products of several rows keep this weight's panels packed (`keep_panels`).
    keep_panels: bool,
    /// A LoRA adapter's term, added to every product at inference: `y += s·B·(A·x)`.
    lora: Option<LoraDelta>,
}

/// The trained low-rank update of one projection. Kept apart from the frozen base (not merged)
/// so that the base stays quantized and adapters can be swapped without reloading.
pub struct LoraDelta {
    /// `(r, in)`.
    pub a: Vec<f32>,
    /// `(out, r)`.
    pub b: Vec<f32>,
    pub rank: usize,
    /// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub scale: f32,
    /// `Bᵀ (r, out)`, made on first use by the row-by-row path: `B·u` as `r` whole-row
    /// `axpy`s instead of `out` dot products of length `r`.
    bt: std::sync::OnceLock<Vec<f32>>,
}

/// Rows up to which a LoRA term is two matrix-vector products per row instead of two gemm
/// calls: decode's one row and a served batch's few per adapter. With the gemm crate (which
/// packs its right operand on every call) the term cost 6.7 ms per decoded token of Gemma 3
/// 270M (126 projections; 53 → 39 tok/s), as much as a third of the base model's pass.
pub(crate) const LORA_ROWS_BY_ROW: usize = 8;

impl LoraDelta {
    /// The term `s · B · A` with `a (r, in)`, `b (out, r)`.
    pub fn new(a: Vec<f32>, b: Vec<f32>, rank: usize, scale: f32) -> LoraDelta {
        LoraDelta {
            a,
            b,
            rank,
            scale,
            bt: std::sync::OnceLock::new(),
        }
    }

    /// `y (t, out) += s · (x (t, in) · Aᵀ) · Bᵀ`: two thin products, r ≪ in, out.
    pub fn add_to(&self, x: &[f32], t: usize, y: &mut [f32]) {
        let (inp, out) = (self.a.len() / self.rank, self.b.len() / self.rank);
        if t <= LORA_ROWS_BY_ROW {
            let bt = self.bt.get_or_init(|| {
                let mut bt = vec![0f32; self.b.len()];
                for (o, br) in self.b.chunks_exact(self.rank).enumerate() {
                    for (j, &v) in br.iter().enumerate() {
                        bt[j * out + o] = v;
                    }
                }
                bt
            });
            let mut ax = vec![0f32; self.rank];
            for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
                ax.fill(0.0);
                smolt_kernels::float::matvec_acc(&self.a, xr, self.scale, &mut ax);
                smolt_kernels::float::rows_combination_acc(bt, &ax, yr);
            }
            return;
        }
        let mut ax = vec![0f32; t * self.rank];
        smolt_kernels::matmul_nt(x, &self.a, t, inp, self.rank, &mut ax, false);
        ax.iter_mut().for_each(|v| *v *= self.scale);
        smolt_kernels::matmul_nt(&ax, &self.b, t, self.rank, out, y, true);
    }
}

impl Linear {
    /// Binds `info` as an `in → out` projection. Float weights (F32/F16/BF16) are always expanded
    /// to f32 (gemm is the fast path for them); block-quantized ones are kept as they are unless
    /// `precision` is `F32`.
    pub(crate) fn bind(
        file: &Arc<Gguf>,
        info: &TensorInfo,
        precision: Precision,
    ) -> Result<Linear> {
        let (in_features, out_features) = (info.row_len(), info.n_rows());
        let dense = precision == Precision::F32
            || matches!(info.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        let base = if dense {
            let q = qmatrix(file.tensor_data(info), info)?;
            let mut w = vec![0f32; out_features * in_features];
            smolt_quant::dequantize_matrix(&q, &mut w).map_err(|e| quant_err(&info.name, e))?;
            BaseWeight::Dense(w)
        } else {
            // Validate once here so a bad tensor fails at load, not mid-generation.
            qmatrix(file.tensor_data(info), info)?;
            BaseWeight::Quantized {
                file: Arc::clone(file),
                info: info.clone(),
                decode: OnceLock::new(),
                panels: OnceLock::new(),
            }
        };
        Ok(Linear {
            name: info.name.clone(),
            out_features,
            in_features,
            ty: info.ty,
            base,
            keep_panels: false,
            lora: None,
        })
    }

    /// From now on, products of [`PanelPacked::MIN_ROWS`] rows or more run on this weight's
    /// int8 panels packed once (on the first such product) instead of packed again at every
    /// product: about one more byte per weight, for callers that run many small batches (a
    /// server decoding a few sequences per step, where packing was over half the work). The
    /// same numbers bit for bit; no effect on dense weights or where the CPU has no panels.
    pub fn keep_panels(&mut self) {
        self.keep_panels = true;
    }

    /// Attach (or with `None` remove) a LoRA term; shapes are checked against this projection.
    pub fn set_lora(&mut self, lora: Option<LoraDelta>) -> Result<()> {
        if let Some(d) = &lora {
            if d.rank == 0
                || d.a.len() != d.rank * self.in_features
                || d.b.len() != self.out_features * d.rank
            {
                return Err(ModelError::Adapter(format!(
                    "{}: LoRA A has {} values and B {} for rank {}, expected A ({}, {}) and B ({}, {})",
                    self.name,
                    d.a.len(),
                    d.b.len(),
                    d.rank,
                    d.rank,
                    self.in_features,
                    self.out_features,
                    d.rank
                )));
            }
        }
        self.lora = lora;
        Ok(())
    }

    pub fn lora(&self) -> Option<&LoraDelta> {
        self.lora.as_ref()
    }

    /// `y (t, out) = x (t, in) · Wᵀ`. `Fast` quantizes each row of `x` to the weight's
    /// `vec_dot_type` (Q8_0 / Q8_K) inside the product, as llama.cpp does.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        assert_eq!(
            x.len(),
            t * self.in_features,
            "{}: x is not (T, {})",
            self.name,
            self.in_features
        );
        assert_eq!(
            y.len(),
            t * self.out_features,
            "{}: y is not (T, {})",
            self.name,
            self.out_features
        );
        match &self.base {
            BaseWeight::Dense(w) => {
                smolt_kernels::matmul_nt(x, w, t, self.in_features, self.out_features, y, false)
            }
            BaseWeight::Quantized {
                file,
                info,
                decode,
                panels,
            } => {
                // Shapes were validated at bind and asserted above, so this cannot fail.
                let q = QMatrix {
                    ty: info.ty,
                    rows: self.out_features,
                    cols: self.in_features,
                    data: file.tensor_data(info),
                };
                // `DecodePacked::pack` decides which types have a decode layout (None, kept,
                // for the others).
                let packed = (t < DecodePacked::MAX_ROWS)
                    .then(|| {
                        decode
                            .get_or_init(|| {
                                // The copy serves every decode step from now on: the file's
                                // pages of this matrix need not stay resident beside it, and go
                                // as they are copied.
                                DecodePacked::pack_releasing(&q, |start, len| {
                                    file.release_tensor_bytes(info, start, len)
                                })
                            })
                            .as_ref()
                    })
                    .flatten();
                let panels = (self.keep_panels && t >= PanelPacked::MIN_ROWS)
                    .then(|| panels.get_or_init(|| PanelPacked::pack(&q)).as_ref())
                    .flatten();
                match (packed, panels) {
                    (Some(p), _) => p.matmul(x, t, y),
                    (None, Some(p)) => p.matmul(x, t, y),
                    (None, None) => smolt_quant::matmul_q(&q, x, t, y),
                }
                .expect("quantized matmul on validated shapes");
            }
        }
        if let Some(d) = &self.lora {
            d.add_to(x, t, y);
        }
    }

    /// `y[i] = x · W[rows[i]]` for one input row: the same products [`Linear::forward`]
    /// computes for those output features, bit for bit, at a cost proportional to
    /// `rows.len()` for quantized weights (dense ones compute the whole product). Constrained
    /// decoding uses it to score only the tokens a grammar allows.
    ///
    /// The selected quantized rows are gathered into a smaller matrix and run through the same
    /// matrix-vector kernel, whose per-row arithmetic does not depend on the other rows; the
    /// model tests check the bit-equality. A LoRA term, if any, is added as `forward` adds it
    /// (equal to rounding there: its thin products are summed in gemm's width-dependent order).
    pub fn forward_rows(&self, x: &[f32], rows: &[u32], y: &mut [f32]) {
        assert_eq!(x.len(), self.in_features, "{}: x is not one row", self.name);
        assert_eq!(y.len(), rows.len(), "{}: y does not match rows", self.name);
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= self.out_features) {
            panic!("{}: row {bad} of {}", self.name, self.out_features);
        }
        if rows.is_empty() {
            return;
        }
        let k = self.in_features;
        match &self.base {
            BaseWeight::Dense(_) => {
                // gemm's summation order depends on the matrix width, so a narrower product
                // would not be bit-identical: the dense (reference) path computes every row.
                let mut all = vec![0f32; self.out_features];
                self.forward(x, 1, &mut all);
                for (o, &r) in y.iter_mut().zip(rows) {
                    *o = all[r as usize];
                }
                return;
            }
            BaseWeight::Quantized { file, info, .. } => {
                let full = QMatrix {
                    ty: info.ty,
                    rows: self.out_features,
                    cols: k,
                    data: file.tensor_data(info),
                };
                let rb = full.row_bytes();
                let mut bytes = vec![0u8; rows.len() * rb];
                for (dst, &r) in bytes.chunks_mut(rb).zip(rows) {
                    dst.copy_from_slice(full.row(r as usize));
                }
                let sub = QMatrix {
                    ty: info.ty,
                    rows: rows.len(),
                    cols: k,
                    data: &bytes,
                };
                smolt_quant::matmul_q(&sub, x, 1, y).expect("rows of a validated matrix");
            }
        }
        if let Some(d) = &self.lora {
            // As `LoraDelta::add_to` computes one row: the same sums, for the chosen rows.
            let mut ax = vec![0f32; d.rank];
            smolt_kernels::float::matvec_acc(&d.a, &x[..k], d.scale, &mut ax);
            for (o, &r) in y.iter_mut().zip(rows) {
                let br = &d.b[r as usize * d.rank..][..d.rank];
                smolt_kernels::float::matvec_acc(br, &ax, 1.0, std::slice::from_mut(o));
            }
        }
    }

    /// Row `r` of W as f32 (`in` values): the embedding lookup when W is a token table.
    pub fn row(&self, r: usize, out: &mut [f32]) {
        assert!(
            r < self.out_features,
            "{}: row {r} of {}",
            self.name,
            self.out_features
        );
        assert_eq!(out.len(), self.in_features);
        match &self.base {
            BaseWeight::Dense(w) => {
                out.copy_from_slice(&w[r * self.in_features..][..self.in_features])
            }
            BaseWeight::Quantized { file, info, .. } => {
                let q = QMatrix {
                    ty: info.ty,
                    rows: self.out_features,
                    cols: self.in_features,
                    data: file.tensor_data(info),
                };
                smolt_quant::dequantize_row(info.ty, q.row(r), out)
                    .expect("row of a validated matrix");
            }
        }
    }

    /// The whole of W as f32 `(out, in)`, dequantized into a new buffer if it is not dense
    /// already: what a backward pass needs for `dX = dY·W` one layer at a time.
    pub fn dequantized(&self) -> std::borrow::Cow<'_, [f32]> {
        match &self.base {
            BaseWeight::Dense(w) => std::borrow::Cow::Borrowed(w),
            BaseWeight::Quantized { file, info, .. } => {
                let q = QMatrix {
                    ty: info.ty,
                    rows: self.out_features,
                    cols: self.in_features,
                    data: file.tensor_data(info),
                };
                let mut w = vec![0f32; self.out_features * self.in_features];
                smolt_quant::dequantize_matrix(&q, &mut w).expect("validated matrix");
                std::borrow::Cow::Owned(w)
            }
        }
    }

    /// True when the base is held quantized (the `Fast` path).
    pub fn is_quantized(&self) -> bool {
        matches!(self.base, BaseWeight::Quantized { .. })
    }

    /// The quantized base as stored in the file (`out × in`), borrowed; `None` when dense.
    pub fn quantized(&self) -> Option<QMatrix<'_>> {
        match &self.base {
            BaseWeight::Dense(_) => None,
            BaseWeight::Quantized { file, info, .. } => Some(QMatrix {
                ty: info.ty,
                rows: self.out_features,
                cols: self.in_features,
                data: file.tensor_data(info),
            }),
        }
    }
}

fn qmatrix<'a>(data: &'a [u8], info: &TensorInfo) -> Result<QMatrix<'a>> {
    QMatrix::new(info.ty, info.n_rows(), info.row_len(), data).map_err(|e| quant_err(&info.name, e))
}

fn quant_err(name: &str, source: smolt_quant::QuantError) -> ModelError {
    ModelError::Quant {
        name: name.to_string(),
        source,
    }
}

/// Reads a 1-D norm weight as f32, whatever float type the file stores it in.
pub(crate) fn read_vector(file: &Gguf, info: &TensorInfo) -> Result<Vec<f32>> {
    let n = info.n_elements() as usize;
    let mut v = vec![0f32; n];
    smolt_quant::dequantize_row(info.ty, file.tensor_data(info), &mut v)
        .map_err(|e| quant_err(&info.name, e))?;
    Ok(v)
}
