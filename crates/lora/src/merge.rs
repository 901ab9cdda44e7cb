//! The base with an adapter merged in, as a complete GGUF that llama.cpp, Ollama and smolt load
//! as a plain model: each adapted weight becomes `W + s·B·A` (dequantized, added in f32,
//! requantized with smolt's quantizers); every other tensor and all metadata are copied, and
//! the metadata records what was merged.

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use smolt_gguf::{GgmlType, Gguf, GgufWriter, TensorInfo, Value};

use crate::config::Target;
use crate::weights::AdapterWeights;

/// The storage types of the merged file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeTypes {
    /// Every tensor keeps the base file's type.
    Same,
    /// Every 2-D weight in this type (1-D tensors stay as they are).
    All(GgmlType),
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the LM head and for `attn_v` / `ffn_down`
    /// in the layers `llama-quantize` favours.
    Q4KM,
}

impl std::str::FromStr for MergeTypes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "SAME" => Ok(MergeTypes::Same),
            "Q4_K_M" => Ok(MergeTypes::Q4KM),
            "Q8_0" => Ok(MergeTypes::All(GgmlType::Q8_0)),
            "F16" => Ok(MergeTypes::All(GgmlType::F16)),
            "BF16" => Ok(MergeTypes::All(GgmlType::BF16)),
            "F32" => Ok(MergeTypes::All(GgmlType::F32)),
            _ => Err(format!(
                "unknown type `{s}`: use same, Q4_K_M, Q8_0, F16, BF16 or F32"
            )),
        }
    }
}

impl MergeTypes {
    /// llama.cpp's `general.file_type` for the mix (`None`: keep the base's).
    fn file_type(self) -> Option<u32> {
        match self {
            MergeTypes::Same => None,
            MergeTypes::Q4KM => Some(15),
            MergeTypes::All(GgmlType::F32) => Some(0),
            MergeTypes::All(GgmlType::F16) => Some(1),
            MergeTypes::All(GgmlType::Q8_0) => Some(7),
            MergeTypes::All(GgmlType::BF16) => Some(32),
            MergeTypes::All(_) => None,
        }
    }

    /// The type tensor `info` gets, in a model of `n_layers` layers that has (or not) its own
    /// `output.weight`.
    pub fn type_of(self, info: &TensorInfo, n_layers: usize, has_output: bool) -> GgmlType {
        if info.dims.len() < 2 {
            // Norms, biases and other vectors stay as they are (f32 in practice).
            return info.ty;
        }
        self.pick(info, n_layers, has_output)
    }

    fn pick(self, info: &TensorInfo, n_layers: usize, has_output: bool) -> GgmlType {
        let want = match self {
            MergeTypes::Same => return info.ty,
            MergeTypes::All(t) => t,
            MergeTypes::Q4KM => q4_k_m_type(&info.name, n_layers, has_output),
        };
        fallback(want, info.row_len())
    }
}

/// `llama-quantize`'s choice for Q4_K_M (`llama_tensor_get_type`, the rules that apply to the
/// dense models smolt runs).
fn q4_k_m_type(name: &str, n_layers: usize, has_output: bool) -> GgmlType {
    // Past the first test, i >= n/8: the subtraction cannot underflow.
    let more_bits = |i: usize, n: usize| i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, _)| l.parse::<usize>().ok());
    if name == "output.weight" || (!has_output && name == "token_embd.weight") {
        return GgmlType::Q6K;
    }
    match layer {
        Some(i) if name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight") => {
            if more_bits(i, n_layers) {
                GgmlType::Q6K
            } else {
                GgmlType::Q4K
            }
        }
        _ => GgmlType::Q4K,
    }
}

/// The type `llama-quantize` falls back to when a row is not a whole number of `want`'s blocks.
fn fallback(want: GgmlType, row_len: usize) -> GgmlType {
    if row_len.is_multiple_of(want.block_size()) {
        return want;
    }
    let next = match want {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    fallback(next, row_len)
}

/// What one merge did, for the command's report.
#[derive(Clone, Debug, Default)]
pub struct MergeReport {
    /// Weights the adapter was added to.
    pub merged: usize,
    /// Other tensors stored in a new type.
    pub requantized: usize,
    /// Tensors copied byte for byte.
    pub copied: usize,
    /// Quants of merged weights that the update pushed past the end of their range.
    pub clipped: usize,
}

/// Builds the merged GGUF of `base` and `w` (checked against the base beforehand). `label`
/// names the adapter in the metadata; `on_tensor(done, total)` reports progress.
pub fn merged_gguf(
    base: &Gguf,
    w: &AdapterWeights,
    n_layers: usize,
    types: MergeTypes,
    label: &str,
    mut on_tensor: impl FnMut(usize, usize),
) -> Result<(GgufWriter, MergeReport)> {
    let mut out = GgufWriter::new();
    for (k, v) in base.metadata() {
        out.set(k.clone(), v.clone());
    }
    if let Some(ft) = types.file_type() {
        out.set("general.file_type", Value::U32(ft));
    }
    out.set("smolt.merged.adapter", Value::String(label.to_string()));
    out.set(
        "smolt.merged.base_model",
        Value::String(w.base_model.clone()),
    );
    out.set("smolt.merged.lora_rank", Value::U32(w.rank as u32));
    out.set("smolt.merged.lora_alpha", Value::F64(w.alpha));
    out.set("smolt.merged.pairs", Value::U32(w.pairs.len() as u32));
    let has_output = base.tensor_info("output.weight").is_some();
    let mut report = MergeReport::default();
    let total = base.tensors().len();
    let mut used = 0;
    for (i, info) in base.tensors().iter().enumerate() {
        let ty = types.type_of(info, n_layers, has_output);
        let pair = adapted(info).and_then(|key| w.pairs.get(&key));
        let bytes = base.tensor_data(info);
        let data = match pair {
            None if ty == info.ty => {
                report.copied += 1;
                bytes.to_vec()
            }
            None => {
                report.requantized += 1;
                quantize(info, &dequantize(info, bytes)?, ty)?
            }
            Some(p) => {
                used += 1;
                report.merged += 1;
                let d = p.delta();
                if d.len() != info.n_elements() as usize {
                    bail!(
                        "{}: the adapter's update has {} values, the weight {}",
                        info.name,
                        d.len(),
                        info.n_elements()
                    );
                }
                if ty == info.ty && smolt_quant::can_nudge(ty) {
                    let (data, clipped) = nudge(info, bytes, &d)?;
                    report.clipped += clipped;
                    data
                } else {
                    let mut values = dequantize(info, bytes)?;
                    values.par_iter_mut().zip(&d).for_each(|(v, d)| *v += d);
                    quantize(info, &values, ty)?
                }
            }
        };
        out.add_tensor(info.name.clone(), &info.dims, ty, data)?;
        on_tensor(i + 1, total);
    }
    if used != w.pairs.len() {
        bail!(
            "only {used} of the adapter's {} pairs found their weight in the base",
            w.pairs.len()
        );
    }
    Ok((out, report))
}

/// `blk.N.<projection>.weight` → (N, projection).
fn adapted(info: &TensorInfo) -> Option<(usize, Target)> {
    let layer = info
        .name
        .strip_prefix("blk.")?
        .split_once('.')?
        .0
        .parse()
        .ok()?;
    Target::ALL
        .into_iter()
        .find(|t| t.gguf_weight(layer) == info.name)
        .map(|t| (layer, t))
}

/// `bytes + delta` on the weight's own grid ([`smolt_quant::nudge_row`]): requantizing the sum
/// would round most of a trained update away, since the base's values sit on the grid. The
/// seed is the tensor's name, so a merge is reproducible.
fn nudge(info: &TensorInfo, bytes: &[u8], delta: &[f32]) -> Result<(Vec<u8>, usize)> {
    let len = info.row_len();
    let rb = smolt_quant::row_bytes(info.ty, len)?;
    let seed = info.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x1000_0000_01b3)
    });
    let mut out = bytes.to_vec();
    let clipped = out
        .par_chunks_mut(rb)
        .zip(delta.par_chunks(len))
        .enumerate()
        .map(|(r, (row, d))| {
            smolt_quant::nudge_row(info.ty, row, d, seed ^ (r as u64).wrapping_mul(0x9e37_79b9))
                .with_context(|| format!("{}: row {r} cannot be updated in place", info.name))
        })
        .sum::<Result<usize>>()?;
    Ok((out, clipped))
}

fn dequantize(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    let len = info.row_len();
    let rb = smolt_quant::row_bytes(info.ty, len)?;
    let mut values = vec![0f32; info.n_elements() as usize];
    values
        .par_chunks_mut(len)
        .zip(bytes.par_chunks(rb))
        .try_for_each(|(dst, src)| smolt_quant::dequantize_row(info.ty, src, dst))
        .with_context(|| format!("decoding {}", info.name))?;
    Ok(values)
}

fn quantize(info: &TensorInfo, values: &[f32], ty: GgmlType) -> Result<Vec<u8>> {
    let len = info.row_len();
    let rb = smolt_quant::row_bytes(ty, len)
        .with_context(|| format!("{} cannot be stored as {ty}", info.name))?;
    let mut out = vec![0u8; values.len() / len * rb];
    out.par_chunks_mut(rb)
        .zip(values.par_chunks(len))
        .try_for_each(|(dst, src)| smolt_quant::quantize_row(ty, src, dst))
        .with_context(|| {
            format!(
                "smolt cannot write {} as {ty}; choose --type Q8_0, F16 or Q4_K_M",
                info.name
            )
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_follows_llama_quantize() {
        // 24 layers: n/8 = 3, 7n/8 = 21; more bits at 0..3, 21..24 and 5, 8, 11, …
        let favoured: Vec<usize> = (0..24)
            .filter(|&i| {
                q4_k_m_type(&format!("blk.{i}.ffn_down.weight"), 24, true) == GgmlType::Q6K
            })
            .collect();
        assert_eq!(favoured, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
        assert_eq!(q4_k_m_type("blk.4.attn_q.weight", 24, true), GgmlType::Q4K);
        assert_eq!(q4_k_m_type("token_embd.weight", 24, false), GgmlType::Q6K);
        assert_eq!(q4_k_m_type("token_embd.weight", 24, true), GgmlType::Q4K);
        assert_eq!(q4_k_m_type("output.weight", 24, true), GgmlType::Q6K);
        assert_eq!(fallback(GgmlType::Q4K, 640), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::Q6K, 640), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::Q6K, 48), GgmlType::F16);
        assert_eq!(fallback(GgmlType::Q4K, 1024), GgmlType::Q4K);
    }

    #[test]
    fn type_names_parse() {
        assert_eq!("same".parse::<MergeTypes>(), Ok(MergeTypes::Same));
        assert_eq!("q4_k_m".parse::<MergeTypes>(), Ok(MergeTypes::Q4KM));
        assert_eq!(
            "Q8_0".parse::<MergeTypes>(),
            Ok(MergeTypes::All(GgmlType::Q8_0))
        );
        assert!("Q3_K_S"
            .parse::<MergeTypes>()
            .unwrap_err()
            .contains("Q4_K_M"));
    }
}
