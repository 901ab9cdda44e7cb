//! llama.cpp's LoRA adapter file: a GGUF with `general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, and per adapted projection `blk.N.<tensor>.weight.lora_a` (GGML dims
//! `[in, r]`, i.e. PEFT's `(r, in)` row-major) and `.lora_b` (`[r, out]`). Rows are in the
//! GGUF's order (the converter permutes `llama`'s q/k rows as it does the base's), which is
//! smolt's own. llama.cpp scales each pair by `alpha / r` with `r` read from `lora_a`, and by
//! 1 when the file has no alpha; it knows nothing of rsLoRA, so rsLoRA is folded into the
//! alpha written (`alpha·√r`), and pairs whose scale no single alpha gives carry the
//! difference in their `B`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use smolt_gguf::{GgmlType, Gguf, GgufWriter, Value};

use crate::config::Target;
use crate::weights::{AdapterWeights, Halves, LoraPair};

/// Keys smolt adds so that its own round trip also restores the PEFT config (llama.cpp ignores
/// them).
const SMOLT_ALPHA: &str = "smolt.lora.alpha";
const SMOLT_RANK: &str = "smolt.lora.rank";
const SMOLT_RSLORA: &str = "smolt.lora.rslora";
const SMOLT_BASE: &str = "smolt.lora.base_model";

/// The element types a GGUF LoRA can be written in.
pub const TENSOR_TYPES: [GgmlType; 4] =
    [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];

/// The tensor names of one pair.
fn names(layer: usize, t: Target) -> [String; 2] {
    let w = t.gguf_weight(layer);
    [format!("{w}.lora_a"), format!("{w}.lora_b")]
}

/// Encodes `rows × len` values as `ty`, or as F16 where a row is not a whole number of `ty`'s
/// blocks (llama.cpp's converter does the same for Q8_0: `lora_b` rows are r long).
fn encode(values: &[f32], len: usize, ty: GgmlType) -> Result<(GgmlType, Vec<u8>)> {
    let ty = if len.is_multiple_of(ty.block_size()) {
        ty
    } else {
        GgmlType::F16
    };
    let row_bytes = smolt_quant::row_bytes(ty, len)?;
    let mut out = vec![0u8; values.len() / len * row_bytes];
    for (src, dst) in values
        .chunks_exact(len)
        .zip(out.chunks_exact_mut(row_bytes))
    {
        smolt_quant::quantize_row(ty, src, dst)?;
    }
    Ok((ty, out))
}

/// The file image of `w` as a llama.cpp LoRA for a base of architecture `arch`, tensors in `ty`
/// (one of [`TENSOR_TYPES`]).
pub fn to_bytes(w: &AdapterWeights, arch: &str, ty: GgmlType) -> Result<Vec<u8>> {
    if !TENSOR_TYPES.contains(&ty) {
        bail!("a GGUF LoRA can be written as f32, f16, bf16 or q8_0, not {ty}");
    }
    // The alpha llama.cpp multiplies by 1/r: the first pair's `scale·r`; a pair whose own
    // `scale·r` differs gets the ratio folded into its B.
    let alpha = w
        .pairs
        .values()
        .next()
        .map(|p| p.scale * p.rank as f64)
        .context("the adapter holds no LoRA tensors")?;
    let mut g = GgufWriter::new();
    g.set("general.architecture", Value::String(arch.to_string()));
    g.set("general.type", Value::String("adapter".into()));
    g.set("general.name", Value::String("smolt LoRA adapter".into()));
    g.set("adapter.type", Value::String("lora".into()));
    g.set("adapter.lora.alpha", Value::F32(alpha as f32));
    g.set(SMOLT_ALPHA, Value::F64(w.alpha));
    g.set(SMOLT_RANK, Value::U32(w.rank as u32));
    g.set(SMOLT_RSLORA, Value::Bool(w.rslora));
    g.set(SMOLT_BASE, Value::String(w.base_model.clone()));
    g.set("general.alignment", Value::U32(32));
    for (&(layer, t), p) in &w.pairs {
        let inp = p.a.len() / p.rank;
        let out = p.b.len() / p.rank;
        let own = p.scale * p.rank as f64;
        let b = if own == alpha {
            p.b.clone()
        } else {
            let f = (own / alpha as f32 as f64) as f32;
            p.b.iter().map(|v| v * f).collect()
        };
        let [na, nb] = names(layer, t);
        let (ta, da) = encode(&p.a, inp, ty)?;
        g.add_tensor(na, &[inp as u64, p.rank as u64], ta, da)?;
        let (tb, db) = encode(&b, p.rank, ty)?;
        g.add_tensor(nb, &[p.rank as u64, out as u64], tb, db)?;
    }
    Ok(g.to_bytes())
}

/// Writes [`to_bytes`] to `path` atomically.
pub fn write(w: &AdapterWeights, path: &Path, arch: &str, ty: GgmlType) -> Result<()> {
    crate::io::write_atomic(path, &to_bytes(w, arch, ty)?)
}

/// Reads a GGUF LoRA made by smolt or llama.cpp's `convert_lora_to_gguf.py`, for a model of
/// architecture `arch`.
pub fn read(path: &Path, arch: &str) -> Result<AdapterWeights> {
    let g = Gguf::open(path).with_context(|| format!("reading {}", path.display()))?;
    from_gguf(&g, arch).with_context(|| format!("in {}", path.display()))
}

/// [`read`] on an opened file.
pub fn from_gguf(g: &Gguf, arch: &str) -> Result<AdapterWeights> {
    let kind = g.get("general.type").and_then(Value::as_str);
    if kind != Some("adapter") || g.get("adapter.type").and_then(Value::as_str) != Some("lora") {
        bail!(
            "this GGUF is not a LoRA adapter (general.type = {:?}, adapter.type = {:?}); a \
             model goes to --model, an adapter to --adapter",
            kind.unwrap_or("unset"),
            g.get("adapter.type")
                .and_then(Value::as_str)
                .unwrap_or("unset")
        );
    }
    if g.get("adapter.alora.invocation_tokens").is_some() {
        bail!("an activated LoRA (aLoRA); smolt applies plain LoRA only");
    }
    let file_arch = g.get_str("general.architecture")?;
    if file_arch != arch {
        bail!("the adapter was made for a `{file_arch}` model, this model is `{arch}`");
    }
    // llama.cpp: no alpha (or 0) means scale 1.
    let gguf_alpha = g
        .get("adapter.lora.alpha")
        .and_then(Value::as_f64)
        .filter(|&a| a != 0.0);
    let mut halves: Halves<(usize, usize, Vec<f32>)> = Default::default();
    for info in g.tensors() {
        let (base, part) = match info.name.rsplit_once('.') {
            Some((b, "lora_a")) => (b, 0),
            Some((b, "lora_b")) => (b, 1),
            _ => bail!(
                "unexpected tensor `{}`: a LoRA GGUF holds `<weight>.lora_a` / `.lora_b` pairs",
                info.name
            ),
        };
        let found = base
            .strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(l, _)| l.parse::<usize>().ok())
            .and_then(|l| {
                Target::ALL
                    .into_iter()
                    .find(|t| t.gguf_weight(l) == base)
                    .map(|t| (l, t))
            });
        let Some(key) = found else {
            bail!(
                "tensor `{}` adapts `{base}`; smolt adapts the seven projections of the \
                 decoder layers (attn_q/k/v/output, ffn_gate/up/down) only",
                info.name
            );
        };
        if info.dims.len() != 2 {
            bail!("tensor `{}` is not 2-D", info.name);
        }
        let (ne0, ne1) = (info.dims[0] as usize, info.dims[1] as usize);
        let mut data = vec![0f32; ne0 * ne1];
        smolt_quant::dequantize_row(info.ty, g.tensor_data(info), &mut data)
            .with_context(|| format!("tensor `{}`", info.name))?;
        let slot = &mut halves.entry(key).or_default()[part];
        if slot.is_some() {
            bail!("tensor `{}` appears twice", info.name);
        }
        *slot = Some((ne0, ne1, data));
    }
    let stored_rank = g.get("smolt.lora.rank").and_then(Value::as_u64);
    let mut pairs = std::collections::BTreeMap::new();
    for ((layer, t), [a, b]) in halves {
        let (Some((_, rank, a)), Some((rb, _, b))) = (a, b) else {
            bail!("layer {layer} `{t}` lacks lora_a or lora_b");
        };
        if rank == 0 || rb != rank {
            bail!(
                "layer {layer} `{t}`: lora_a has rank {rank} but lora_b {rb} (is lora_a \
                 transposed? llama.cpp wants lora_a as [in, r] and lora_b as [r, out])"
            );
        }
        let scale = gguf_alpha.map_or(1.0, |a| a as f32 as f64 / rank as f64);
        pairs.insert((layer, t), LoraPair { a, b, rank, scale });
    }
    let first_rank = pairs.values().next().map_or(0, |p| p.rank);
    let rank = stored_rank.map_or(first_rank, |r| r as usize);
    let rslora = g
        .get(SMOLT_RSLORA)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let alpha = g
        .get(SMOLT_ALPHA)
        .and_then(Value::as_f64)
        .or(gguf_alpha)
        .unwrap_or(rank as f64);
    // A file smolt wrote states the exact scale its alpha and rank give; prefer it over the
    // f32 round trip of `adapter.lora.alpha` wherever they agree to f32 precision.
    if g.get(SMOLT_ALPHA).is_some() {
        for p in pairs.values_mut() {
            let exact = crate::config::LoraConfig {
                rank: p.rank,
                alpha,
                rslora,
                ..Default::default()
            }
            .scale();
            if exact as f32 == p.scale as f32 {
                p.scale = exact;
            }
        }
    }
    Ok(AdapterWeights {
        pairs,
        rank,
        alpha,
        rslora,
        base_model: g
            .get(SMOLT_BASE)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}
