//! The `smolt` command line: a thin layer over the library crates.

mod commands;

use clap::{Parser, Subcommand};

/// smolt — turn a small open LLM into a cheap, specialised model for one job.
///
/// Models are GGUF files. Wherever a command takes --model, you can give a path to a
/// .gguf file or the name of the default model, `gemma-3-270m`, which smolt downloads,
/// verifies and caches on first use (set SMOLT_MODEL_DIR to choose where).
#[derive(Parser)]
#[command(
    name = "smolt",
    version,
    about,
    long_about,
    max_term_width = 100,
    disable_version_flag = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Print the version (with --verbose: also the CPU features and SIMD switches in use).
    #[arg(short = 'V', long)]
    version: bool,

    /// With --version: also print what this CPU runs (features, SIMD path, SMOLT_* switches).
    #[arg(long, requires = "version")]
    verbose: bool,

    /// Worker threads for the compute kernels (default: the number of cores).
    #[arg(long, global = true, env = "SMOLT_THREADS")]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The main job, end to end: synthetic receipts → LoRA training → few-shot baseline vs
    /// fine-tuned evaluation, with an HTML report (10-20 minutes; --quick: 3); --task tools:
    /// the same for function calling on your own tool list.
    Demo(commands::demo::Args),
    /// Start a new task: a commented config, schema, scoring rules and example data.
    Init(commands::init::Args),
    /// Show a GGUF file's metadata and tensor table.
    Inspect(commands::inspect::Args),
    /// Download, verify and cache the default model (or check a local file).
    Fetch(commands::fetch::Args),
    /// Continue a prompt (greedy or sampled), printing text or token ids.
    Generate(commands::generate::Args),
    /// Print the token ids of a text.
    Tokenize(commands::tokenize::Args),
    /// Train a LoRA adapter on JSONL examples, directly over the quantized model.
    Train(commands::train::Args),
    /// Find the best training recipe within a time budget, scored on validation records.
    Tune(commands::tune::Args),
    /// Make and split datasets (synthetic receipts, train/valid/test splits).
    Data(commands::data::Args),
    /// Evaluate a model (and adapter) field by field on JSONL records; writes an HTML report.
    Eval(commands::eval::Args),
    /// Export an adapter for llama.cpp, Ollama, PEFT or vLLM, or merge it into the base GGUF.
    Export(commands::export::Args),
    /// Measure prefill and decode speed (as llama-bench's pp and tg figures).
    Bench(commands::bench::Args),
    /// Serve the model and its adapters over an OpenAI-compatible HTTP API.
    Serve(commands::serve::Args),
    /// Label raw inputs with a large teacher model (any OpenAI-compatible endpoint), keeping
    /// the answers that satisfy the task's schema: training data from inputs alone.
    Distill(commands::distill::Args),
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match (cli.command, cli.version) {
        (Some(c), false) => c,
        (None, true) => {
            println!("smolt {}", env!("CARGO_PKG_VERSION"));
            if cli.verbose {
                println!("{}", smolt::quant::cpu::cpu());
            }
            return Ok(());
        }
        (Some(_), true) => anyhow::bail!("--version takes no command (try `smolt --version`)"),
        (None, false) => anyhow::bail!("no command given (see `smolt --help`)"),
    };
    commands::init_threads(cli.threads)?;
    match command {
        Command::Demo(args) => commands::on_compute_pool(|| commands::demo::run(args)),
        Command::Init(args) => commands::init::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Fetch(args) => commands::fetch::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Generate(args) => commands::on_compute_pool(|| commands::generate::run(args)),
        Command::Export(args) => commands::on_compute_pool(|| commands::export::run(args)),
        Command::Bench(args) => commands::on_compute_pool(|| commands::bench::run(args)),
        Command::Train(args) => commands::on_compute_pool(|| commands::train::run(args)),
        Command::Tune(args) => commands::on_compute_pool(|| commands::tune::run(args)),
        Command::Data(args) => commands::data::run(args),
        Command::Eval(args) => commands::on_compute_pool(|| commands::eval::run(args)),
        // Not on the compute pool: the server's worker enters the pool for each generation,
        // and its HTTP threads must never hold a pool thread.
        Command::Serve(args) => commands::serve::run(args),
        // Network-bound: its workers wait on the teacher, not on the compute pool.
        Command::Distill(args) => commands::distill::run(args),
    }
}
