//! An adapter as inference and the exporters see it, whatever file it came from: per adapted
//! projection, `A (r, in)`, `B (out, r)` and the scale of `y = W·x + s·B·(A·x)`, with `B`'s
//! rows in the GGUF's order (smolt's own; see [`peft_row`]).
//!
//! Readers: a PEFT folder (a `smolt train` run directory, or one trained with PyTorch: other
//! ranks, `rank_pattern` / `alpha_pattern`, rsLoRA, f16/bf16 tensors, any subset of the seven
//! projections) and llama.cpp's GGUF LoRA file ([`crate::gguf_lora`]). What neither smolt nor
//! the exporters can express (DoRA, `modules_to_save`, LoRA on the embeddings or the LM head,
//! LoRA biases) is refused, saying what and why. Writers: the same two formats, and the base
//! merged with the adapter ([`crate::merge`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use smolt_model::ArchSpec;

use crate::adapter::{peft_name, reorder_b_rows, target_dims, Param};
use crate::config::{LoraConfig, Target};
use crate::io::{read_safetensors, safetensors_bytes, write_atomic};

/// The adapter weights file, named as PEFT expects it.
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// The adapter config file, named as PEFT expects it.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// A PEFT folder: `params` (already in PEFT's names and row order) as
/// `adapter_model.safetensors` and `config` as `adapter_config.json`, each written atomically.
pub(crate) fn write_peft_folder(
    dir: &Path,
    params: &[Param],
    config: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors_bytes(
        params
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice(), p.data.as_slice())),
        meta,
    )?;
    write_atomic(&dir.join(ADAPTER_FILE), &bytes)?;
    let text = serde_json::to_string_pretty(config)?;
    write_atomic(&dir.join(ADAPTER_CONFIG_FILE), text.as_bytes())
}

/// PEFT's `adapter_config.json` for an adapter of `config` over `base_model`.
pub fn adapter_config_json(config: &LoraConfig, base_model: &str) -> serde_json::Value {
    let modules: Vec<String> = config
        .targets
        .iter()
        .map(|t| format!("{}_proj", t.short()))
        .collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": modules,
        "use_rslora": config.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_dora": false,
    })
}

/// The `A` and `B` halves of each pair as a reader finds them, before both are known.
pub(crate) type Halves<T> = BTreeMap<(usize, Target), [Option<T>; 2]>;

/// One adapted projection. `b`'s rows are in the GGUF's order.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair {
    /// `(rank, in)`, row-major.
    pub a: Vec<f32>,
    /// `(out, rank)`, row-major.
    pub b: Vec<f32>,
    pub rank: usize,
    /// The output multiplier (`alpha/r`, or `alpha/√r` with rsLoRA), kept in f64 so that the
    /// alpha a file stores can be recovered exactly.
    pub scale: f64,
}

impl LoraPair {
    /// `s·B·A`, `(out, in)` row-major: what merging adds to the base weight.
    pub fn delta(&self) -> Vec<f32> {
        let inp = self.a.len() / self.rank;
        let out = self.b.len() / self.rank;
        let mut d = vec![0f32; out * inp];
        // B·A as (out, r)·(r, in): `matmul_nt` wants the right factor as (in, r).
        let mut at = vec![0f32; inp * self.rank];
        for k in 0..self.rank {
            for j in 0..inp {
                at[j * self.rank + k] = self.a[k * inp + j];
            }
        }
        smolt_kernels::matmul_nt(&self.b, &at, out, self.rank, inp, &mut d, false);
        let s = self.scale as f32;
        d.iter_mut().for_each(|v| *v *= s);
        d
    }
}

/// A whole adapter: its pairs and the config it was made with (what a PEFT
/// `adapter_config.json` records).
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterWeights {
    pub pairs: BTreeMap<(usize, Target), LoraPair>,
    /// The config's `r` (pairs may differ, through `rank_pattern`).
    pub rank: usize,
    /// The config's `lora_alpha` (pairs may differ, through `alpha_pattern`).
    pub alpha: f64,
    pub rslora: bool,
    /// What the adapter was trained on (`base_model_name_or_path`), free text.
    pub base_model: String,
}

/// `alpha/r` or `alpha/√r`.
fn scale(alpha: f64, rank: usize, rslora: bool) -> f64 {
    LoraConfig {
        rank,
        alpha,
        rslora,
        ..LoraConfig::default()
    }
    .scale()
}

impl AdapterWeights {
    /// From trained parameters in smolt's layout ([`crate::LoraAdapter::params`]).
    pub fn from_params(params: &[Param], config: &LoraConfig, base_model: &str) -> Result<Self> {
        let mut pairs = BTreeMap::new();
        for pair in params.chunks(2) {
            let [a, b] = pair else {
                bail!("adapter parameters come in (A, B) pairs");
            };
            let (layer, t, part) =
                parse_peft_name(&a.name).with_context(|| format!("unexpected `{}`", a.name))?;
            if part != 0 || parse_peft_name(&b.name) != Some((layer, t, 1)) {
                bail!("`{}` is not followed by its lora_B", a.name);
            }
            pairs.insert(
                (layer, t),
                LoraPair {
                    a: a.data.clone(),
                    b: b.data.clone(),
                    rank: a.shape[0],
                    scale: config.scale(),
                },
            );
        }
        Ok(AdapterWeights {
            pairs,
            rank: config.rank,
            alpha: config.alpha,
            rslora: config.rslora,
            base_model: base_model.to_string(),
        })
    }

    /// Every pair names a layer and projection of `spec` with its shapes.
    pub fn check(&self, spec: &ArchSpec) -> Result<()> {
        if self.pairs.is_empty() {
            bail!("the adapter holds no LoRA tensors");
        }
        for (&(layer, t), p) in &self.pairs {
            if layer >= spec.n_layers() {
                bail!(
                    "layer {layer} `{t}`: the model has {} layers",
                    spec.n_layers()
                );
            }
            let (inp, out) = target_dims(spec, t);
            if p.rank == 0 || p.a.len() != p.rank * inp || p.b.len() != out * p.rank {
                bail!(
                    "layer {layer} `{t}`: A has {} values and B {} at rank {}; this model's \
                     `{t}` needs A ({}, {inp}) and B ({out}, {})",
                    p.a.len(),
                    p.b.len(),
                    p.rank,
                    p.rank,
                    p.rank
                );
            }
            if !p.scale.is_finite() {
                bail!("layer {layer} `{t}`: the scale is {}", p.scale);
            }
        }
        Ok(())
    }

    /// The projections adapted, in [`Target::ALL`] order.
    pub fn targets(&self) -> Vec<Target> {
        Target::ALL
            .into_iter()
            .filter(|t| self.pairs.keys().any(|(_, u)| u == t))
            .collect()
    }

    /// Gives each adapted projection of `model` its `s·B·(A·x)` term. Returns how many.
    pub fn attach(&self, model: &mut smolt_model::Model) -> Result<usize> {
        self.check(&model.spec)?;
        for (&(layer, t), p) in &self.pairs {
            model.blocks[layer]
                .proj_mut(t)
                .set_lora(Some(smolt_model::LoraDelta::new(
                    p.a.clone(),
                    p.b.clone(),
                    p.rank,
                    p.scale as f32,
                )))
                .with_context(|| format!("layer {layer} `{t}`"))?;
        }
        Ok(self.pairs.len())
    }

    /// PEFT's tensors: PEFT names, `lora_B` rows in Hugging Face's order.
    pub fn peft_params(&self, spec: &ArchSpec) -> Vec<Param> {
        let mut out = Vec::with_capacity(2 * self.pairs.len());
        for (&(layer, t), p) in &self.pairs {
            let inp = p.a.len() / p.rank;
            let out_rows = p.b.len() / p.rank;
            let b = reorder_b_rows(spec, t, &p.b, p.rank, true);
            out.push(Param::new(
                peft_name(layer, t, 'A'),
                [p.rank, inp],
                p.a.clone(),
            ));
            out.push(Param::new(peft_name(layer, t, 'B'), [out_rows, p.rank], b));
        }
        out
    }

    /// PEFT's `adapter_config.json`: the config's r and alpha, with `rank_pattern` /
    /// `alpha_pattern` entries for the pairs that differ from them.
    pub fn peft_config(&self) -> serde_json::Value {
        let mut rank_pattern = serde_json::Map::new();
        let mut alpha_pattern = serde_json::Map::new();
        for (&(layer, t), p) in &self.pairs {
            let key = format!("model.layers.{layer}.{}", t.hf_module());
            if p.rank != self.rank {
                rank_pattern.insert(key.clone(), json!(p.rank));
            }
            if p.scale != scale(self.alpha, p.rank, self.rslora) {
                let alpha = if self.rslora {
                    p.scale * (p.rank as f64).sqrt()
                } else {
                    p.scale * p.rank as f64
                };
                alpha_pattern.insert(key, json!(alpha));
            }
        }
        let mut c = adapter_config_json(
            &LoraConfig {
                rank: self.rank,
                alpha: self.alpha,
                rslora: self.rslora,
                dropout: 0.0,
                targets: self.targets(),
            },
            &self.base_model,
        );
        c["rank_pattern"] = json!(rank_pattern);
        c["alpha_pattern"] = json!(alpha_pattern);
        c
    }

    /// Writes a PEFT folder (`adapter_model.safetensors` + `adapter_config.json`, each
    /// atomically) that `PeftModel.from_pretrained` and vLLM load onto the Hugging Face model.
    pub fn write_peft(&self, dir: &Path, spec: &ArchSpec) -> Result<()> {
        write_peft_folder(dir, &self.peft_params(spec), &self.peft_config())
    }

    /// Reads a PEFT LoRA folder; `spec` says how to put q/k `lora_B` rows in GGUF order.
    pub fn read_peft(dir: &Path, spec: &ArchSpec) -> Result<Self> {
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!(
                "reading {} (a PEFT adapter folder has adapter_config.json and \
                 adapter_model.safetensors)",
                cfg_path.display()
            )
        })?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", cfg_path.display()))?;
        let ctx = |what: String| format!("{}: {what}", cfg_path.display());
        let cfg = PeftConfig::parse(&config).map_err(|e| anyhow::anyhow!(ctx(e)))?;
        let (tensors, _) = read_safetensors(&dir.join(ADAPTER_FILE))?;
        let mut halves: Halves<(Vec<usize>, Vec<f32>)> = BTreeMap::new();
        for t in tensors {
            let (layer, target, part) = parse_peft_tensor(&t.name)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(ADAPTER_FILE).display()))?;
            let slot = &mut halves.entry((layer, target)).or_default()[part];
            if slot.is_some() {
                bail!("{}: `{}` appears twice", dir.display(), t.name);
            }
            *slot = Some((t.shape, t.data));
        }
        let mut pairs = BTreeMap::new();
        for ((layer, t), [a, b]) in halves {
            let (Some((sa, a)), Some((sb, b))) = (a, b) else {
                bail!(
                    "{}: layer {layer} `{t}` lacks lora_A or lora_B",
                    dir.display()
                );
            };
            let (&[rank, _], &[_, rb]) = (&sa[..], &sb[..]) else {
                bail!(
                    "{}: layer {layer} `{t}`: LoRA tensors must be 2-D",
                    dir.display()
                );
            };
            if rank == 0 || rb != rank {
                bail!(
                    "{}: layer {layer} `{t}`: lora_A is {sa:?} and lora_B {sb:?}; B must have \
                     as many columns as A has rows",
                    dir.display()
                );
            }
            let module = format!("model.layers.{layer}.{}", t.hf_module());
            let alpha = cfg.alpha_for(&module);
            let gb = reorder_b_rows(spec, t, &b, rank, false);
            pairs.insert(
                (layer, t),
                LoraPair {
                    a,
                    b: gb,
                    rank,
                    scale: scale(alpha, rank, cfg.rslora),
                },
            );
        }
        Ok(AdapterWeights {
            pairs,
            rank: cfg.rank,
            alpha: cfg.alpha,
            rslora: cfg.rslora,
            base_model: cfg.base_model,
        })
    }
}

/// What smolt reads from a PEFT `adapter_config.json`.
struct PeftConfig {
    rank: usize,
    alpha: f64,
    rslora: bool,
    alpha_pattern: Vec<(String, f64)>,
    base_model: String,
}

impl PeftConfig {
    fn parse(c: &serde_json::Value) -> Result<PeftConfig, String> {
        if c["peft_type"] != "LORA" {
            return Err(format!(
                "peft_type is {}, smolt reads LoRA adapters (\"LORA\")",
                c["peft_type"]
            ));
        }
        if c["use_dora"].as_bool() == Some(true) {
            return Err(
                "use_dora is true: DoRA adapters rescale the base weights' columns, \
                        which smolt's kernels do not do; train a plain LoRA"
                    .into(),
            );
        }
        let saved = &c["modules_to_save"];
        if !(saved.is_null() || saved.as_array().is_some_and(|a| a.is_empty())) {
            return Err(format!(
                "modules_to_save = {saved}: the adapter replaces whole modules, which smolt \
                 cannot apply beside a quantized base; train without modules_to_save"
            ));
        }
        let bias = c["bias"].as_str().unwrap_or("none");
        if bias != "none" {
            return Err(format!(
                "bias = \"{bias}\": the adapter trains biases too, which smolt does not apply; \
                 train with bias=\"none\""
            ));
        }
        let rank = c["r"]
            .as_u64()
            .filter(|&r| r > 0)
            .ok_or("no positive integer `r`")? as usize;
        let alpha = c["lora_alpha"].as_f64().ok_or("no number `lora_alpha`")?;
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(format!("lora_alpha = {alpha} must be > 0"));
        }
        let mut alpha_pattern = Vec::new();
        if let Some(map) = c["alpha_pattern"].as_object() {
            for (k, v) in map {
                check_pattern_key(k)?;
                let a = v
                    .as_f64()
                    .ok_or_else(|| format!("alpha_pattern[{k}] is not a number"))?;
                alpha_pattern.push((k.clone(), a));
            }
        }
        if let Some(map) = c["rank_pattern"].as_object() {
            // The ranks themselves are read from the tensors' shapes.
            for k in map.keys() {
                check_pattern_key(k)?;
            }
        }
        Ok(PeftConfig {
            rank,
            alpha,
            rslora: c["use_rslora"].as_bool().unwrap_or(false),
            alpha_pattern,
            base_model: c["base_model_name_or_path"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        })
    }

    /// PEFT's rule: a key applies to a module whose name is the key or ends with `.key`.
    fn alpha_for(&self, module: &str) -> f64 {
        self.alpha_pattern
            .iter()
            .find(|(k, _)| module == k || module.ends_with(&format!(".{k}")))
            .map_or(self.alpha, |(_, a)| *a)
    }
}

/// PEFT matches pattern keys as regular expressions; smolt matches them as module names, so a
/// key with regex syntax would be read differently, and is refused rather than misread.
fn check_pattern_key(k: &str) -> Result<(), String> {
    if k.chars().any(|c| "[](){}*+?|^$\\".contains(c)) {
        return Err(format!(
            "pattern key `{k}` is a regular expression; smolt reads rank_pattern and \
             alpha_pattern keys as module names (e.g. `model.layers.3.self_attn.q_proj` or \
             `q_proj`)"
        ));
    }
    Ok(())
}

/// `base_model.model.model.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A|B}.weight` →
/// (layer, target, 0 for A / 1 for B): [`peft_name`] read backwards.
pub(crate) fn parse_peft_name(name: &str) -> Option<(usize, Target, usize)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, _) = rest.split_once('.')?;
    let layer = layer.parse().ok()?;
    Target::ALL.into_iter().find_map(|t| {
        ['A', 'B']
            .iter()
            .position(|&which| peft_name(layer, t, which) == name)
            .map(|part| (layer, t, part))
    })
}

/// A tensor name as PEFT and other tools write it: [`parse_peft_name`]'s form, also without
/// the `base_model.model.` prefix and with an adapter name before `.weight`
/// (`lora_A.default.weight`). Names of parts smolt cannot apply get an error saying why.
fn parse_peft_tensor(name: &str) -> Result<(usize, Target, usize), String> {
    let refuse = |why: &str| Err(format!("tensor `{name}`: {why}"));
    if name.contains("lora_magnitude_vector") {
        return refuse("a DoRA magnitude vector; smolt applies plain LoRA only");
    }
    if name.contains("embed_tokens") || name.contains("lm_head") || name.contains("lora_embedding")
    {
        return refuse(
            "LoRA on the embeddings or the LM head; smolt adapts the seven projections of \
             the decoder layers (q, k, v, o, gate, up, down) only",
        );
    }
    let unexpected = || {
        format!(
            "unexpected tensor `{name}`: smolt reads \
             `base_model.model.model.layers.N.<self_attn|mlp>.<x>_proj.lora_<A|B>.weight`"
        )
    };
    let rest = name.strip_prefix("base_model.model.").unwrap_or(name);
    let rest = rest.strip_prefix("model.layers.").ok_or_else(unexpected)?;
    let (layer, rest) = rest.split_once('.').ok_or_else(unexpected)?;
    let layer: usize = layer.parse().map_err(|_| unexpected())?;
    let t = Target::ALL
        .into_iter()
        .find(|t| rest.starts_with(&format!("{}.lora_", t.hf_module())))
        .ok_or_else(unexpected)?;
    let rest = &rest[t.hf_module().len() + ".lora_".len()..];
    let part = match rest.split_once('.') {
        Some(("A", tail)) => (0, tail),
        Some(("B", tail)) => (1, tail),
        _ => return Err(unexpected()),
    };
    if part.1 == "bias" || part.1.ends_with(".bias") {
        return refuse("a LoRA bias; smolt applies LoRA without biases (PEFT's bias=\"none\")");
    }
    if part.1 != "weight" && !part.1.ends_with(".weight") {
        return Err(unexpected());
    }
    Ok((layer, t, part.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_tensor_names_in_every_spelling() {
        for (name, want) in [
            (
                "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight",
                (3, Target::Q, 0),
            ),
            (
                "model.layers.11.mlp.down_proj.lora_B.weight",
                (11, Target::Down, 1),
            ),
            (
                "base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight",
                (0, Target::Up, 0),
            ),
        ] {
            assert_eq!(parse_peft_tensor(name), Ok(want), "{name}");
        }
        for (name, says) in [
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                "DoRA",
            ),
            (
                "base_model.model.model.embed_tokens.lora_embedding_A",
                "embeddings",
            ),
            ("base_model.model.lm_head.lora_A.weight", "LM head"),
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
                "bias",
            ),
            (
                "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
                "unexpected",
            ),
            (
                "base_model.model.model.layers.x.mlp.up_proj.lora_A.weight",
                "unexpected",
            ),
            (
                "base_model.model.model.layers.1.mlp.up_proj.lora_C.weight",
                "unexpected",
            ),
        ] {
            let e = parse_peft_tensor(name).unwrap_err();
            assert!(e.contains(says), "{name}: {e}");
        }
    }

    #[test]
    fn peft_configs_that_cannot_be_applied_are_refused_with_the_reason() {
        let base = json!({"peft_type": "LORA", "r": 8, "lora_alpha": 16});
        assert!(PeftConfig::parse(&base).is_ok());
        for (patch, says) in [
            (json!({"use_dora": true}), "DoRA"),
            (json!({"modules_to_save": ["lm_head"]}), "modules_to_save"),
            (json!({"bias": "lora_only"}), "bias"),
            (json!({"peft_type": "IA3"}), "IA3"),
            (json!({"r": 0}), "`r`"),
            (json!({"lora_alpha": -1}), "lora_alpha"),
            (
                json!({"alpha_pattern": {"layers\\.1\\..*": 4}}),
                "regular expression",
            ),
        ] {
            let mut c = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                c[k] = v.clone();
            }
            let e = PeftConfig::parse(&c).err().unwrap();
            assert!(e.contains(says), "{patch}: {e}");
        }
        let c = PeftConfig::parse(&json!({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
            "alpha_pattern": {"q_proj": 4, "model.layers.2.mlp.up_proj": 2}}))
        .unwrap();
        assert_eq!(c.alpha_for("model.layers.5.self_attn.q_proj"), 4.0);
        assert_eq!(c.alpha_for("model.layers.2.mlp.up_proj"), 2.0);
        assert_eq!(c.alpha_for("model.layers.12.mlp.up_proj"), 16.0);
    }

    #[test]
    fn delta_is_scale_b_times_a() {
        let p = LoraPair {
            a: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],            // (2, 3)
            b: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, -1.0], // (4, 2)
            rank: 2,
            scale: 0.5,
        };
        let want = [
            [1.0, 2.0, 3.0],
            [4.0, 5.0, 6.0],
            [5.0, 7.0, 9.0],
            [-2.0, -1.0, 0.0],
        ];
        let d = p.delta();
        for (i, row) in want.iter().enumerate() {
            for (j, &w) in row.iter().enumerate() {
                assert_eq!(d[i * 3 + j], 0.5 * w as f32, "({i}, {j})");
            }
        }
    }
}
