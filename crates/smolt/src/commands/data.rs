//! `smolt data`: make and split datasets.

use std::path::PathBuf;

use anyhow::Context;
use smolt::data::{SplitSpec, SynthConfig};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand)]
enum DataCommand {
    /// Generate a synthetic dataset (OCR-like text in, truth JSON out).
    Synth(SynthArgs),
    /// Split a JSONL file into train / valid / test, at random or ordered by a field.
    Split(SplitArgs),
    /// Check data files before training: format, fields, schema, duplicates, token lengths.
    Check(CheckArgs),
    /// How newer records differ from those a model was trained on: input lengths, input line
    /// layouts never seen before, answer values and formats never seen before.
    Drift(DriftArgs),
    /// Convert a public function-calling dataset (xLAM, Glaive) into smolt's tool records.
    ImportTools(ImportToolsArgs),
}

#[derive(clap::Args)]
#[command(after_help = "\
Formats:
  xlam    {\"query\", \"tools\", \"answers\"} per line or a JSON array (Salesforce's
          xlam-function-calling-60k and data made like it): Python type names become JSON
          Schema; an argument with a default or an `optional` type is not required; an empty
          answer list is a request no tool fits.
  glaive  {\"system\", \"chat\"} (glaive-function-calling-v2): the functions from the system
          text, the first user turn and the first assistant reply (a <functioncall> or text).

Records that cannot be read are skipped and listed with their line. Check the result before
training (`smolt data check OUT --config task.toml`: unlisted tools, arguments against the
schemas) and split it (`smolt data split`). Download the dataset yourself; never train on the
Berkeley Function Calling Leaderboard's data, which is an external test.

Examples:
  smolt data import-tools xlam_function_calling_60k.json --format xlam --out data/xlam.jsonl
  smolt data import-tools glaive-v2.jsonl --format glaive --limit 5000 --out data/glaive.jsonl")]
struct ImportToolsArgs {
    /// The dataset file (JSON lines, or one JSON array).
    input: PathBuf,
    #[arg(long, value_parser = ["xlam", "glaive"])]
    format: String,
    /// Keep at most this many records (the first ones read).
    #[arg(long)]
    limit: Option<usize>,
    /// Where to write the records (JSONL).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
#[command(after_help = "\
Layouts are compared as shapes: runs of digits become 9, of capitals A, of small letters a
(\"Thu Oct 29 2020 12:33pm\" is \"Aa Aa 9 9 9:9a\"), so a line whose shape the old set never
shows is a format the model has not seen, whatever its words and numbers. Each answer field
gets the share of new values and of new formats the old set lacks, with examples. Run it on
each new batch of inputs before trusting the model on it; where much is unseen, label some
of it (smolt distill) and train again.

Examples:
  smolt data drift data/train.jsonl incoming.jsonl
  smolt data drift data/train.jsonl incoming.jsonl --out drift   # drift.json, drift.html")]
struct DriftArgs {
    /// The records the model was trained on (JSONL of {"input", "output"}).
    old: PathBuf,
    /// The newer records (outputs may be absent: only inputs are compared then).
    new: PathBuf,
    /// Folder for drift.json and drift.html (the length histograms and tables).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(after_help = "\
Every problem is listed with file:line. Errors (lines training would refuse: not JSON, missing
fields, answers that violate --schema) make the command exit with status 1; warnings
(duplicates, one prompt with two answers, empty answers) do not. Token lengths use the model's
tokenizer and the config's prompt template (for {\"messages\"} data: the model's chat template or
the built-in Gemma 3 format, as the config's chat_template says).

Examples:
  smolt data check train.jsonl valid.jsonl --schema schema.json
  smolt data check data.jsonl --config task.toml")]
struct CheckArgs {
    /// JSONL files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// JSON Schema every answer must satisfy (default: the task's `schema`, if --config names
    /// one).
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Task file (task.toml) whose template, chat_template, max_len and schema apply (default:
    /// the built-in ones).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model whose tokenizer counts the tokens (a .gguf file or `gemma-3-270m`).
    #[arg(short, long, default_value = smolt::hub::DEFAULT_MODEL, env = "SMOLT_MODEL")]
    model: String,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    smolt data synth receipts --n 1000 --seed 7 --year 2019 --out data/2019\n  \
    smolt data synth receipts --n 200 --seed 8 --year 2020 --noise 0.02 --out data/2020\n  \
    smolt data synth tools --tools tools.json --n 2000 --seed 1 --out data/tools\n  \
    smolt data synth tools --n 600 --out data/home   # the built-in smart-home/calendar/shop tools\n\n\
tools: requests with the calls that answer them, from only a tool list (OpenAI's `tools` \
array): arguments sampled from each tool's JSON Schema (enums, integer and number ranges, \
strings by parameter name or format, arrays, nested objects; a schema's `examples`), many \
phrasings, a random subset of the other tools listed as distractors, and a share of requests \
no listed tool fits (--no-call) answered in text. Writes train.jsonl, valid.jsonl and \
test.jsonl (80/10/10, distinct requests), tools.json and a task.toml to train on \
(`smolt train --config DIR/task.toml --out runs/tools`).")]
struct SynthArgs {
    /// What to generate: `receipts` or `tools` (function calling).
    #[arg(value_parser = ["receipts", "tools"])]
    kind: String,
    /// tools: the tool list (JSON: OpenAI's `tools` array); default: the built-in
    /// smart-home, calendar and shop tools.
    #[arg(long, value_name = "FILE")]
    tools: Option<PathBuf>,
    /// tools: the share of requests that no listed tool fits.
    #[arg(long, default_value_t = 0.15)]
    no_call: f64,
    /// Number of records.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Same seed and options give identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The period: retailers, formats, layouts, prices and tax rates of that year.
    #[arg(long, default_value_t = 2019)]
    year: u16,
    /// OCR noise: probability that a printed character is corrupted (0 gives clean text).
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// Countries to draw from (us, ca, gb, de, au, my); default all.
    #[arg(long, value_delimiter = ',')]
    countries: Vec<String>,
    /// Keep only these fields of the truth (comma-separated, e.g. retailer,timestamp,total);
    /// the schema is narrowed to match. Default: the whole receipt.
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Output folder: receives receipts.jsonl and schema.json (tools: train.jsonl,
    /// valid.jsonl, test.jsonl, tools.json, task.toml).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    smolt data split receipts.jsonl --valid 0.1 --test 0.1 --out splits/\n  \
    smolt data split receipts.jsonl --by timestamp --test-from 2020 --out splits/")]
struct SplitArgs {
    /// The JSONL file to split.
    file: PathBuf,
    /// Fraction for validation (random split).
    #[arg(long, default_value_t = 0.1)]
    valid: f64,
    /// Fraction for test (random split).
    #[arg(long, default_value_t = 0.1)]
    test: f64,
    /// Seed of the random split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Split in order of this field instead (a JSON pointer such as /output/date, or a field of `output`).
    #[arg(long, requires = "test_from")]
    by: Option<String>,
    /// With --by: records whose field is at or after this value go to test (e.g. 2020).
    #[arg(long, requires = "by")]
    test_from: Option<String>,
    /// Output folder: receives train.jsonl, valid.jsonl and test.jsonl.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Synth(a) => synth(a),
        DataCommand::Split(a) => split(a),
        DataCommand::Check(a) => check(a),
        DataCommand::Drift(a) => drift(a),
        DataCommand::ImportTools(a) => import_tools(a),
    }
}

fn import_tools(a: ImportToolsArgs) -> anyhow::Result<()> {
    let format = smolt::data::ToolFormat::parse(&a.format).expect("clap checked the format");
    let text = std::fs::read_to_string(&a.input)
        .with_context(|| format!("cannot read {} as UTF-8 text", a.input.display()))?;
    let mut got = smolt::data::import_tool_records(&text, format);
    for (line, why) in got.skipped.iter().take(5) {
        eprintln!("{}:{line}: skipped: {why}", a.input.display());
    }
    if got.skipped.len() > 5 {
        eprintln!("… and {} more skipped", got.skipped.len() - 5);
    }
    if got.records.is_empty() {
        anyhow::bail!(
            "{}: no record could be read as {} (is --format right?)",
            a.input.display(),
            a.format
        );
    }
    if let Some(n) = a.limit {
        got.records.truncate(n);
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut body = String::new();
    for r in &got.records {
        body.push_str(&r.to_string());
        body.push('\n');
    }
    std::fs::write(&a.out, body).with_context(|| format!("cannot write {}", a.out.display()))?;
    let calls = got
        .records
        .iter()
        .filter(|r| r["messages"][1].get("tool_calls").is_some())
        .count();
    eprintln!(
        "wrote {} tool records ({} with calls, {} answered in text) to {}; {} skipped",
        got.records.len(),
        calls,
        got.records.len() - calls,
        a.out.display(),
        got.skipped.len()
    );
    Ok(())
}

fn synth(a: SynthArgs) -> anyhow::Result<()> {
    if a.kind == "tools" {
        return synth_tools(a);
    }
    if a.tools.is_some() {
        anyhow::bail!("--tools is for `smolt data synth tools`");
    }
    if !(0.0..=1.0).contains(&a.noise) {
        anyhow::bail!("--noise must be between 0 and 1");
    }
    let countries = a
        .countries
        .iter()
        .map(|c| {
            smolt::data::Country::parse(c)
                .with_context(|| format!("unknown country `{c}` (use us, ca, gb, de, au or my)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = SynthConfig {
        n: a.n,
        seed: a.seed,
        year: a.year,
        noise_rate: a.noise,
        countries,
        ..SynthConfig::default()
    };
    let fields: Vec<&str> = a.fields.iter().map(|f| f.trim()).collect();
    let mut schema_value = smolt::data::receipts_schema();
    let mut records = smolt::data::receipts(&cfg);
    if !fields.is_empty() {
        schema_value = smolt::data::select_schema(&schema_value, &fields)
            .map_err(|e| anyhow::anyhow!("--fields: {e}"))?;
        for r in &mut records {
            r.output = smolt::data::select_value(&r.output, &fields);
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let data = a.out.join("receipts.jsonl");
    smolt::data::write_jsonl(&data, &records)?;
    let schema = a.out.join("schema.json");
    std::fs::write(&schema, serde_json::to_string_pretty(&schema_value)?)
        .with_context(|| format!("cannot write {}", schema.display()))?;
    eprintln!(
        "wrote {} receipts ({}) to {} and their schema to {}",
        records.len(),
        a.year,
        data.display(),
        schema.display()
    );
    Ok(())
}

/// `smolt data synth tools`: train/valid/test splits of tool records, the tools and a task.
fn synth_tools(a: SynthArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&a.no_call) {
        anyhow::bail!("--no-call must be between 0 and 1");
    }
    if a.n < 3 {
        anyhow::bail!("--n must be at least 3 (one record for each of train, valid and test)");
    }
    let tools = read_tool_list(a.tools.as_deref())?;
    let cfg = smolt::data::ToolSynthConfig {
        n: a.n,
        seed: a.seed,
        no_call: a.no_call,
    };
    let records = smolt::data::synth_tool_records(&tools, &cfg).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}",
            a.tools
                .as_ref()
                .map_or("the built-in tools".to_string(), |p| p
                    .display()
                    .to_string())
        )
    })?;
    let n_eval = (a.n / 10).max(1);
    let n_train = a.n - 2 * n_eval;
    write_tool_set(&a.out, &tools, &records, [n_train, n_eval, n_eval])?;
    let no_call = records
        .iter()
        .filter(|r| r["messages"][1].get("tool_calls").is_none())
        .count();
    eprintln!(
        "wrote {} tool records ({no_call} without a call) to {}: train {n_train}, valid {n_eval}, test {n_eval}; tools.json, task.toml",
        records.len(),
        a.out.display()
    );
    Ok(())
}

/// The tool list in `path` (OpenAI's `tools` array), checked as the server and training check
/// it so that no data is made for tools they would refuse; the built-in smart-home, calendar
/// and shop tools without a path.
pub(crate) fn read_tool_list(path: Option<&std::path::Path>) -> anyhow::Result<serde_json::Value> {
    let Some(p) = path else {
        return Ok(smolt::data::builtin_tools());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", p.display()))?;
    smolt::constrain::ToolSet::from_openai(&v)
        .with_context(|| format!("{}: not a usable tool list", p.display()))?;
    Ok(v)
}

/// Writes `records` to `dir` as train.jsonl, valid.jsonl and test.jsonl (`sizes`, in that
/// order, taken from the start), with tools.json and a task.toml to train on them.
pub(crate) fn write_tool_set(
    dir: &std::path::Path,
    tools: &serde_json::Value,
    records: &[serde_json::Value],
    sizes: [usize; 3],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        sizes.iter().sum::<usize>() <= records.len(),
        "{} records cannot fill splits of {sizes:?}",
        records.len()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rest = records;
    for (name, n) in ["train.jsonl", "valid.jsonl", "test.jsonl"]
        .into_iter()
        .zip(sizes)
    {
        let (part, after) = rest.split_at(n);
        rest = after;
        let file = dir.join(name);
        let mut text = String::new();
        for r in part {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let file = dir.join("tools.json");
    std::fs::write(&file, serde_json::to_string_pretty(tools)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let file = dir.join("task.toml");
    std::fs::write(&file, TOOL_TASK_TOML)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

/// The task file beside a synthetic tool set. Prompts list the tools, so they run long.
pub(crate) const TOOL_TASK_TOML: &str =
    "# Function calling on these tools: made by `smolt data synth tools`.\n\
     data = \"train.jsonl\"\nvalid = \"valid.jsonl\"\n\
     # Prompts list the tools, so they are long; `smolt data check` shows the lengths.\n\
     max_len = 1024\n";

/// Reads records whose `output` may be absent (raw inputs): `{"input"}` lines or strings.
fn read_for_drift(path: &std::path::Path) -> anyhow::Result<Vec<smolt::data::Record>> {
    let inputs = smolt::teacher::read_inputs(path)?;
    let text = std::fs::read_to_string(path)?;
    let outputs: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("output").cloned())
                .unwrap_or(serde_json::Value::Null)
        })
        .collect();
    Ok(inputs
        .into_iter()
        .zip(outputs)
        .map(|(i, output)| smolt::data::Record {
            input: i.text,
            output,
        })
        .collect())
}

fn drift(a: DriftArgs) -> anyhow::Result<()> {
    let old = read_for_drift(&a.old)?;
    let new = read_for_drift(&a.new)?;
    let report = smolt::data::drift::drift(&old, &new);
    print!("{}", report.to_table());
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let len = |rs: &[smolt::data::Record]| -> Vec<usize> {
            rs.iter().map(|r| r.input.chars().count()).collect()
        };
        std::fs::write(
            out.join("drift.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )
        .with_context(|| format!("cannot write {}", out.join("drift.json").display()))?;
        std::fs::write(
            out.join("drift.html"),
            report.to_html(&len(&old), &len(&new)),
        )
        .with_context(|| format!("cannot write {}", out.join("drift.html").display()))?;
        eprintln!("report: {}", out.join("drift.html").display());
    }
    Ok(())
}

fn split(a: SplitArgs) -> anyhow::Result<()> {
    let records = smolt::data::read_jsonl(&a.file)?;
    let spec = match (a.by, a.test_from) {
        (Some(key), Some(from)) => SplitSpec::Ordered {
            key,
            boundaries: vec![from],
        },
        _ => SplitSpec::Random {
            valid_frac: a.valid,
            test_frac: a.test,
            seed: a.seed,
        },
    };
    let splits = smolt::data::split(records, &spec)?;
    splits.write(&a.out)?;
    eprintln!("{} → {}", splits.summary(), a.out.display());
    Ok(())
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let task = match &a.config {
        Some(c) => smolt::task::Task::load(c)?,
        None => smolt::task::Task::default(),
    };
    // --schema, else the task's own.
    let schema = a
        .schema
        .as_deref()
        .or(task.schema.as_deref())
        .map(smolt::task::AnswerSchema::load)
        .transpose()?;
    let path = super::resolve_model(&a.model)?;
    let gguf = smolt::gguf::Gguf::open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let tok = std::sync::Arc::new(
        smolt::tokenizer::Tokenizer::from_gguf(&gguf)
            .with_context(|| format!("cannot read the tokenizer of {}", path.display()))?,
    );
    let mut failed = 0;
    for (i, f) in a.files.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let mut r = smolt::task::check::check_file(f, &task, tok.as_ref(), schema.as_ref());
        if r.format == Some(smolt::task::Format::Tools) {
            r.errors
                .extend(smolt::evaluate_tools::unreachable_answers(f, &task, &tok)?);
        }
        print!("{r}");
        failed += !r.is_ok() as usize;
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files have errors", a.files.len());
    }
    Ok(())
}
