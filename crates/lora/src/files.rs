//! LoRA adapters on disk in PEFT's layout, so `PeftModel.from_pretrained(base, run_dir)` and
//! llama.cpp's `convert_lora_to_gguf.py` read them without conversion, and smolt reads PEFT
//! folders made elsewhere. A training run directory is such a folder too.
//!
//! Tensor names: `base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight`
//! and `base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight`
//! ([`crate::peft_name`]); `lora_A` is `[r, in]` and `lora_B` is `[out, r]` (row-major), as in
//! PyTorch's `nn.Linear`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::adapter::{reorder_b_rows, LoraAdapter, Param};
use crate::config::LoraConfig;
use crate::io::read_safetensors;
use crate::weights::{parse_peft_name, write_peft_folder, AdapterWeights};

pub use crate::weights::{adapter_config_json, ADAPTER_CONFIG_FILE, ADAPTER_FILE};

/// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`, each atomically.
pub fn save_adapter(
    dir: &Path,
    params: &[Param],
    config: &LoraConfig,
    base_model: &str,
) -> Result<()> {
    write_peft_folder(dir, params, &adapter_config_json(config, base_model))
}

/// `params` (smolt's layout) in PEFT's: the rows of each q/k `lora_B` of a model whose GGUF
/// permutes q/k rows (`llama`, see [`crate::peft_row`]) put back in Hugging Face's order; everything
/// else as it is. What to hand [`save_adapter`] so PEFT and llama.cpp's
/// `convert_lora_to_gguf.py` read the adapter right.
pub fn to_peft_layout(spec: &smolt_model::ArchSpec, params: &[Param]) -> Vec<Param> {
    params
        .iter()
        .map(|p| {
            let data = match parse_peft_name(&p.name) {
                Some((_, t, 1)) => reorder_b_rows(spec, t, &p.data, p.shape[1], true),
                _ => p.data.clone(),
            };
            Param::new(p.name.clone(), p.shape, data)
        })
        .collect()
}

/// Reads an adapter's tensors (sorted by name, gradients zero) and its config.
pub fn load_adapter(dir: &Path) -> Result<(Vec<Param>, serde_json::Value)> {
    let (tensors, _) = read_safetensors(&dir.join(ADAPTER_FILE))?;
    let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", cfg_path.display()))?;
    if config["peft_type"] != "LORA" {
        bail!("{}: peft_type is not \"LORA\"", cfg_path.display());
    }
    let params = tensors
        .into_iter()
        .map(|t| match t.shape[..] {
            [rows, cols] => Ok(Param::new(t.name, [rows, cols], t.data)),
            _ => bail!("{}: tensor {} is not 2-D", dir.display(), t.name),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((params, config))
}

impl LoraAdapter<f32> {
    /// Starts from the adapter a finished run left in `dir` (its `adapter_model.safetensors`)
    /// instead of PEFT's fresh init: continual training on new data. The saved adapter must
    /// have this one's rank, alpha, scaling and targets; every tensor is checked by name and
    /// shape, and q/k `B` rows come back from PEFT's order to the GGUF's where the base
    /// permutes them.
    pub fn continue_from(&mut self, spec: &smolt_model::ArchSpec, dir: &Path) -> Result<()> {
        let (saved, config) = load_adapter(dir)?;
        let c = &self.config;
        let mismatch = |what: &str, theirs: String, ours: String| {
            anyhow::anyhow!(
                "{}: the adapter has {what} {theirs}, this run {ours}: give the run the same \
                 setting to continue it",
                dir.display()
            )
        };
        let rank = config["r"].as_u64().unwrap_or(0) as usize;
        if rank != c.rank {
            return Err(mismatch("lora_r", rank.to_string(), c.rank.to_string()));
        }
        let alpha = config["lora_alpha"].as_f64().unwrap_or(f64::NAN);
        if (alpha - c.alpha).abs() > 1e-9 * c.alpha.abs().max(1.0) {
            return Err(mismatch(
                "lora_alpha",
                alpha.to_string(),
                c.alpha.to_string(),
            ));
        }
        let rslora = config["use_rslora"].as_bool().unwrap_or(false);
        if rslora != c.rslora {
            return Err(mismatch(
                "use_rslora",
                rslora.to_string(),
                c.rslora.to_string(),
            ));
        }
        let by_name: std::collections::HashMap<&str, &Param> =
            saved.iter().map(|p| (p.name.as_str(), p)).collect();
        if by_name.len() != self.params().len() {
            return Err(mismatch(
                "tensor count",
                by_name.len().to_string(),
                format!("{} (other target_modules?)", self.params().len()),
            ));
        }
        for p in self.params_mut() {
            let Some(src) = by_name.get(p.name.as_str()) else {
                anyhow::bail!(
                    "{}: no tensor {} (the adapter targets other modules: give the run the \
                     same target_modules)",
                    dir.display(),
                    p.name
                );
            };
            if src.shape != p.shape {
                anyhow::bail!(
                    "{}: {} has shape {:?}, this run {:?} (another base model?)",
                    dir.display(),
                    p.name,
                    src.shape,
                    p.shape
                );
            }
            p.data = match parse_peft_name(&p.name) {
                Some((_, t, 1)) => reorder_b_rows(spec, t, &src.data, p.shape[1], false),
                _ => src.data.clone(),
            };
        }
        Ok(())
    }
}

// Reading dispatches on the file kind, so it lives here, above both readers
// (`weights` for PEFT folders, `gguf_lora` for GGUF files), not in either.
impl AdapterWeights {
    /// Reads `path`: a PEFT folder (a run directory) or a GGUF LoRA file, and checks every
    /// pair against `spec`'s shapes.
    pub fn read(path: &Path, spec: &smolt_model::ArchSpec) -> Result<Self> {
        let w = if path.is_dir() {
            Self::read_peft(path, spec)?
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            bail!(
                "{} is a safetensors file; pass the folder that holds it with its \
                 adapter_config.json (PEFT's layout)",
                path.display()
            );
        } else if path.is_file() {
            crate::gguf_lora::read(path, spec.arch.name())?
        } else {
            bail!(
                "{} does not exist: pass a training run directory, a PEFT adapter folder \
                 (adapter_model.safetensors + adapter_config.json) or a GGUF LoRA file",
                path.display()
            );
        };
        w.check(spec)
            .with_context(|| format!("{} does not fit this model", path.display()))?;
        Ok(w)
    }
}

/// Attaches a saved adapter (a run directory, any PEFT LoRA folder, or a llama.cpp GGUF LoRA
/// file) to a loaded model for inference: each projection gets its `s·B·(A·x)` term, the base
/// stays as it is. Every tensor must name a layer and projection of this model, with matching
/// shapes. Returns the number of projections adapted.
pub fn attach_adapter(model: &mut smolt_model::Model, path: &Path) -> Result<usize> {
    AdapterWeights::read(path, &model.spec)?.attach(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::peft_name;
    use crate::config::Target;
    use crate::io::read_safetensors;
    use serde_json::json;

    #[test]
    fn names_follow_peft_and_read_back() {
        assert_eq!(
            peft_name(3, Target::Q, 'A'),
            "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!(
            peft_name(17, Target::Down, 'B'),
            "base_model.model.model.layers.17.mlp.down_proj.lora_B.weight"
        );
        for t in Target::ALL {
            for (part, which) in ['A', 'B'].into_iter().enumerate() {
                assert_eq!(parse_peft_name(&peft_name(5, t, which)), Some((5, t, part)));
            }
        }
        assert_eq!(
            parse_peft_name("model.layers.3.self_attn.q_proj.lora_A.weight"),
            None
        );
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.3.mlp.q_proj.lora_A.weight"),
            None
        );
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.3.self_attn.q_proj.lora_C.weight"),
            None
        );
    }

    #[test]
    fn round_trip_with_peft_config() {
        let config = LoraConfig {
            rank: 4,
            targets: vec![Target::Q, Target::Down],
            ..LoraConfig::default()
        };
        let mut params = Vec::new();
        for layer in 0..2 {
            // Gemma 3 270M: q is 640 -> 1024 (4 heads x 256), down is 2048 -> 640.
            for (t, i, o) in [(Target::Q, 640, 1024), (Target::Down, 2048, 640)] {
                let a = (0..4 * i).map(|k| (k as f32 * 0.37).sin()).collect();
                let b = (0..o * 4).map(|k| (k as f32 * 0.11).cos()).collect();
                params.push(Param::new(peft_name(layer, t, 'A'), [4, i], a));
                params.push(Param::new(peft_name(layer, t, 'B'), [o, 4], b));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        save_adapter(dir.path(), &params, &config, "gemma-3-270m-it-Q8_0.gguf").unwrap();
        let (back, json) = load_adapter(dir.path()).unwrap();
        let mut want = params.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back.len(), want.len());
        for (b, w) in back.iter().zip(&want) {
            assert_eq!((&b.name, &b.shape, &b.data), (&w.name, &w.shape, &w.data));
        }
        assert_eq!(json["r"], 4);
        assert_eq!(json["lora_alpha"], 32.0);
        assert_eq!(json["target_modules"], json!(["q_proj", "down_proj"]));
        assert_eq!(json["task_type"], "CAUSAL_LM");
        assert_eq!(json["bias"], "none");
        assert_eq!(json["base_model_name_or_path"], "gemma-3-270m-it-Q8_0.gguf");

        let (_, meta) = read_safetensors(&dir.path().join(ADAPTER_FILE)).unwrap();
        assert_eq!(meta["format"], "pt");
    }
}
