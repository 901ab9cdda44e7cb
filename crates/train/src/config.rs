//! The training configuration: one TOML file, overridable key by key from the command line.
//!
//! The run directory keeps the merged config as `config.toml`, so a run can always be
//! resumed or reproduced from its directory alone; checkpoints carry a hash of it so that a
//! resume under a different config is refused instead of silently diverging.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smolt_lora::{LoraConfig, Target};
use smolt_task::Task;

/// Learning-rate shape after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from `lr` down to `lr * min_lr_ratio` at the last step.
    Cosine,
    /// Flat `lr`; useful when the number of steps is not known in advance.
    Constant,
}

/// Arithmetic of the frozen base's products during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BasePrecision {
    /// `bf16` where the CPU has bf16 hardware (AMX tiles or AVX-512 BF16), else `f32`.
    Auto,
    /// Weights and activations rounded to bf16 with f32 sums, on AMX tiles or AVX-512 BF16
    /// (the frozen projections, the LM head, attention's score and value products; the LoRA
    /// products, norms and softmaxes stay f32; where AVX-512 VNNI runs without AMX, the head's
    /// logits use inference's int8 arithmetic on the file's rows instead, ≈ 1.3x faster): 2-3x faster steps, about 0.4 GB more memory (packed bf16 copies of the body's
    /// projections; the head's too, another 0.7 GB, with `head_cache`), loss within ~1e-3 of
    /// the f32 reference. Without either the same numbers are computed slowly with f32 gemm.
    Bf16,
    /// Each quantized matrix decoded to f32 for one product: the reference arithmetic (what
    /// PEFT computes on the dequantized model), the least memory.
    F32,
}

/// Everything that determines a training run: the task (model, data, schema, how records
/// become text; [`Task`]) and the training settings. One flat TOML table holds both, the
/// task's keys first. Every field has a default tuned for Gemma 3 270M on short extraction
/// tasks (receipts), so an empty TOML file is a valid config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The task's keys (`model`, `data`, `valid`, `schema`, `template`, `chat_template`,
    /// `json_style`, `max_len`, `overlong`).
    #[serde(flatten)]
    pub task: Task,

    // ---- LoRA ----
    /// LoRA rank.
    pub lora_r: usize,
    /// LoRA alpha; the update is scaled by alpha / r (or alpha / sqrt(r) with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input path (0 = off; 0 also keeps runs independent of the RNG).
    pub lora_dropout: f64,
    /// Short module names to adapt: q, k, v, o (attention) and gate, up, down (MLP).
    pub target_modules: Vec<String>,
    /// Rank-stabilised scaling alpha / sqrt(r).
    pub use_rslora: bool,
    /// Arithmetic of the frozen base: auto, bf16 or f32 (see [`BasePrecision`]).
    pub base_precision: BasePrecision,
    /// With the bf16 base: keep the LM head packed in bf16 for the whole run (≈ 4 bytes per
    /// head parameter, ≈ 670 MB for Gemma 3 270M's tied 262,144 × 640 table) instead of
    /// decoding it from the file, chunk by chunk, at every example. The numbers are the same
    /// bit for bit; the resident head saves the per-example decode (≈ 0.1 CPU-s, measured
    /// ≈ 5% of a 512-token step on a 2-core Xeon). Off by default: the lean head keeps the
    /// bf16 path's peak memory near 1.2 GB. Does not enter the training hash, so a run can be
    /// resumed with either. Ignored with the f32 base.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub head_cache: bool,
    /// Keep only each layer's input during the forward and recompute the layer's activations
    /// in the backward: about one layer's activations alive instead of all of them (peak
    /// 1.18 → 0.79 GB at sequence 512 with the bf16 base), for one more forward of the body
    /// per step. Same numbers bit for bit, so, like `head_cache`, not in the training hash.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recompute: bool,

    // ---- optimiser ----
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup from lr/warmup to lr over this many steps.
    pub warmup_steps: u64,
    /// Shape after warmup.
    pub schedule: Schedule,
    /// Final lr as a fraction of `lr` for the cosine schedule.
    pub min_lr_ratio: f64,
    /// Decoupled (AdamW) weight decay; PEFT's default of 0 keeps B = 0 a fixed point at init.
    pub weight_decay: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon.
    pub eps: f64,
    /// Clip the global gradient norm to this value (0 = no clipping).
    pub grad_clip: f64,

    // ---- batching ----
    /// Token budget of one micro-batch: (longest example) x (examples) stays within it, so
    /// activation memory is bounded whatever the length mix. One longer example runs alone.
    pub batch_tokens: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Passes over the training data (ignored when `max_steps` > 0).
    pub epochs: u32,
    /// Stop after this many optimiser steps (0 = run `epochs` epochs).
    pub max_steps: u64,
    /// Seed for shuffling, LoRA init and dropout.
    pub seed: u64,
    /// Start from this run's adapter (a `smolt train` run folder or PEFT folder with the same
    /// rank, alpha and targets) instead of a fresh one: continual training on new data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_adapter: Option<PathBuf>,

    // ---- bookkeeping ----
    /// Save a checkpoint every N steps (0 = only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    /// How many checkpoints to keep on disk (at least 1).
    pub keep_checkpoints: usize,
    /// Evaluate on `valid` every N steps (0 = only at the end).
    pub eval_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            task: Task::default(),
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.0,
            target_modules: Target::ALL.iter().map(|t| t.short().to_string()).collect(),
            use_rslora: false,
            base_precision: BasePrecision::Auto,
            head_cache: false,
            recompute: false,
            lr: 2e-4,
            warmup_steps: 10,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 1.0,
            batch_tokens: 2048,
            grad_accum: 1,
            epochs: 1,
            max_steps: 0,
            seed: 0,
            init_adapter: None,
            checkpoint_every: 50,
            keep_checkpoints: 3,
            eval_every: 50,
        }
    }
}

/// All problems found in a config, reported together so the user fixes them in one go.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid training config:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl TrainConfig {
    /// Parses TOML text; unknown keys are errors, since a typo would otherwise silently fall
    /// back to a default.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let table: toml::Table = text.parse()?;
        Self::from_table(table)
    }

    /// The config of a parsed TOML table whose keys must all be known.
    fn from_table(table: toml::Table) -> Result<Self> {
        let known = Self::field_names();
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
            bail!(
                "unknown config key `{key}`; known keys: {}",
                known.join(", ")
            );
        }
        // Each task key through the task, so that a bad value names its key (the flattened
        // struct's message would not).
        Task::from_table(&table)?;
        Ok(toml::Value::Table(table).try_into()?)
    }

    /// Loads `path` (if any), applies `overrides` in order, and validates.
    pub fn load(path: Option<&Path>, overrides: &[(String, String)]) -> Result<Self> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                let mut cfg = Self::from_toml_str(&text)
                    .with_context(|| format!("in config {}", p.display()))?;
                // A task folder names its files relative to itself, so it works from any
                // working directory.
                let base = p.parent().unwrap_or(Path::new(""));
                cfg.task.resolve_paths(base);
                cfg
            }
            None => Self::default(),
        };
        cfg.apply_overrides(overrides)?;
        // Command-line paths are relative to the working directory. Storing every path
        // absolute keeps the run directory's config.toml valid wherever a resume starts.
        cfg.task.resolve_paths(Path::new(""));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets fields by name from `key=value` strings, as given on the command line. Values are
    /// read as TOML (`1e-4`, `true`, `["q","v"]`) and, failing that, as a bare string, so paths
    /// and enum names need no quotes. Comma-separated lists are accepted for list fields.
    pub fn apply_overrides(&mut self, overrides: &[(String, String)]) -> Result<()> {
        if overrides.is_empty() {
            return Ok(());
        }
        let mut table = toml::Table::try_from(&*self)?;
        for (key, raw) in overrides {
            let key = key.replace('-', "_");
            if !Self::field_names().contains(&key.as_str()) {
                bail!(
                    "unknown config key `{key}`; known keys: {}",
                    Self::field_names().join(", ")
                );
            }
            let value = parse_override_value(&key, raw);
            table.insert(key.clone(), value);
            // Check each override on its own so the error names the key at fault.
            Self::from_table(table.clone())
                .with_context(|| format!("bad value `{raw}` for `{key}`"))?;
        }
        *self = Self::from_table(table)?;
        Ok(())
    }

    /// The config keys (the task's, then training's), for error messages and CLI help.
    pub fn field_names() -> Vec<&'static str> {
        let mut keys = Task::KEYS.to_vec();
        keys.extend(Self::TRAINING_KEYS);
        keys
    }

    /// The training settings' keys, in the order they are written.
    const TRAINING_KEYS: &'static [&'static str] = &[
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "use_rslora",
        "base_precision",
        "head_cache",
        "recompute",
        "lr",
        "warmup_steps",
        "schedule",
        "min_lr_ratio",
        "weight_decay",
        "beta1",
        "beta2",
        "eps",
        "grad_clip",
        "batch_tokens",
        "grad_accum",
        "epochs",
        "max_steps",
        "seed",
        "init_adapter",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
    ];

    /// Checks ranges and cross-field rules, collecting every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut e = Vec::new();
        self.task.check(&mut e);
        if self.lora_r == 0 {
            e.push("lora_r must be at least 1".into());
        }
        if let Some(a) = &self.init_adapter {
            if !a.join(smolt_lora::ADAPTER_FILE).is_file() {
                e.push(format!(
                    "init_adapter = {}: no {} there (give a finished run's folder)",
                    a.display(),
                    smolt_lora::ADAPTER_FILE
                ));
            }
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            e.push(format!("lora_alpha = {} must be > 0", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            e.push(format!(
                "lora_dropout = {} must be in [0, 1)",
                self.lora_dropout
            ));
        }
        if self.target_modules.is_empty() {
            e.push("target_modules is empty: nothing would be trained".into());
        }
        for t in &self.target_modules {
            if t.parse::<Target>().is_err() {
                let known: Vec<_> = Target::ALL.iter().map(|t| t.short()).collect();
                e.push(format!(
                    "unknown target module `{t}` (known: {})",
                    known.join(", ")
                ));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            e.push(format!("lr = {} must be > 0", self.lr));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            e.push(format!(
                "min_lr_ratio = {} must be in [0, 1]",
                self.min_lr_ratio
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            e.push(format!("weight_decay = {} must be >= 0", self.weight_decay));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                e.push(format!("{name} = {b} must be in [0, 1)"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            e.push(format!("eps = {} must be > 0", self.eps));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            e.push(format!(
                "grad_clip = {} must be >= 0 (0 = off)",
                self.grad_clip
            ));
        }
        if self.batch_tokens == 0 {
            e.push("batch_tokens must be at least 1".into());
        }
        if self.grad_accum == 0 {
            e.push("grad_accum must be at least 1".into());
        }
        if self.epochs == 0 && self.max_steps == 0 {
            e.push("set epochs >= 1 or max_steps >= 1".into());
        }
        if self.keep_checkpoints == 0 {
            e.push("keep_checkpoints must be at least 1".into());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(e))
        }
    }

    /// The config as TOML, as stored in the run directory.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("TrainConfig always serialises")
    }

    /// Hex SHA-256 of the fields that change the numbers a run produces. Paths are left out so
    /// that a run directory can be moved, and bookkeeping intervals are left out because they
    /// do not change the trajectory: checkpointing more often must not forbid a resume. So is
    /// `head_cache` and `recompute`, memory/speed choices with the same numbers (and, off, not
    /// serialised, so the hashes of runs from before they existed still match).
    pub fn training_hash(&self) -> String {
        let mut c = self.clone();
        c.head_cache = false;
        c.recompute = false;
        c.task.model = String::new();
        c.task.data = PathBuf::new();
        c.task.valid = None;
        c.task.schema = None;
        c.checkpoint_every = 0;
        c.keep_checkpoints = 1;
        c.eval_every = 0;
        let text = c.to_toml_string();
        hex(&Sha256::digest(text.as_bytes()))
    }

    /// The adapter these settings train: rank, alpha, rsLoRA, dropout and targets.
    pub fn lora_config(&self) -> Result<LoraConfig> {
        let targets = self
            .target_modules
            .iter()
            .map(|t| t.parse::<Target>().map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        Ok(LoraConfig {
            rank: self.lora_r,
            alpha: self.lora_alpha,
            rslora: self.use_rslora,
            dropout: self.lora_dropout,
            targets,
        })
    }
}

fn parse_override_value(key: &str, raw: &str) -> toml::Value {
    if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
        if let Some(v) = t.get("v") {
            // A number given for a string field (e.g. `model=123`) stays a string below.
            if !matches!(key, "model" | "data" | "valid" | "schema" | "template") || v.is_str() {
                return v.clone();
            }
        }
    }
    if key == "target_modules" {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        );
    }
    toml::Value::String(raw.to_string())
}

/// Lower-case hex of a digest, as the run files and keys print it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolt_task::{ChatTemplateSetting, JsonStyle, Overlong};

    fn ov(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_toml_is_the_default_and_valid() {
        let c = TrainConfig::from_toml_str("").unwrap();
        assert_eq!(c, TrainConfig::default());
        c.validate().unwrap();
        assert_eq!(c.lora_r, 16);
        assert_eq!(c.lora_config().unwrap().scale(), 2.0);
    }

    #[test]
    fn default_round_trips_through_toml() {
        let c = TrainConfig::default();
        let back = TrainConfig::from_toml_str(&c.to_toml_string()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_key_in_toml_is_an_error() {
        let err = TrainConfig::from_toml_str("lerning_rate = 1.0").unwrap_err();
        assert!(format!("{err:#}").contains("lerning_rate"), "{err:#}");
    }

    #[test]
    fn paths_in_a_config_file_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("task");
        std::fs::create_dir(&task).unwrap();
        let p = task.join("task.toml");
        std::fs::write(
            &p,
            "data = \"data/train.jsonl\"\nschema = \"/abs/schema.json\"\nmodel = \"m.gguf\"\n",
        )
        .unwrap();
        let c = TrainConfig::load(Some(&p), &[]).unwrap();
        assert_eq!(c.task.data, task.join("data/train.jsonl"));
        assert_eq!(c.task.schema, Some(PathBuf::from("/abs/schema.json")));
        assert_eq!(c.task.model, task.join("m.gguf").display().to_string());
        // A hub name is not a path.
        std::fs::write(&p, "model = \"gemma-3-270m\"\n").unwrap();
        assert_eq!(
            TrainConfig::load(Some(&p), &[]).unwrap().task.model,
            "gemma-3-270m"
        );
    }

    #[test]
    fn overrides_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "lr = 1e-3\nseed = 7\nschedule = \"constant\"\n").unwrap();
        let c = TrainConfig::load(
            Some(&p),
            &ov(&[
                ("lr", "5e-5"),
                ("data", "train.jsonl"),
                ("target-modules", "q,v"),
                ("overlong", "skip"),
                ("model", "123"),
            ]),
        )
        .unwrap();
        assert_eq!(c.lr, 5e-5);
        assert_eq!(c.seed, 7);
        assert_eq!(c.schedule, Schedule::Constant);
        // Command-line paths are taken from the working directory and stored absolute.
        assert_eq!(
            c.task.data,
            std::env::current_dir().unwrap().join("train.jsonl")
        );
        assert_eq!(c.target_modules, vec!["q", "v"]);
        assert_eq!(c.task.overlong, Overlong::Skip);
        assert_eq!(c.task.model, "123");
    }

    #[test]
    fn bad_overrides_name_the_key() {
        let mut c = TrainConfig::default();
        let err = c.apply_overrides(&ov(&[("nope", "1")])).unwrap_err();
        assert!(err.to_string().contains("unknown config key `nope`"));
        let err = c.apply_overrides(&ov(&[("lora_r", "abc")])).unwrap_err();
        assert!(format!("{err:#}").contains("lora_r"), "{err:#}");
    }

    #[test]
    fn chat_template_is_auto_gguf_or_gemma() {
        let mut c = TrainConfig::default();
        assert_eq!(c.task.chat_template, ChatTemplateSetting::Auto);
        c.apply_overrides(&ov(&[("chat-template", "gguf")]))
            .unwrap();
        assert_eq!(c.task.chat_template, ChatTemplateSetting::Gguf);
        let c = TrainConfig::from_toml_str("chat_template = \"gemma\"").unwrap();
        assert_eq!(c.task.chat_template, ChatTemplateSetting::Gemma);
        assert!(c.to_toml_string().contains("chat_template = \"gemma\""));
        // It changes the prompts, so it is a training setting.
        assert_ne!(c.training_hash(), TrainConfig::default().training_hash());
        let err = TrainConfig::default()
            .apply_overrides(&ov(&[("chat_template", "chatml")]))
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("chat_template") && err.contains("`auto`, `gguf`, `gemma`"),
            "{err}"
        );
    }

    #[test]
    fn validation_collects_every_problem() {
        let c = TrainConfig {
            task: Task {
                template: "no placeholder".into(),
                ..Task::default()
            },
            lora_r: 0,
            lr: -1.0,
            target_modules: vec!["q".into(), "qq".into()],
            grad_accum: 0,
            ..TrainConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.0.len(), 5, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("{input}") && msg.contains("`qq`") && msg.contains("grad_accum"));
    }

    #[test]
    fn hash_ignores_paths_and_intervals_but_not_hyperparameters() {
        let a = TrainConfig::default();
        let b = TrainConfig {
            task: Task {
                data: "elsewhere.jsonl".into(),
                ..Task::default()
            },
            checkpoint_every: 3,
            head_cache: true,
            recompute: true,
            ..a.clone()
        };
        assert_eq!(a.training_hash(), b.training_hash());
        let c = TrainConfig {
            lr: 1e-3,
            ..a.clone()
        };
        assert_ne!(a.training_hash(), c.training_hash());
    }

    /// Runs made before the task moved out of the training config hash as they did then, so
    /// they resume: the hashes below were computed by the code of 96e4bae.
    #[test]
    fn training_hash_is_unchanged_by_the_task_layer() {
        assert_eq!(
            TrainConfig::default().training_hash(),
            "40040c42a411f999fd4db612d41955a8c5fea26352c62ebdd586754c72fb5a49"
        );
        let c = TrainConfig {
            task: Task {
                max_len: 640,
                template: "Q: {input}\nA:".into(),
                chat_template: ChatTemplateSetting::Gemma,
                json_style: JsonStyle::Python,
                overlong: Overlong::Skip,
                schema: Some("s.json".into()),
                valid: Some("v".into()),
                ..Task::default()
            },
            lr: 1e-3,
            target_modules: vec!["q".into(), "v".into()],
            use_rslora: true,
            head_cache: true,
            ..TrainConfig::default()
        };
        assert_eq!(
            c.training_hash(),
            "5ed940e355e8bc5aca103e584bc7b9de7b43324861a35c18bca8f75a8388462c"
        );
        let text = c.to_toml_string();
        assert!(
            text.starts_with("model = \"\"\ndata = \"\"\nvalid = \"v\"\nschema = \"s.json\"\n"),
            "{text}"
        );
        assert_eq!(TrainConfig::from_toml_str(&text).unwrap(), c);
    }

    /// `head_cache` off is not written, so the configs (and hashes) of runs from before the
    /// key existed read and hash as they did; on, it is written and read back.
    #[test]
    fn head_cache_is_written_only_when_on() {
        let a = TrainConfig::default();
        assert!(!a.to_toml_string().contains("head_cache"));
        let b = TrainConfig {
            head_cache: true,
            ..a.clone()
        };
        let text = b.to_toml_string();
        assert!(text.contains("head_cache = true"), "{text}");
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, b);
    }
}
