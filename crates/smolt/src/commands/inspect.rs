//! `smolt inspect`: what is inside a GGUF file.

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, or `gemma-3-270m` for the default model.
    #[arg(default_value = smolt::hub::DEFAULT_MODEL)]
    model: String,
    /// Show only the metadata.
    #[arg(long, conflicts_with = "tensors")]
    metadata: bool,
    /// Show only the tensor table.
    #[arg(long)]
    tensors: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = super::resolve_model(&args.model)?;
    let g = smolt::gguf::Gguf::open(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if args.metadata {
        print!("{}", g.metadata_summary());
    } else if args.tensors {
        print!("{}", g.tensor_table());
    } else {
        print!("{}", g.summary());
        // What the weights say about the vocabulary: added tokens nobody trained.
        if let Ok(tok) = smolt::tokenizer::Tokenizer::from_gguf(&g) {
            let untrained: Vec<String> = tok
                .untrained_tokens()
                .iter()
                .map(|&id| format!("{} ({id})", tok.token_piece(id)))
                .collect();
            for t in &untrained {
                println!(
                    "untrained added token {t}: {}",
                    smolt::tokenizer::Tokenizer::UNTRAINED_WHY
                );
            }
        }
    }
    Ok(())
}
