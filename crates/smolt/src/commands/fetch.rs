//! `smolt fetch`: get the default model ahead of time (e.g. in a CI setup step).

#[derive(clap::Args)]
pub struct Args {
    /// The model to fetch: `gemma-3-270m` (default) or `hf:owner/repo/file.gguf`.
    #[arg(default_value = smolt::hub::DEFAULT_MODEL)]
    model: String,
    /// Re-hash the cached default model even if its size looks right.
    #[arg(long)]
    verify: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = super::resolve_model(&args.model)?;
    if args.verify {
        eprintln!("smolt: verifying the sha256 of {}…", path.display());
        smolt::hub::verify_cached()?;
        eprintln!("smolt: sha256 verified");
    }
    println!("{}", path.display());
    Ok(())
}
