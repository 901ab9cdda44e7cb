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
    let bar = super::count_bar(records.len(), "records")?;
    let label = args.model.label(args.few_shot);
    let outcome = job.run(records, eval_cfg, &label, |done, score| {
        bar.set_position(done as u64);
        bar.set_message(format!("last: {:.0}% of fields", 100.0 * score));
    })?;
    bar.finish_and_clear();
    outcome.write_dir(out)?;
    let report = outcome.report;
    print!("{}", report.to_table());
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
    let read = |p: &Path| {
        let file = if p.is_dir() {
            p.join("eval.json")
        } else {
            p.to_path_buf()
        };
        EvalReport::read(&file).with_context(|| {
            format!(
                "cannot read {} (give a folder written by `smolt eval --out`, or its eval.json)",
                file.display()
            )
        })
    };
    let file = |p: &Path| {
        if p.is_dir() {
            p.join("eval.json")
        } else {
            p.to_path_buf()
        }
    };
    let tools = |p: &Path| ToolCallReport::read(&file(p)).ok().flatten();
    match (tools(a), tools(b)) {
        (Some(ta), Some(tb)) => {
            print!("{}", ta.compare_table(&tb));
            return Ok(());
        }
        (None, None) => {}
        _ => anyhow::bail!("one of the two evaluations is of tool calls and the other is not"),
    }
    let (ra, rb) = (read(a)?, read(b)?);
    let cmp = smolt::eval::compare(&ra, &rb);
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
