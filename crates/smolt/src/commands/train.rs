//! `smolt train`: a LoRA adapter trained directly over the quantized GGUF model.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
#[command(after_help = "\
Data: JSONL, one example per line, as {\"input\": ..., \"output\": ...}, {\"prompt\": ..., \
\"completion\": ...} or {\"messages\": [...]}. The loss is on the answer only (for messages: the \
last, assistant, message). Messages are rendered with the model's chat template when its GGUF \
has one, else the built-in Gemma 3 format (config key chat_template: auto, gguf or gemma).

Every setting lives in a TOML config (--config); the flags below and --set KEY=VALUE override it.
The run directory receives config.toml, adapter_model.safetensors + adapter_config.json (PEFT
format), checkpoints/, metrics.csv, loss.png and summary.json. A killed or interrupted run
continues with --resume.

Continual training: --from RUN starts from a finished run's adapter and settings (its
config.toml, which --config, flags and --set still override) on new --data; --replay SHARE
mixes that share of RUN's own training records back in, spread over its file, so the new data
does not make the model forget the old (the mix is written to OUT/replay-train.jsonl). Evaluate
on an old and a new test set afterwards to see both.

Examples:
  smolt train --data train.jsonl --valid valid.jsonl --out runs/receipts
  smolt train --from runs/receipts --data new.jsonl --replay 0.3 --out runs/receipts-2
  smolt train --data train.jsonl --out runs/r8 --rank 8 --epochs 2 --set lr=1e-4
  smolt train --out runs/receipts --resume")]
pub struct Args {
    /// Training data (JSONL).
    #[arg(long, required_unless_present_any = ["config", "resume"])]
    data: Option<PathBuf>,
    /// Validation data (JSONL), evaluated every `eval_every` steps and at the end.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// A JSON Schema the answers must satisfy; violations are reported with file:line.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// The run directory.
    #[arg(long)]
    out: PathBuf,
    /// A task file (task.toml, as `smolt init` writes it) with any of the task and training
    /// settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// A .gguf file, or `gemma-3-270m` (the default, fetched on first use).
    #[arg(short, long, env = "SMOLT_MODEL")]
    model: Option<String>,
    /// LoRA rank.
    #[arg(long)]
    rank: Option<usize>,
    /// Passes over the training data.
    #[arg(long)]
    epochs: Option<u32>,
    /// Stop after this many optimiser steps (overrides --epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Recompute each layer's activations in the backward instead of keeping them (less
    /// memory, one more forward per step, same numbers); the config key `recompute`.
    #[arg(long)]
    recompute: bool,
    /// Any other setting, as KEY=VALUE (repeatable), e.g. --set warmup_steps=20.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print one JSON line with the run's figures (for benchmark scripts).
    #[arg(long)]
    bench_json: bool,
    /// Start from this finished run's adapter and settings (continual training on --data).
    #[arg(long, value_name = "RUN", requires = "data", conflicts_with = "resume")]
    from: Option<PathBuf>,
    /// With --from: the share of the training mix taken from RUN's own training records.
    #[arg(long, value_name = "SHARE", requires = "from", default_value_t = 0.0)]
    replay: f64,
}

/// New records plus `share` of the mix from the old ones, picked evenly over the old file;
/// JSONL lines as they are (any record format the trainer reads).
fn replay_mix(new: &str, old: &str, share: f64) -> (String, usize, usize) {
    let new: Vec<&str> = new.lines().filter(|l| !l.trim().is_empty()).collect();
    let old: Vec<&str> = old.lines().filter(|l| !l.trim().is_empty()).collect();
    let want = (share / (1.0 - share) * new.len() as f64).round() as usize;
    let take = want.min(old.len());
    let mut text = String::new();
    for l in &new {
        text.push_str(l);
        text.push('\n');
    }
    for i in 0..take {
        text.push_str(old[i * old.len() / take]);
        text.push('\n');
    }
    (text, new.len(), take)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| overrides.push((k.to_string(), v));
    if let Some(m) = &args.model {
        put("model", super::resolve_model(m)?.display().to_string());
    }
    if let Some(d) = &args.data {
        put("data", d.display().to_string());
    }
    if let Some(v) = &args.valid {
        put("valid", v.display().to_string());
    }
    if let Some(s) = &args.schema {
        put("schema", s.display().to_string());
    }
    if let Some(r) = args.rank {
        put("lora_r", r.to_string());
    }
    if let Some(e) = args.epochs {
        put("epochs", e.to_string());
    }
    if let Some(s) = args.steps {
        put("max_steps", s.to_string());
    }
    if let Some(lr) = args.lr {
        put("lr", lr.to_string());
    }
    if let Some(s) = args.seed {
        put("seed", s.to_string());
    }
    if args.recompute {
        put("recompute", "true".into());
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set expects KEY=VALUE, got `{kv}`"))?;
        put(k.trim(), v.trim().to_string());
    }
    let from_config = args.from.as_ref().map(|r| r.join("config.toml"));
    if let Some(c) = &from_config {
        if !c.is_file() {
            anyhow::bail!(
                "--from {}: no config.toml there (give a `smolt train` run folder)",
                args.from.as_ref().unwrap().display()
            );
        }
        if !(0.0..1.0).contains(&args.replay) {
            anyhow::bail!("--replay must be at least 0 and below 1 (a share of the training mix)");
        }
        overrides.insert(
            0,
            (
                "init_adapter".into(),
                args.from.as_ref().unwrap().display().to_string(),
            ),
        );
    }
    let config_file = args.config.as_deref().or(from_config.as_deref());
    let mut cfg = smolt::train::gemma::run_config(&args.out, config_file, &overrides, args.resume)?;
    if let (Some(from), Some(c)) = (&args.from, &from_config) {
        if args.replay > 0.0 {
            let old = smolt::train::TrainConfig::load(Some(c), &[])?;
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let (text, n_new, n_old) =
                replay_mix(&read(&cfg.task.data)?, &read(&old.task.data)?, args.replay);
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("cannot create {}", args.out.display()))?;
            let mix = args.out.join("replay-train.jsonl");
            smolt::lora::io::write_atomic(&mix, text.as_bytes())?;
            eprintln!(
                "continuing {}: {n_new} new records + {n_old} replayed from {} → {}",
                from.display(),
                old.task.data.display(),
                mix.display()
            );
            cfg.task.data = mix;
        }
    }
    if args.model.is_none() && !std::path::Path::new(&cfg.task.model).is_file() {
        // No model, or the default's name: fetch it like every command does.
        let spec = if cfg.task.model.is_empty() {
            smolt::hub::DEFAULT_MODEL
        } else {
            cfg.task.model.as_str()
        };
        cfg.task.model = super::resolve_model(spec)?.display().to_string();
    }
    // Tool answers must be ones decoding can write; checked here, where the constraint
    // engine lives, before any training time is spent.
    let tool_files: Vec<&std::path::Path> =
        [Some(cfg.task.data.as_path()), cfg.task.valid.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| smolt::task::record::is_tool_file(p))
            .collect();
    if !tool_files.is_empty() {
        let gguf = smolt::gguf::Gguf::open(std::path::Path::new(&cfg.task.model))
            .with_context(|| format!("cannot open {}", cfg.task.model))?;
        let tok = std::sync::Arc::new(smolt::tokenizer::Tokenizer::from_gguf(&gguf)?);
        for f in tool_files {
            let errors = smolt::evaluate_tools::unreachable_answers(f, &cfg.task, &tok)?;
            if !errors.is_empty() {
                return Err(smolt::task::DataErrors {
                    file: f.to_path_buf(),
                    errors,
                }
                .into());
            }
        }
    }
    let summary = smolt::train::gemma::train(cfg, &args.out, args.resume)?;
    if args.bench_json {
        // The fields the bench scripts share with the PyTorch side (`tok_s`: every token fed
        // forward, prompt and answer, per second of training), plus the whole summary.
        let mut j = serde_json::to_value(&summary)?;
        j["tok_s"] = serde_json::json!(summary.tokens_per_s);
        j["loss_last"] = serde_json::json!(summary.final_train_loss);
        println!("{j}");
    }
    Ok(())
}
