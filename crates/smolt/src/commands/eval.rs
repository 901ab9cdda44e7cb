//! `smolt eval`: run the model on every record, unpack its JSON and compare it field by field
//! with the truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use smolt::constrain::ConstraintSpec;
use smolt::eval::tool_calls::ToolCallReport;
use smolt::eval::{EvalConfig, EvalReport};
use smolt::evaluate::EvalRun;
use smolt::evaluate_tools::ToolEvalRun;
use smolt::task::Task;

use super::{load_model, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "\
The prompt is rendered with the same template as training: --config (a task file), else the
task the adapter's run recorded (its config.toml) if --adapter is a run directory, else the
default template. Tool tasks ({\"tools\": [...], \"messages\": [...]} records, the last message the
assistant's tool_calls or a text answer where no tool fits) are decoded under each record's tools
constraint (calls valid by construction, as the server's `tools`) and scored by the Berkeley
Function Calling Leaderboard's rules: per-tool and per-argument accuracy, failed cases next to
the truth; with --few-shot K, solved requests from --shots (one per tool first, the shortest)
come before each request as earlier turns, those whose calls use only the record's tools. With
--few-shot K, K
solved examples from --shots are put before every record in that same template: the baseline
that shows what prompting alone gives on the same records.

Examples:
  smolt eval --data test.jsonl --schema schema.json --adapter runs/receipts --out runs/receipts/eval
  smolt eval --data test.jsonl --schema schema.json --few-shot 2 --shots train.jsonl --out runs/base-2shot
  smolt eval --compare runs/base-2shot runs/receipts/eval --out runs/compare")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Records to evaluate (JSONL with `input` and `output`).
    #[arg(long, required_unless_present = "compare")]
    data: Option<PathBuf>,
    /// JSON Schema of the answer: decoding is constrained by it, and it sets the field defaults
    /// (default: the config's `schema`).
    #[arg(long)]
    schema: Option<PathBuf>,
    /// A task file (task.toml) whose template, answer layout and schema to use; an eval.toml
    /// beside it supplies the scoring rules.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Scoring settings (TOML or JSON: per-field normalisers, number tolerance); `smolt init`
    /// writes a commented one.
    #[arg(long)]
    eval_config: Option<PathBuf>,
    /// Folder for eval.json, report.html, report.txt and predictions.jsonl (every answer next to
    /// its truth; with --compare: compare.html).
    #[arg(long, required_unless_present = "compare")]
    out: Option<PathBuf>,
    /// Evaluate only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Cut prompts longer than this as training does (default: only the model's context).
    #[arg(long)]
    max_prompt_tokens: Option<usize>,
    /// Maximum answer tokens per record.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 160)]
    max_tokens: usize,
    /// Put K solved examples (taken from --shots) before every record: a few-shot baseline.
    #[arg(long, value_name = "K", requires = "shots")]
    few_shot: Option<usize>,
    /// JSONL of solved examples for --few-shot (your training data; never the records being
    /// evaluated). The K shortest of its first 4K records are used.
    #[arg(long, value_name = "FILE")]
    shots: Option<PathBuf>,
    /// Compare two finished evaluations (folders holding eval.json, or the files): baseline
    /// first. Prints per-field deltas; writes compare.html into --out if given.
    #[arg(long, num_args = 2, value_names = ["BASELINE", "CANDIDATE"], conflicts_with_all = ["data", "few_shot"])]
    compare: Option<Vec<PathBuf>>,
    /// Also ask a fallback model for every record — any OpenAI-compatible server (a hosted
    /// model, vLLM, llama-server, or `smolt serve` with a larger GGUF), with the schema as
    /// response_format — and report what routing this model's unsure answers to it would score
    /// at each confidence threshold, and the share routed. Answers are cached in
    /// OUT/fallback/cache.jsonl: a rerun asks nothing twice. The key comes from OPENAI_API_KEY.
    #[arg(long, value_name = "URL")]
    fallback: Option<String>,
    /// The fallback's model name (default: the first its /v1/models lists).
    #[arg(long, value_name = "NAME", requires = "fallback")]
    fallback_model: Option<String>,
    /// Seconds to wait for one fallback answer.
    #[arg(long, value_name = "S", default_value_t = 120.0, requires = "fallback")]
    fallback_timeout: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(pair) = &args.compare {
        return compare(&pair[0], &pair[1], args.out.as_deref());
    }
    let (Some(data), Some(out)) = (&args.data, &args.out) else {
        anyhow::bail!("--data and --out are required (or use --compare A B)");
    };
    let task =
        super::task_of(args.config.as_deref(), args.model.adapter.as_deref())?.unwrap_or_default();
    if smolt::task::record::is_tool_file(data) {
        return run_tools(&args, &task, data, out);
    }
    let records = smolt::data::read_jsonl(data)?;
    let records = &records[..args.limit.unwrap_or(records.len()).min(records.len())];
    if records.is_empty() {
        anyhow::bail!("{} holds no records", data.display());
    }
    let shots = match (args.few_shot, &args.shots) {
        (Some(k), Some(path)) => {
            let pool = smolt::data::read_jsonl(path)?;
            if pool.len() < k {
                anyhow::bail!(
                    "--few-shot {k} needs {k} solved examples but {} holds {}",
                    path.display(),
                    pool.len()
                );
            }
            smolt::evaluate::pick_shots(&pool, k, &task)
        }
        _ => Vec::new(),
    };
    let (schema, eval_cfg) = scoring(
        args.schema.as_deref(),
        &task,
        args.config.as_deref(),
        args.eval_config.as_deref(),
    )?;
    let loaded = load_model(&args.model)?;
    let tok = &loaded.tokenizer;
    let constraint = match &schema {
        Some(s) => {
            // Laid out exactly as the task's answers were trained (json_style).
            let engine = smolt::evaluate::engine_for_task(Arc::clone(tok), &task)?;
            Some(engine.compile(&ConstraintSpec::JsonSchema(s.clone()))?)
        }
        None => None,
    };
    // Training truncates prompts to fit max_len for memory; at eval only the context limits
    // them (cutting the middle of a receipt would hide the very fields being extracted).
    let budget = super::prompt_budget(&loaded.model, args.max_tokens, args.max_prompt_tokens);
    let job = EvalRun {
        model: &loaded.model,
        tokenizer: tok,
        constraint: constraint.as_ref(),
        task: &task,
        shots,
        max_tokens: args.max_tokens,
        prompt_budget: budget,
    };
    if args.fallback.is_some() && schema.is_none() {
        anyhow::bail!("--fallback asks for answers in the task's schema: give --schema or a config that names one");
    }
    let bar = super::count_bar(records.len(), "records")?;
    let label = args.model.label(args.few_shot);
    let mut outcome = job.run(records, eval_cfg.clone(), &label, |done, score| {
        bar.set_position(done as u64);
        bar.set_message(format!("last: {:.0}% of fields", 100.0 * score));
    })?;
    bar.finish_and_clear();
    if let (Some(url), Some(schema)) = (&args.fallback, &schema) {
        // This model's evaluation is kept whatever becomes of the fallback's.
        outcome.write_dir(out)?;
        let (fallback_label, scores) = fallback_scores(
            &args, url, &task, schema, records, eval_cfg, out,
        )
        .with_context(|| {
            format!(
                "asking the fallback (this model's evaluation is written to {})",
                out.display()
            )
        })?;
        let conf =
            smolt::eval::calibration::record_confidence(&outcome.records, &outcome.confidence);
        let small: Vec<f64> = outcome.records.iter().map(|r| r.score).collect();
        let routing = smolt::eval::calibration::route(&fallback_label, &conf, &small, &scores);
        match outcome.report.calibration.as_mut() {
            Some(c) => c.routing = Some(routing),
            None => eprintln!("no confidence to route by (decoding was not constrained)"),
        }
    }
    outcome.write_dir(out)?;
    let report = outcome.report;
    print!("{}", report.to_table());
    if let Some(c) = report.calibration.as_ref().filter(|c| c.routing.is_some()) {
        println!();
        print!("{}", c.to_table());
    }
    let limits = (outcome.truncated_outputs, outcome.cut_prompts);
    warn_limits(
        limits,
        " and count as invalid",
        args.max_tokens,
        budget,
        out,
    );
    Ok(())
}

/// Asks the fallback for every record (through the teacher client and its cache), scores its
/// answers by the same rules and writes its report to OUT/fallback. Returns its label and each
/// record's score (0 where it gave no valid answer).
fn fallback_scores(
    args: &Args,
    url: &str,
    task: &Task,
    schema: &serde_json::Value,
    records: &[smolt::data::Record],
    eval_cfg: smolt::eval::EvalConfig,
    out: &Path,
) -> anyhow::Result<(String, Vec<f64>)> {
    use smolt::teacher::{self, Cache, Client, ClientConfig, DistillConfig, Teacher};
    if !(args.fallback_timeout.is_finite() && args.fallback_timeout > 0.0) {
        anyhow::bail!("--fallback-timeout must be a positive number of seconds");
    }
    let dir = out.join("fallback");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // distill reads the schema from the task's file: write the one this evaluation uses.
    let schema_path = dir.join("schema.json");
    std::fs::write(&schema_path, serde_json::to_string_pretty(schema)?)
        .with_context(|| format!("cannot write {}", schema_path.display()))?;
    let task = Task {
        schema: Some(schema_path),
        ..task.clone()
    };
    let client = Client::new(ClientConfig {
        api_key: super::distill::api_key(None)?,
        timeout: std::time::Duration::from_secs_f64(args.fallback_timeout),
        ..ClientConfig::new(url)
    })?;
    let model = super::distill::model_of(&client, args.fallback_model.clone(), "--fallback-model")?;
    let teacher = Teacher {
        cache: Cache::open(&dir.join("cache.jsonl"))?,
        client,
    };
    let cfg = DistillConfig {
        model: model.clone(),
        samples: 1,
        concurrency: 4,
        max_retries: 2,
        temperature: 0.0,
        retry_temperature: 0.7,
        max_tokens: Some(args.max_tokens as u32),
        seed: 0,
    };
    let inputs: Vec<teacher::Input> = records
        .iter()
        .enumerate()
        .map(|(i, r)| teacher::Input {
            line: i + 1,
            text: r.input.clone(),
        })
        .collect();
    let bar = super::count_bar(inputs.len(), "fallback answers")?;
    let asked = teacher::distill(&teacher, &task, &inputs, &cfg, &|p| {
        bar.set_position(p.done as u64);
    });
    bar.finish_and_clear();
    let asked = asked?;
    if asked.labelled.is_empty() {
        let why = asked
            .report
            .dropped_inputs
            .first()
            .map_or("no reason given", |d| d.reason.as_str());
        anyhow::bail!(
            "{} gave no valid answer to any of {} records (the first failed with: {why})",
            teacher.client.endpoint(),
            records.len()
        );
    }
    let dropped: std::collections::HashSet<usize> =
        asked.report.dropped_inputs.iter().map(|d| d.line).collect();
    let mut answers = asked.labelled.iter();
    let label = format!("{model} at {}", teacher.client.endpoint());
    let mut evaluator = smolt::eval::Evaluator::new(eval_cfg);
    for (i, rec) in records.iter().enumerate() {
        let text = if dropped.contains(&(i + 1)) {
            String::new()
        } else {
            answers
                .next()
                .map(|a| a.output.to_string())
                .unwrap_or_default()
        };
        evaluator.add(smolt::eval::Sample::new(&text, &rec.output).input(&rec.input));
    }
    let scores: Vec<f64> = evaluator.records().iter().map(|r| r.score).collect();
    let records_scored = evaluator.records().to_vec();
    let report = evaluator.finish(&label);
    report.write_dir(&dir)?;
    smolt::eval::write_predictions(&dir.join("predictions.jsonl"), &records_scored)?;
    asked.report.write(&dir.join("requests.json"))?;
    eprintln!(
        "fallback {label}: {} valid answers of {}, mean field score {:.1}% (report in {})",
        asked.labelled.len(),
        records.len(),
        100.0 * report.mean_score,
        dir.display()
    );
    Ok((label, scores))
}

/// What the token limits did to an evaluation (answers cut off unfinished, prompts cut in the
/// middle), and where its report is.
fn warn_limits(
    (truncated, cut): (usize, usize),
    consequence: &str,
    max_tokens: usize,
    budget: usize,
    out: &Path,
) {
    if truncated > 0 {
        eprintln!(
            "{truncated} outputs hit the token limit (-n {max_tokens}) unfinished{consequence}"
        );
    }
    if cut > 0 {
        eprintln!("{cut} prompts were longer than {budget} tokens and were cut in the middle");
    }
    eprintln!("report: {}", out.join("report.html").display());
}

/// A tool task (`{"tools", "messages"}` records): each record decoded under its own tools'
/// constraint and scored by the function-calling leaderboard's rules.
fn run_tools(args: &Args, task: &Task, data: &Path, out: &Path) -> anyhow::Result<()> {
    if args.schema.is_some() || args.eval_config.is_some() {
        anyhow::bail!(
            "{} holds tool records: they are decoded under their tools' schemas and scored by \
             the function-calling rules, so --schema and --eval-config do not apply",
            data.display()
        );
    }
    let loaded = load_model(&args.model)?;
    let tok = &loaded.tokenizer;
    let chat = task.chat_format(tok.as_ref())?;
    let (_, examples) = smolt::task::read_jsonl(data, task, tok.as_ref())?;
    let shots = match (args.few_shot, &args.shots) {
        (Some(k), Some(path)) => {
            if !smolt::task::record::is_tool_file(path) {
                anyhow::bail!("--shots {}: not a file of tool records", path.display());
            }
            let (_, pool) = smolt::task::read_jsonl(path, task, tok.as_ref())?;
            if pool.len() < k {
                anyhow::bail!(
                    "--few-shot {k} needs {k} solved examples but {} holds {}",
                    path.display(),
                    pool.len()
                );
            }
            smolt::evaluate_tools::pick_tool_shots(&pool, k)
        }
        _ => Vec::new(),
    };
    let examples = &examples[..args.limit.unwrap_or(examples.len()).min(examples.len())];
    let engine = smolt::evaluate::engine_for_task(Arc::clone(tok), task)?;
    let budget = super::prompt_budget(&loaded.model, args.max_tokens, args.max_prompt_tokens);
    let job = ToolEvalRun {
        model: &loaded.model,
        tokenizer: tok,
        engine: &engine,
        chat: &chat,
        shots,
        max_tokens: args.max_tokens,
        prompt_budget: budget,
    };
    let bar = super::count_bar(examples.len(), "requests")?;
    let label = args.model.label(args.few_shot);
    eprintln!("tool records rendered with {}", chat.describe());
    let outcome = job.run(examples, &label, |done, passed| {
        bar.set_position(done as u64);
        bar.set_message(format!("{passed} right"));
    })?;
    bar.finish_and_clear();
    outcome.write_dir(out)?;
    print!("{}", outcome.report.to_table());
    let limits = (outcome.truncated_outputs, outcome.cut_prompts);
    warn_limits(limits, "", args.max_tokens, budget, out);
    Ok(())
}

/// `--compare A B`: per-field deltas of two finished evaluations.
fn compare(a: &Path, b: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let file = |p: &Path| {
        if p.is_dir() {
            p.join("eval.json")
        } else {
            p.to_path_buf()
        }
    };
    let read = |p: &Path| {
        let file = file(p);
        EvalReport::read(&file).with_context(|| {
            format!(
                "cannot read {} (give a folder written by `smolt eval --out`, or its eval.json)",
                file.display()
            )
        })
    };
    let tools = |p: &Path| ToolCallReport::read(&file(p)).ok().flatten();
    let cmp = match (tools(a), tools(b)) {
        (Some(ta), Some(tb)) => ta.compare(&tb),
        (None, None) => smolt::eval::compare(&read(a)?, &read(b)?),
        _ => anyhow::bail!("one of the two evaluations is of tool calls and the other is not"),
    };
    print!("{}", cmp.to_table());
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join("compare.html");
        std::fs::write(&file, cmp.to_html())
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("report: {}", file.display());
    }
    Ok(())
}

/// The answer schema and the scoring rules: `schema` unless it is `None`, then the task's
/// (from --config, or the adapter run's task); the rules from `eval_config`, else the
/// eval.toml beside the task file, else the schema's defaults.
pub fn scoring(
    schema: Option<&Path>,
    task: &smolt::task::Task,
    config: Option<&Path>,
    eval_config: Option<&Path>,
) -> anyhow::Result<(Option<serde_json::Value>, EvalConfig)> {
    let schema = schema
        .or(task.schema.as_deref())
        .map(smolt::task::schema::read_schema)
        .transpose()?;
    // A task folder's eval.toml sits beside its task.toml.
    let beside = config
        .and_then(|c| c.parent().map(|d| d.join(smolt::task::init::SCORING_FILE)))
        .filter(|p| p.is_file());
    let eval_cfg = match (eval_config.or(beside.as_deref()), &schema) {
        (Some(p), _) => load_eval_config(p)?,
        (None, Some(s)) => EvalConfig::from_schema(s),
        (None, None) => EvalConfig::default(),
    };
    let schema = match (schema, eval_cfg.copy.as_slice()) {
        (schema, []) => schema,
        (None, fields) => anyhow::bail!(
            "the scoring settings ask to copy {} from the input, but there is no schema \
             to mark them in: pass --schema",
            fields.join(", ")
        ),
        (Some(mut s), fields) => {
            let unknown = smolt::constrain::copy::mark_copy_fields(&mut s, fields);
            anyhow::ensure!(
                unknown.is_empty(),
                "`copy` names {} but the schema has no such property; copy fields are \
                 property names of the schema",
                unknown.join(", ")
            );
            Some(s)
        }
    };
    Ok((schema, eval_cfg))
}

pub fn load_eval_config(p: &Path) -> anyhow::Result<EvalConfig> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    if p.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid eval config", p.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("{}: invalid eval config", p.display()))
    }
}
