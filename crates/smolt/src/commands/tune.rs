//! `smolt tune`: find the training recipe for a task within a time budget, scored by the
//! task's own field metric on validation records, and keep the best adapter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use smolt::constrain::ConstraintSpec;
use smolt::eval::EvalConfig;
use smolt::evaluate::EvalRun;
use smolt::tune::{Recipe, Scored, Space, Trial, Tuning};

use super::{load_model, ModelArgs, PrecisionArg};

#[derive(clap::Args)]
#[command(after_help = "\
Trains candidates one setting at a time — the peak learning rate first, then the number of
passes at the best rate, then the LoRA rank, then the longest example — and scores each by
the task's field metric on the validation records (the same scoring as `smolt eval`), never by
loss. A candidate of several passes is scored after every pass and keeps its best (early
stopping on the task's metric). A candidate whose estimated time would overrun the budget is skipped. The best adapter
is copied into --out, so `--adapter OUT` uses it; tune.html (a bar per candidate),
tune.md and tune.json explain the choice; each candidate's run and evaluation stay in
OUT/candidates/. Run it again with the same settings and finished candidates are reused.

Keep the validation records apart from your test set: the search selects on them.

Examples:
  smolt tune --config receipts/task.toml --valid receipts/data/valid.jsonl --out runs/tuned
  smolt tune --data train.jsonl --valid valid.jsonl --schema schema.json --out runs/t --budget 2h
  smolt tune --config task.toml --valid v.jsonl --out runs/t --lr 1e-4,3e-4,1e-3 --epochs 1,2,3")]
pub struct Args {
    /// A task file (task.toml) with the template, schema and training data.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training data (JSONL), unless the config names it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Validation records (JSONL with input and output) that candidates are scored on.
    #[arg(long)]
    valid: PathBuf,
    /// JSON Schema of the answers for constrained decoding and the field defaults of the
    /// scoring (default: the config's). Unlike the config's, it does not check the training
    /// answers.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Scoring settings (as `smolt eval --eval-config`; default: eval.toml beside --config).
    #[arg(long)]
    eval_config: Option<PathBuf>,
    /// Folder for the best adapter, the report and candidates/.
    #[arg(long)]
    out: PathBuf,
    /// Wall-time budget for the whole search: 30m, 1h30m, 45s, or seconds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    budget: f64,
    /// A .gguf file, or `gemma-3-270m` (the default, fetched on first use).
    #[arg(short, long, default_value = smolt::hub::DEFAULT_MODEL, env = "SMOLT_MODEL")]
    model: String,
    /// Peak learning rates to try (comma-separated; the first is where the search starts —
    /// by default `smolt train`'s own rate, so that the first candidate is the default
    /// recipe and the search never hands back worse than it on the validation records).
    #[arg(long, value_delimiter = ',', default_values_t = [2e-4, 5e-4, 1e-3])]
    lr: Vec<f64>,
    /// Passes over the training data to try.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3])]
    epochs: Vec<u32>,
    /// LoRA ranks to try.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 32])]
    rank: Vec<usize>,
    /// Longest training example in tokens, to try (default: the config's `max_len`).
    #[arg(long, value_delimiter = ',')]
    max_len: Vec<usize>,
    /// Score each candidate on the first N validation records (fewer: faster, noisier).
    #[arg(long, default_value_t = 60)]
    valid_limit: usize,
    /// Maximum answer tokens per validation record.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 160)]
    max_tokens: usize,
    /// Any other training setting, as KEY=VALUE (repeatable), as in `smolt train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// "30m", "1h30m", "90s", "2h" or plain seconds.
fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs > 0.0)
            .then_some(secs)
            .ok_or_else(|| "the budget must be positive".to_string());
    }
    let (mut total, mut num) = (0.0, String::new());
    for c in s.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'h' | 'm' | 's' => {
                let v: f64 = num
                    .parse()
                    .map_err(|_| format!("`{s}` is not a duration (try 30m, 1h30m or 90s)"))?;
                total += v * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return Err(format!("`{s}` is not a duration (try 30m, 1h30m or 90s)")),
        }
    }
    if !num.is_empty() || total <= 0.0 {
        return Err(format!("`{s}` is not a duration (try 30m, 1h30m or 90s)"));
    }
    Ok(total)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let model_path = super::resolve_model(&args.model)?;
    // The task as training sees it: the config, with the flags on top.
    let mut base: Vec<(String, String)> = vec![
        ("model".into(), model_path.display().to_string()),
        // Loss on a validation set is not what the search scores; skip computing it.
        ("eval_every".into(), "0".into()),
    ];
    if let Some(d) = &args.data {
        base.push(("data".into(), d.display().to_string()));
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set expects KEY=VALUE, got `{kv}`"))?;
        base.push((k.trim().into(), v.trim().into()));
    }
    let probe = smolt::train::TrainConfig::load(args.config.as_deref(), &base)?;
    probe.validate()?;
    let task = probe.task.clone();
    let space = Space {
        lrs: args.lr.clone(),
        epochs: args.epochs.clone(),
        ranks: args.rank.clone(),
        max_lens: if args.max_len.is_empty() {
            vec![task.max_len]
        } else {
            args.max_len.clone()
        },
    };
    space.check()?;

    let records = smolt::data::read_jsonl(&args.valid)?;
    let records = &records[..args.valid_limit.min(records.len())];
    if records.is_empty() {
        anyhow::bail!("{} holds no validation records", args.valid.display());
    }
    // --schema constrains decoding only (training takes truths as they are, like `smolt
    // train` without --schema); a config's schema does both.
    let (schema, eval_cfg) = super::eval::scoring(
        args.schema.as_deref(),
        &task,
        args.config.as_deref(),
        args.eval_config.as_deref(),
    )?;
    let candidates = args.out.join("candidates");
    std::fs::create_dir_all(&candidates)
        .with_context(|| format!("cannot create {}", candidates.display()))?;
    eprintln!(
        "smolt tune: budget {:.0} min; scoring on {} validation records of {}",
        args.budget / 60.0,
        records.len(),
        args.valid.display()
    );

    let run_one = |recipe: &Recipe, id: usize| -> anyhow::Result<Scored> {
        let dir = candidates.join(format!("{id:02}-{}", recipe.slug()));
        eprintln!("\n== candidate {id}: {} ==", recipe.slug());
        let scored_file = dir.join("scored.json");
        if let Some(s) = reuse(&scored_file, recipe) {
            eprintln!("reusing the finished candidate in {}", dir.display());
            return Ok(s);
        }
        let mut overrides = base.clone();
        overrides.extend([
            ("lr".to_string(), recipe.lr.to_string()),
            ("epochs".into(), recipe.epochs.to_string()),
            ("lora_r".into(), recipe.rank.to_string()),
            ("max_len".into(), recipe.max_len.to_string()),
        ]);
        // A killed candidate continues where it stopped.
        let resume = dir.join(smolt::train::engine::CONFIG_FILE).is_file();
        let cfg =
            smolt::train::gemma::run_config(&dir, args.config.as_deref(), &overrides, resume)?;
        let t = Instant::now();
        let summary = smolt::train::gemma::train_with(cfg, &dir, resume, recipe.epochs > 1)?;
        if summary.adapter.is_none() {
            anyhow::bail!("training stopped before writing an adapter");
        }
        let train_s = t.elapsed().as_secs_f64();
        // Every pass's adapter is scored and the best kept: early stopping on the task's
        // metric, without a run per number of passes.
        let t = Instant::now();
        let mut best: Option<(u32, smolt::eval::EvalReport)> = None;
        let mut pass_scores = Vec::new();
        for pass in 1..=recipe.epochs {
            let adapter = pass_dir(&dir, pass, recipe.epochs);
            if !adapter.join(smolt::lora::ADAPTER_FILE).is_file() {
                continue;
            }
            let report = evaluate(
                &args,
                &model_path,
                &adapter,
                &task,
                schema.as_ref(),
                &eval_cfg,
                records,
            )?;
            pass_scores.push(report.mean_score);
            if best
                .as_ref()
                .is_none_or(|(_, b)| report.mean_score > b.mean_score)
            {
                best = Some((pass, report));
            }
        }
        let (best_pass, report) = best.context("no adapter to score")?;
        let scored = Scored {
            score: report.mean_score,
            valid_json: report.validity_rate,
            fields: report
                .fields
                .iter()
                .map(|f| (f.key.clone(), f.normalized_rate))
                .collect(),
            train_s,
            eval_s: t.elapsed().as_secs_f64(),
            best_pass,
            pass_scores,
        };
        let keep = serde_json::json!({"recipe": recipe, "scored": scored});
        std::fs::write(&scored_file, serde_json::to_string_pretty(&keep)?)?;
        Ok(scored)
    };
    let on_trial = |t: &Trial| match t.scored() {
        Some(s) => eprintln!(
            "candidate {}: mean field score {:.1}% (valid JSON {:.1}%), {:.0} s training",
            t.id,
            100.0 * s.score,
            100.0 * s.valid_json,
            s.train_s
        ),
        None => eprintln!("candidate {}: {:?}", t.id, t.outcome),
    };
    let tuning = smolt::tune::search(
        &space,
        args.budget,
        || start.elapsed().as_secs_f64(),
        run_one,
        on_trial,
    );
    write_reports(&tuning, &args.out)?;
    let best = tuning.best_trial().context(
        "no candidate finished, so there is nothing to keep (see tune.md for what failed)",
    )?;
    let run = candidates.join(format!("{:02}-{}", best.id, best.recipe.slug()));
    let pass = best
        .scored()
        .map_or(best.recipe.epochs, |s| s.best_pass.max(1));
    let dir = pass_dir(&run, pass, best.recipe.epochs);
    keep_best(&dir, &args.out)?;
    println!("{}", tuning.to_markdown());
    println!("{}", tuning.explanation());
    eprintln!(
        "best adapter: {} (use --adapter {})\nreport: {}",
        dir.display(),
        args.out.display(),
        args.out.join("tune.html").display()
    );
    Ok(())
}

/// The adapter after `pass` of a run of `passes`: the run itself after the last.
fn pass_dir(run: &Path, pass: u32, passes: u32) -> PathBuf {
    if pass >= passes {
        run.to_path_buf()
    } else {
        smolt::train::engine::epoch_dir(run, pass)
    }
}

/// A candidate's earlier score, if it finished with the same recipe.
fn reuse(file: &Path, recipe: &Recipe) -> Option<Scored> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    let same: Recipe = serde_json::from_value(v["recipe"].clone()).ok()?;
    (same == *recipe)
        .then(|| serde_json::from_value(v["scored"].clone()).ok())
        .flatten()
}

/// Scores the adapter in `dir` on `records` as `smolt eval` would.
fn evaluate(
    args: &Args,
    model_path: &Path,
    dir: &Path,
    task: &smolt::task::Task,
    schema: Option<&serde_json::Value>,
    eval_cfg: &EvalConfig,
    records: &[smolt::data::Record],
) -> anyhow::Result<smolt::eval::EvalReport> {
    let loaded = load_model(&ModelArgs {
        model: model_path.display().to_string(),
        precision: PrecisionArg::Fast,
        adapter: Some(dir.to_path_buf()),
    })?;
    let constraint = match schema {
        Some(s) => {
            let engine = smolt::evaluate::engine_for_task(Arc::clone(&loaded.tokenizer), task)?;
            Some(engine.compile(&ConstraintSpec::JsonSchema(s.clone()))?)
        }
        None => None,
    };
    let job = EvalRun {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        constraint: constraint.as_ref(),
        task,
        shots: Vec::new(),
        max_tokens: args.max_tokens,
        prompt_budget: super::prompt_budget(&loaded.model, args.max_tokens, None),
    };
    let bar = super::count_bar(records.len(), "records scored")?;
    let outcome = job.run(
        records,
        eval_cfg.clone(),
        &dir.display().to_string(),
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    outcome.write_dir(&dir.join("eval"))?;
    Ok(outcome.report)
}

fn write_reports(t: &Tuning, out: &Path) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    write("tune.json", serde_json::to_string_pretty(t)?)?;
    write(
        "tune.md",
        format!("# smolt tune\n\n{}\n\n{}", t.explanation(), t.to_markdown()),
    )?;
    write("tune.html", t.to_html())
}

/// Copies the winner's adapter and run record into `out`, so `--adapter out` is the best.
fn keep_best(dir: &Path, out: &Path) -> anyhow::Result<()> {
    for name in [
        smolt::lora::ADAPTER_FILE,
        smolt::lora::ADAPTER_CONFIG_FILE,
        smolt::train::engine::CONFIG_FILE,
        "summary.json",
    ] {
        let from = dir.join(name);
        if from.is_file() {
            std::fs::copy(&from, out.join(name)).with_context(|| {
                format!("cannot copy {} into {}", from.display(), out.display())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30m"), Ok(1800.0));
        assert_eq!(parse_duration("1h30m"), Ok(5400.0));
        assert_eq!(parse_duration("90"), Ok(90.0));
        assert_eq!(parse_duration("45s"), Ok(45.0));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5m3").is_err());
    }

    #[test]
    fn the_search_starts_from_the_default_recipe() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            tune: super::Args,
        }
        let cli = Cli::parse_from(["t", "--valid", "v.jsonl", "--out", "o"]);
        let default = smolt::train::TrainConfig::default();
        assert_eq!(cli.tune.lr[0], default.lr);
        assert_eq!(cli.tune.epochs[0], default.epochs);
        assert_eq!(cli.tune.rank[0], default.lora_r);
    }
}
