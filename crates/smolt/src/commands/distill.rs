//! `smolt distill`: label raw inputs with a large teacher model behind an OpenAI-compatible
//! endpoint, keeping only answers that satisfy the task's schema.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use smolt::task::Task;
use smolt::teacher::{self, Cache, Client, ClientConfig, DistillConfig, Progress, Teacher};

#[derive(clap::Args)]
#[command(after_help = "\
Each input goes into the task's prompt template and is sent as one user message, with the task's
JSON Schema as response_format (type json_schema, strict). Answers that are not JSON or violate
the schema are asked again with a new seed (--max-retries times), then dropped and counted.
Timeouts, 429 (waiting as long as Retry-After says), 5xx and dropped connections are retried with
backoff (--max-retries times per request); 401/403/404 stop the run.

Every answer is appended to the cache (default: OUT with .cache.jsonl) the moment it arrives:
a killed run loses nothing, and a rerun with the same settings sends nothing it already has.
The report (default: OUT with .report.json) holds requests, tokens (from `usage`), wall time,
valid / re-asked / dropped counts and, with --samples 2, how often two samples agree per field.

The API key is read from the environment (OPENAI_API_KEY, or --api-key-env NAME) and sent only
in the Authorization header; it is never written to a file or a log.

Examples:
  smolt distill --teacher https://api.openai.com --model gpt-4o-mini --inputs raw.jsonl \\
      --config task.toml --out labelled.jsonl --samples 2
  smolt serve --model qwen2.5-0.5b --port 8080 &
  smolt distill --teacher http://127.0.0.1:8080 --inputs raw.jsonl --config task.toml --out labelled.jsonl")]
pub struct Args {
    /// The teacher: an OpenAI-compatible server (root URL, its /v1, or the full
    /// /v1/chat/completions URL).
    #[arg(long)]
    teacher: String,
    /// Raw inputs: JSONL, one {"input": string} object (other keys ignored) or string per line.
    #[arg(long)]
    inputs: PathBuf,
    /// The task file (task.toml): its prompt template and its schema (required).
    #[arg(long)]
    config: PathBuf,
    /// The training file to write: {"input", "output"} per line, in input order.
    #[arg(long)]
    out: PathBuf,
    /// The model to ask (default: the first the endpoint lists at /v1/models).
    #[arg(long)]
    model: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Retries of a request after a timeout, 429, 5xx or dropped connection; and re-asks of an
    /// input whose answer is invalid.
    #[arg(long, default_value_t = 3)]
    max_retries: u32,
    /// Answers asked per input, each with its own seed; 2 measures how often they agree.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Seconds to wait for one whole answer.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Requests per second, across all workers.
    #[arg(long, value_name = "RPS")]
    rate_limit: Option<f64>,
    /// Sampling temperature (default: 0 with one sample, 1 with several: at 0 a deterministic
    /// teacher agrees with itself whatever it knows).
    #[arg(long)]
    temperature: Option<f64>,
    /// The least temperature of a re-ask after an invalid answer (a teacher at temperature 0
    /// would repeat its invalid answer).
    #[arg(long, default_value_t = 0.7)]
    retry_temperature: f64,
    /// `max_tokens` of each request (default: the endpoint's).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// The first request's seed; every sample and re-ask takes its own from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The environment variable holding the API key (unset OPENAI_API_KEY: no key is sent).
    #[arg(long, value_name = "NAME")]
    api_key_env: Option<String>,
    /// The response cache (default: OUT with the extension .cache.jsonl).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The JSON report (default: OUT with the extension .report.json).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// `dir/stem.ext` beside `out`.
fn beside(out: &Path, ext: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "distill".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.{ext}"))
}

/// The model to ask: `given`, else the first the endpoint lists at /v1/models (`flag` names
/// the option that gives one, for the error).
pub(crate) fn model_of(
    client: &Client,
    given: Option<String>,
    flag: &str,
) -> anyhow::Result<String> {
    if let Some(m) = given {
        return Ok(m);
    }
    let ids = client.models().map_err(|e| {
        anyhow::anyhow!(
            "cannot ask {} which models it has ({e}): give {flag}",
            client.endpoint()
        )
    })?;
    ids.into_iter()
        .next()
        .with_context(|| format!("{} lists no models: give {flag}", client.endpoint()))
}

pub(crate) fn api_key(env_name: Option<&str>) -> anyhow::Result<Option<String>> {
    match env_name {
        Some(name) => match std::env::var(name) {
            Ok(k) if !k.is_empty() => Ok(Some(k)),
            _ => anyhow::bail!("--api-key-env {name}: the environment variable {name} is not set"),
        },
        None => Ok(std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    if args.samples == 0 || args.concurrency == 0 {
        anyhow::bail!("--samples and --concurrency must be at least 1");
    }
    if args.max_retries >= 1000 {
        anyhow::bail!("--max-retries must be below 1000 (each re-ask takes its own seed)");
    }
    let task = Task::load(&args.config)?;
    if task.schema.is_none() {
        anyhow::bail!(
            "{} names no schema: distillation asks the teacher for answers in the task's schema",
            args.config.display()
        );
    }
    let inputs = teacher::read_inputs(&args.inputs)?;
    let client = Client::new(ClientConfig {
        api_key: api_key(args.api_key_env.as_deref())?,
        timeout: Duration::from_secs_f64(args.timeout),
        max_retries: args.max_retries,
        rate_limit: args.rate_limit,
        ..ClientConfig::new(&args.teacher)
    })?;
    let model = model_of(&client, args.model, "--model")?;
    let cache_path = args
        .cache
        .unwrap_or_else(|| beside(&args.out, "cache.jsonl"));
    let report_path = args
        .report
        .unwrap_or_else(|| beside(&args.out, "report.json"));
    let cache = Cache::open(&cache_path)?;
    if cache.skipped_lines() > 0 {
        eprintln!(
            "smolt: {} unreadable line(s) in {} (a run killed mid-write): those answers are asked again",
            cache.skipped_lines(),
            cache_path.display()
        );
    }
    if !cache.is_empty() {
        eprintln!(
            "smolt: {} answers in {}: they are not asked again",
            cache.len(),
            cache_path.display()
        );
    }
    let cfg = DistillConfig {
        model,
        samples: args.samples,
        concurrency: args.concurrency,
        max_retries: args.max_retries,
        temperature: args
            .temperature
            .unwrap_or(if args.samples > 1 { 1.0 } else { 0.0 }),
        retry_temperature: args.retry_temperature,
        max_tokens: args.max_tokens,
        seed: args.seed,
    };
    let teacher = Teacher { client, cache };
    let bar = super::count_bar(inputs.len() * cfg.samples, "answers")?;
    let outcome = teacher::distill(&teacher, &task, &inputs, &cfg, &|p: Progress| {
        bar.set_position(p.done as u64);
        bar.set_message(format!("{} valid, {} dropped", p.valid, p.dropped));
    });
    bar.finish_and_clear();
    let outcome = outcome?;
    outcome.write_labelled(&args.out)?;
    outcome.report.write(&report_path)?;
    print!("{}", outcome.report.to_table());
    eprintln!(
        "wrote {} records to {}, the report to {}",
        outcome.labelled.len(),
        args.out.display(),
        report_path.display()
    );
    Ok(())
}
