//! `smolt eval`: run the model on every record, unpack its JSON and compare it field by field
//! with the truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use smolt::constrain::{ConstraintEngine, ConstraintSpec, Finish, GenerateLimits};
use smolt::decode::ModelLogits;
use smolt::eval::{EvalConfig, Evaluator, Sample};
use smolt::train::TrainConfig;

use super::{load_model, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "\
The prompt is rendered with the same template as training: the adapter run's config.toml if
--adapter is a run directory, else --config, else the default template.

Examples:
  smolt eval --data valid.jsonl --schema schema.json --adapter runs/receipts --out runs/receipts/eval
  smolt eval --data valid.jsonl --schema schema.json --out runs/base-eval --limit 50")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Records to evaluate (JSONL with `input` and `output`).
    #[arg(long)]
    data: PathBuf,
    /// JSON Schema of the answer: decoding is constrained by it, and it sets the field defaults.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// A training config (TOML) whose template and max_len to use.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Scoring settings (TOML or JSON: per-field normalisers, number tolerance).
    #[arg(long)]
    eval_config: Option<PathBuf>,
    /// Folder for eval.json, report.html and report.txt.
    #[arg(long)]
    out: PathBuf,
    /// Evaluate only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Cut prompts longer than this as training does (default: only the model's context).
    #[arg(long)]
    max_prompt_tokens: Option<usize>,
    /// Maximum answer tokens per record.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 160)]
    max_tokens: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = prompt_config(&args)?;
    let records = smolt::data::read_jsonl(&args.data)?;
    let records = &records[..args.limit.unwrap_or(records.len()).min(records.len())];
    if records.is_empty() {
        anyhow::bail!("{} holds no records", args.data.display());
    }
    let schema: Option<serde_json::Value> = match &args.schema {
        Some(p) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{} is not JSON", p.display()))?,
        ),
        None => None,
    };
    let eval_cfg = match (&args.eval_config, &schema) {
        (Some(p), _) => load_eval_config(p)?,
        (None, Some(s)) => EvalConfig::from_schema(s),
        (None, None) => EvalConfig::default(),
    };
    let loaded = load_model(&args.model)?;
    let tok = &loaded.tokenizer;
    let constraint = match &schema {
        Some(s) => {
            let engine = ConstraintEngine::new(Arc::clone(tok))?;
            Some(engine.compile(&ConstraintSpec::JsonSchema(s.clone()))?)
        }
        None => None,
    };
    // Training truncates prompts to fit max_len for memory; at eval only the context limits
    // them (cutting the middle of a receipt would hide the very fields being extracted).
    let budget = match args.max_prompt_tokens {
        Some(n) => n,
        None => loaded
            .model
            .spec
            .context_length
            .saturating_sub(args.max_tokens),
    };
    let mut evaluator = Evaluator::new(eval_cfg);
    let bar = indicatif::ProgressBar::new(records.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} records  {msg}  [{elapsed_precise}, ETA {eta}]",
        )?,
    );
    let mut truncated = 0;
    for rec in records {
        let input = rec.input.as_str();
        let prompt = encode_prompt(&cfg, tok, input, budget.max(16));
        let start = Instant::now();
        let (ids, finish) = match &constraint {
            Some(c) => {
                let mut state = c.start();
                let mut source = ModelLogits::new(&loaded.model);
                let out = smolt::constrain::generate_constrained(
                    &mut source,
                    &prompt,
                    &mut state,
                    GenerateLimits::new(args.max_tokens),
                    smolt::constrain::greedy,
                )?;
                (out.ids, Some(out.finish))
            }
            None => {
                let opts = smolt::decode::GenerateOptions {
                    max_new_tokens: args.max_tokens,
                    ..Default::default()
                };
                let g = smolt::decode::generate(&loaded.model, &prompt, &opts, |_| true)?;
                (g.ids, None)
            }
        };
        let secs = start.elapsed().as_secs_f64();
        if finish == Some(Finish::Truncated) {
            truncated += 1;
        }
        let text = tok.decode(&ids, true);
        let r = evaluator.add(
            Sample::new(&text, &rec.output)
                .input(input)
                .timing(secs, ids.len()),
        );
        bar.set_message(format!("last: {:.0}% of fields", 100.0 * r.score));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let label = match &args.model.adapter {
        Some(a) => format!("{} + {}", args.model.model, a.display()),
        None => args.model.model.clone(),
    };
    let report = evaluator.finish(&label);
    report
        .write_dir(&args.out)
        .with_context(|| format!("cannot write the report to {}", args.out.display()))?;
    print!("{}", report.to_table());
    if truncated > 0 {
        eprintln!(
            "{truncated} outputs hit the token limit (-n {}) unfinished and count as invalid",
            args.max_tokens
        );
    }
    eprintln!("report: {}", args.out.join("report.html").display());
    Ok(())
}

/// The training config whose prompt template applies: the adapter run's own, else --config,
/// else the defaults.
fn prompt_config(args: &Args) -> anyhow::Result<TrainConfig> {
    let run_cfg = args.model.adapter.as_ref().map(|d| d.join("config.toml"));
    let file = match (&run_cfg, &args.config) {
        (_, Some(c)) => Some(c.as_path()),
        (Some(r), None) if r.is_file() => Some(r.as_path()),
        _ => None,
    };
    TrainConfig::load(file, &[])
}

/// The prompt exactly as training tokenized it (same template, same truncation rule), without
/// the answer.
fn encode_prompt(
    cfg: &TrainConfig,
    tok: &smolt::tokenizer::Tokenizer,
    input: &str,
    budget: usize,
) -> Vec<u32> {
    let ex = smolt::train::data::TextExample {
        prompt: cfg.template.replace("{input}", input),
        answer: String::new(),
        answer_json: None,
        source: smolt::train::data::Location {
            file: PathBuf::from("<eval>"),
            line: 0,
        },
    };
    // The empty answer is only its end token; dropping it leaves the truncated prompt.
    match smolt::train::data::tokenize_example(&ex, tok, budget + 1, cfg.overlong) {
        Some((mut e, _)) => {
            e.ids.pop();
            e.ids
        }
        None => smolt::train::TextEncoder::encode(tok, &ex.prompt, true),
    }
}

fn load_eval_config(p: &Path) -> anyhow::Result<EvalConfig> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    if p.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid eval config", p.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("{}: invalid eval config", p.display()))
    }
}
