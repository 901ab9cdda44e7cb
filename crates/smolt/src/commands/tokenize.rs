//! `smolt tokenize`: the ids a text becomes, printed as llama.cpp's `llama-tokenize` prints them.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  smolt tokenize \"Hello world\"\n  smolt tokenize --ids --no-bos -f receipt.txt"
)]
pub struct Args {
    /// The text to tokenize (or use --file; `-` reads standard input).
    #[arg(required_unless_present = "file")]
    text: Option<String>,
    /// Read the text from a file instead (raw UTF-8, nothing stripped).
    #[arg(short, long, conflicts_with = "text")]
    file: Option<PathBuf>,
    /// A .gguf file, or `gemma-3-270m` for the default model.
    #[arg(short, long, default_value = smolt::hub::DEFAULT_MODEL, env = "SMOLT_MODEL")]
    model: String,
    /// Print only the ids, as a JSON array.
    #[arg(long)]
    ids: bool,
    /// Do not add the beginning-of-sequence token.
    #[arg(long)]
    no_bos: bool,
    /// Treat special-token text such as `<start_of_turn>` as plain text.
    #[arg(long)]
    no_parse_special: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = read_text(&args)?;
    let path = super::resolve_model(&args.model)?;
    let gguf = smolt::gguf::Gguf::open(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tok = smolt::tokenizer::Tokenizer::from_gguf(&gguf)
        .with_context(|| format!("{} has no usable tokenizer", path.display()))?;
    for &id in tok.untrained_tokens() {
        let piece = tok.token_piece(id);
        if text.contains(piece) {
            eprintln!(
                "note: `{piece}` (id {id}) is declared as a token, but {}",
                smolt::tokenizer::Tokenizer::UNTRAINED_WHY
            );
        }
    }
    let add_bos = !args.no_bos && tok.add_bos_token();
    let ids = tok.encode(&text, add_bos, !args.no_parse_special);
    if args.ids {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        for id in ids {
            println!("{id:>6} -> '{}'", tok.decode(&[id], false));
        }
    }
    Ok(())
}

fn read_text(args: &Args) -> anyhow::Result<String> {
    let mut text = String::new();
    match (&args.text, &args.file) {
        (Some(t), _) if t == "-" => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input as UTF-8")?;
        }
        (Some(t), _) => text = t.clone(),
        (None, Some(f)) => {
            text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {} as UTF-8 text", f.display()))?;
        }
        (None, None) => unreachable!("clap requires text or --file"),
    }
    Ok(text)
}
