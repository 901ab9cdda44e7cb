//! `smolt bench`: prefill and decode speed, measured the way llama-bench measures them
//! (pp: one batch of N prompt tokens; tg: N tokens one at a time from an empty context).

use std::time::Instant;

use smolt::model::Logits;

use super::{load_model, ModelArgs};

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  smolt bench --prompt-tokens 512 --gen-tokens 128 --threads 2 --json"
)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt length for the prefill figure (0 skips it).
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens for the decode figure (0 skips it).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Repetitions of each figure; every sample is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = load_model(&args.model)?;
    let model = &loaded.model;
    let vocab = model.spec.vocab_size as u32;
    // Deterministic, varied ids that avoid the special tokens at the start of the vocabulary.
    let ids: Vec<u32> = (0..args.prompt_tokens.max(1) as u32)
        .map(|i| 1000 + (i.wrapping_mul(2_654_435_761) % (vocab - 1000)))
        .collect();
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    // One untimed warm-up run of each so page faults of the mmap are not measured.
    for rep in 0..=args.reps {
        if args.prompt_tokens > 0 {
            let mut cache = model.new_cache();
            let t = Instant::now();
            model.forward(&ids[..args.prompt_tokens], &mut cache, Logits::Last)?;
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                prefill.push(args.prompt_tokens as f64 / s);
            }
        }
        if args.gen_tokens > 0 {
            let mut cache = model.new_cache();
            let mut id = ids[0];
            let t = Instant::now();
            for _ in 0..args.gen_tokens {
                let logits = model.forward(&[id], &mut cache, Logits::Last)?;
                id = smolt::decode::argmax(&logits);
            }
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                decode.push(args.gen_tokens as f64 / s);
            }
        }
    }
    let threads = rayon::current_num_threads();
    if args.json {
        let v = serde_json::json!({
            "threads": threads,
            "precision": format!("{:?}", args.model.precision()),
            "prompt_tokens": args.prompt_tokens,
            "gen_tokens": args.gen_tokens,
            "prefill_tok_s": prefill,
            "decode_tok_s": decode,
        });
        println!("{v}");
    } else {
        println!("threads {threads}, {} reps", args.reps);
        if !prefill.is_empty() {
            println!(
                "prefill {:>4} tokens: {}",
                args.prompt_tokens,
                stats(&prefill)
            );
        }
        if !decode.is_empty() {
            println!("decode  {:>4} tokens: {}", args.gen_tokens, stats(&decode));
        }
    }
    Ok(())
}

fn stats(samples: &[f64]) -> String {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    format!(
        "min {:.1} / median {:.1} / max {:.1} tok/s",
        s[0],
        s[s.len() / 2],
        s[s.len() - 1]
    )
}
