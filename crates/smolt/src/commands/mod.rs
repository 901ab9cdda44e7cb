//! One module per subcommand; shared argument handling lives here.

pub mod bench;
pub mod data;
pub mod demo;
pub mod distill;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod generate;
pub mod init;
pub mod inspect;
pub mod serve;
pub mod tokenize;
pub mod train;
pub mod tune;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use smolt::model::{Model, Precision};
use smolt::task::Task;
use smolt::tokenizer::Tokenizer;

/// The task whose prompts and answer layout apply: `--config` (a task file), else the task the
/// adapter's training run recorded (`--adapter` a run directory), else none.
pub fn task_of(config: Option<&Path>, adapter: Option<&Path>) -> anyhow::Result<Option<Task>> {
    if let Some(c) = config {
        return Task::load(c).map(Some);
    }
    match adapter {
        Some(dir) => Task::of_run(dir),
        None => Ok(None),
    }
}

/// Size the global compute pool once, before any kernel runs.
pub fn init_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let n = match threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // The allocation policy applies to threads that have not allocated yet: set it before
    // the pool's threads start.
    smolt::model::keep_freed_memory();
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        // The main thread's budget: commands run on a pool thread (`on_compute_pool`).
        .stack_size(8 << 20)
        .build_global()
        .context("could not start the compute thread pool")
}

/// Runs a command on one of the compute pool's threads. The kernels split every product
/// across the pool; called from a thread outside it, each split hands the whole job over to
/// a worker and puts the caller to sleep until it is done: two thread switches per product
/// (≈ 10 µs each on a VM), and a decoded token makes over a hundred products. From inside,
/// the calling thread does its share and the others steal the rest.
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Turn a --model value into a local file, fetching the default model if needed. Progress
/// goes to stderr so that stdout stays clean for the command's own output.
pub fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    let mut progress = |msg: &str| eprintln!("smolt: {msg}");
    smolt::hub::resolve(spec, &mut progress).with_context(|| format!("cannot use model `{spec}`"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Quantized weights, 8-bit activations inside the products (like llama.cpp): fast.
    Fast,
    /// f32 activations on dequantized weights: the reference arithmetic (PyTorch float32).
    F32,
}

/// The options every command that runs the model shares.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A .gguf file, `gemma-3-270m` (the default, fetched on first use) or `hf:owner/repo/file.gguf`.
    #[arg(short, long, default_value = smolt::hub::DEFAULT_MODEL, env = "SMOLT_MODEL")]
    pub model: String,
    /// Arithmetic of the forward pass.
    #[arg(long, value_enum, default_value = "fast")]
    pub precision: PrecisionArg,
    /// A LoRA adapter to apply: a `smolt train` run directory, any PEFT LoRA folder
    /// (adapter_model.safetensors + adapter_config.json) or a llama.cpp GGUF LoRA file.
    #[arg(long, value_name = "PATH")]
    pub adapter: Option<PathBuf>,
}

impl ModelArgs {
    pub fn precision(&self) -> Precision {
        match self.precision {
            PrecisionArg::Fast => Precision::Fast,
            PrecisionArg::F32 => Precision::F32,
        }
    }

    /// How reports name what was evaluated: the model, its adapter, the number of shots.
    pub fn label(&self, few_shot: Option<usize>) -> String {
        let mut label = match &self.adapter {
            Some(a) => format!("{} + {}", self.model, a.display()),
            None => self.model.clone(),
        };
        if let Some(k) = few_shot {
            label += &format!(" ({k}-shot)");
        }
        label
    }
}

/// A progress bar over `n` things counted in `unit` ("records", "prompts"), with the elapsed
/// time and an ETA; `{msg}` shows whatever the caller sets.
pub fn count_bar(n: usize, unit: &str) -> anyhow::Result<indicatif::ProgressBar> {
    let template =
        format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}}, ETA {{eta}}]");
    Ok(indicatif::ProgressBar::new(n as u64)
        .with_style(indicatif::ProgressStyle::with_template(&template)?))
}

/// How many prompt tokens an answer of `max_tokens` leaves room for in `model`'s context
/// (at least 16), unless the user set it.
pub fn prompt_budget(model: &Model, max_tokens: usize, user: Option<usize>) -> usize {
    user.unwrap_or_else(|| model.spec.context_length.saturating_sub(max_tokens))
        .max(16)
}

pub struct Loaded {
    pub model: Model,
    pub tokenizer: std::sync::Arc<Tokenizer>,
}

/// Resolve, map and bind a model and its tokenizer, with errors that name the file.
pub fn load_model(args: &ModelArgs) -> anyhow::Result<Loaded> {
    open_model(args)?.load(args)
}

/// A model file mapped and its tokenizer built, its weights not bound yet: work that needs
/// only the vocabulary (the constraint engine) can start while [`Opened::load`] binds them.
pub struct Opened {
    path: PathBuf,
    file: smolt::gguf::Gguf,
    pub tokenizer: std::sync::Arc<Tokenizer>,
    started: Instant,
}

/// The first half of [`load_model`]: resolve and map the file, build its tokenizer.
pub fn open_model(args: &ModelArgs) -> anyhow::Result<Opened> {
    let path = resolve_model(&args.model)?;
    let started = Instant::now();
    let file = smolt::gguf::Gguf::open(&path)
        .map_err(smolt::model::ModelError::from)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)
        .with_context(|| format!("{} has no usable tokenizer", path.display()))?;
    Ok(Opened {
        path,
        file,
        tokenizer: std::sync::Arc::new(tokenizer),
        started,
    })
}

impl Opened {
    /// The second half of [`load_model`]: bind the weights and attach the adapter.
    pub fn load(self, args: &ModelArgs) -> anyhow::Result<Loaded> {
        let path = self.path;
        let mut model = Model::from_gguf(self.file, args.precision())
            .with_context(|| format!("cannot load {}", path.display()))?;
        if let Some(dir) = &args.adapter {
            smolt::lora::attach_adapter(&mut model, dir)
                .with_context(|| format!("cannot apply the adapter in {}", dir.display()))?;
        }
        if std::env::var_os("SMOLT_LOG").is_some() {
            eprintln!(
                "smolt: loaded {} in {:.2} s",
                path.display(),
                self.started.elapsed().as_secs_f64()
            );
        }
        Ok(Loaded {
            model,
            tokenizer: self.tokenizer,
        })
    }
}
