//! LoRA adapters on disk in PEFT's layout, so `PeftModel.from_pretrained(base, run_dir)` and
//! llama.cpp's `convert_lora_to_gguf.py` read them without conversion.
//!
//! Tensor names: `base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight`
//! and `base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight`;
//! `lora_A` is `[r, in]` and `lora_B` is `[out, r]` (row-major), as in PyTorch's `nn.Linear`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use smolt_lora::Target;

use crate::config::{TrainConfig, KNOWN_TARGETS};
use crate::engine::{new_param, Param};
use crate::io::{read_safetensors, safetensors_bytes, write_atomic};

/// The adapter weights file, named as PEFT expects it.
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// The adapter config file, named as PEFT expects it.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// Which LoRA factor. (Initialising adapters is smolt-lora's job: `LoraAdapter::new`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraPart {
    /// Down-projection `[r, in]`, Kaiming-uniform at init.
    A,
    /// Up-projection `[out, r]`, zero at init so training starts from the base model.
    B,
}

/// PEFT's module path for a short target name (`q` → `self_attn.q_proj`).
pub fn module_path(target: &str) -> Result<&'static str> {
    KNOWN_TARGETS
        .iter()
        .find(|(k, _)| *k == target)
        .map(|(_, m)| *m)
        .with_context(|| format!("unknown LoRA target `{target}`"))
}

/// The PEFT tensor name of one LoRA factor (smolt-lora's naming, reached by short name).
pub fn peft_name(layer: usize, target: &str, part: LoraPart) -> Result<String> {
    let t: Target = target.parse().map_err(anyhow::Error::msg)?;
    let which = match part {
        LoraPart::A => 'A',
        LoraPart::B => 'B',
    };
    Ok(smolt_lora::peft_name(layer, t, which))
}

/// PEFT's `adapter_config.json` for this config.
pub fn adapter_config_json(cfg: &TrainConfig) -> serde_json::Value {
    let modules: Vec<String> = cfg
        .target_modules
        .iter()
        .filter_map(|t| module_path(t).ok())
        .map(|m| m.rsplit('.').next().unwrap_or(m).to_string())
        .collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": cfg.model,
        "r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "target_modules": modules,
        "use_rslora": cfg.use_rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_dora": false,
    })
}

/// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`, each atomically.
pub fn save_adapter(dir: &Path, params: &[Param], cfg: &TrainConfig) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors_bytes(
        params
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice(), p.data.as_slice())),
        meta,
    )?;
    write_atomic(&dir.join(ADAPTER_FILE), &bytes)?;
    let config = serde_json::to_string_pretty(&adapter_config_json(cfg))?;
    write_atomic(&dir.join(ADAPTER_CONFIG_FILE), config.as_bytes())
}

/// Reads an adapter's tensors (sorted by name) and its config.
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
            [rows, cols] => Ok(new_param(t.name, [rows, cols], t.data)),
            _ => bail!("{}: tensor {} is not 2-D", dir.display(), t.name),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((params, config))
}

/// Attach a saved adapter (a run directory, or any PEFT LoRA folder with these names) to a
/// loaded model for inference: each projection gets its `s·B·(A·x)` term, the base stays as
/// it is. Every tensor must name a layer and projection of this model, with matching shapes.
pub fn attach_adapter(model: &mut smolt_model::Model, dir: &Path) -> Result<usize> {
    let (params, config) = load_adapter(dir)?;
    let r = config["r"]
        .as_u64()
        .context("adapter_config.json: no integer `r`")? as usize;
    let alpha = config["lora_alpha"]
        .as_f64()
        .context("adapter_config.json: no number `lora_alpha`")?;
    let rslora = config["use_rslora"].as_bool().unwrap_or(false);
    let scale = if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    } as f32;
    let mut pairs: std::collections::BTreeMap<(usize, &'static str), [Option<Vec<f32>>; 2]> =
        Default::default();
    for p in params {
        let (layer, target, part) = parse_peft_name(&p.name)
            .with_context(|| format!("{}: unexpected tensor `{}`", dir.display(), p.name))?;
        pairs.entry((layer, target)).or_default()[part] = Some(p.data);
    }
    let n = pairs.len();
    for ((layer, target), [a, b]) in pairs {
        let (Some(a), Some(b)) = (a, b) else {
            bail!(
                "{}: layer {layer} `{target}` lacks lora_A or lora_B",
                dir.display()
            );
        };
        let block = model.blocks.get_mut(layer).with_context(|| {
            format!(
                "{}: layer {layer} is beyond this model's layers",
                dir.display()
            )
        })?;
        let linear = match target {
            "q" => &mut block.wq,
            "k" => &mut block.wk,
            "v" => &mut block.wv,
            "o" => &mut block.wo,
            "gate" => &mut block.w_gate,
            "up" => &mut block.w_up,
            _ => &mut block.w_down,
        };
        linear.set_lora(Some(smolt_model::LoraDelta {
            a,
            b,
            rank: r,
            scale,
        }))?;
    }
    Ok(n)
}

/// `base_model.model.model.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A|B}.weight` →
/// (layer, short target, 0 for A / 1 for B).
fn parse_peft_name(name: &str) -> Option<(usize, &'static str, usize)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer = layer.parse().ok()?;
    let (module, rest) = rest.rsplit_once(".lora_")?;
    let part = match rest {
        "A.weight" => 0,
        "B.weight" => 1,
        _ => return None,
    };
    let target = KNOWN_TARGETS
        .iter()
        .find(|(_, m)| *m == module)
        .map(|(k, _)| *k)?;
    Some((layer, target, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_peft() {
        assert_eq!(
            peft_name(3, "q", LoraPart::A).unwrap(),
            "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!(
            peft_name(17, "down", LoraPart::B).unwrap(),
            "base_model.model.model.layers.17.mlp.down_proj.lora_B.weight"
        );
        assert!(peft_name(0, "lm_head", LoraPart::A).is_err());
        assert!(module_path("gate").unwrap().ends_with("gate_proj"));
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.17.mlp.down_proj.lora_B.weight"),
            Some((17, "down", 1))
        );
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"),
            Some((3, "q", 0))
        );
        assert_eq!(
            parse_peft_name("model.layers.3.self_attn.q_proj.lora_A.weight"),
            None
        );
    }

    #[test]
    fn round_trip_with_peft_config() {
        let cfg = TrainConfig {
            lora_r: 4,
            target_modules: vec!["q".into(), "down".into()],
            model: "gemma-3-270m-it-Q8_0.gguf".into(),
            ..TrainConfig::default()
        };
        let mut params = Vec::new();
        for layer in 0..2 {
            // Gemma 3 270M: q is 640 -> 1024 (4 heads x 256), down is 2048 -> 640.
            for (t, i, o) in [("q", 640, 1024), ("down", 2048, 640)] {
                let a = (0..4 * i).map(|k| (k as f32 * 0.37).sin()).collect();
                let b = (0..o * 4).map(|k| (k as f32 * 0.11).cos()).collect();
                params.push(new_param(
                    peft_name(layer, t, LoraPart::A).unwrap(),
                    [4, i],
                    a,
                ));
                params.push(new_param(
                    peft_name(layer, t, LoraPart::B).unwrap(),
                    [o, 4],
                    b,
                ));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        save_adapter(dir.path(), &params, &cfg).unwrap();
        let (back, config) = load_adapter(dir.path()).unwrap();
        let mut want = params.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back.len(), want.len());
        for (b, w) in back.iter().zip(&want) {
            assert_eq!((&b.name, &b.shape, &b.data), (&w.name, &w.shape, &w.data));
        }
        assert_eq!(config["r"], 4);
        assert_eq!(config["lora_alpha"], 32.0);
        assert_eq!(config["target_modules"], json!(["q_proj", "down_proj"]));
        assert_eq!(config["task_type"], "CAUSAL_LM");
        assert_eq!(config["bias"], "none");
        assert_eq!(
            config["base_model_name_or_path"],
            "gemma-3-270m-it-Q8_0.gguf"
        );

        let (_, meta) = read_safetensors(&dir.path().join(ADAPTER_FILE)).unwrap();
        assert_eq!(meta["format"], "pt");
    }
}
