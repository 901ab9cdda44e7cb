//! One module per subcommand; shared argument handling lives here.

pub mod fetch;
pub mod inspect;
pub mod tokenize;

use std::path::PathBuf;

use anyhow::Context;

/// Size the global compute pool once, before any kernel runs.
pub fn init_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let n = match threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("could not start the compute thread pool")
}

/// Turn a --model value into a local file, fetching the default model if needed. Progress
/// goes to stderr so that stdout stays clean for the command's own output.
pub fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    let mut progress = |msg: &str| eprintln!("smolt: {msg}");
    smolt::hub::resolve(spec, &mut progress).with_context(|| format!("cannot use model `{spec}`"))
}
