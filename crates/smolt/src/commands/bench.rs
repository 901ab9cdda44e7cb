//! `smolt bench`: prefill and decode speed, measured the way llama-bench measures them
//! (pp: one batch of N prompt tokens; tg: N tokens one at a time from an empty context).

use std::time::Instant;

use smolt::model::Logits;

use super::{load_model, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "\
With --limits it also measures what this machine can do at most on the same threads (streaming
read bandwidth; f32, int8-VNNI, bf16 and AMX peaks) and states each figure as a share of the
limit that binds it: decode reads every weight once per token (bandwidth-bound), prefill runs
int8 dot products on the quantized weights (compute-bound).

Examples:
  smolt bench --prompt-tokens 512 --gen-tokens 128 --threads 2 --json
  smolt bench --limits --threads 1")]
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
    /// Also measure the machine's limits and each figure's share of them.
    #[arg(long)]
    limits: bool,
}

/// What one token costs the model, from the tensor sizes in the file: the bytes a decode step
/// streams (every weight once: a token table that doubles as the head in full, an untied one
/// only for its one embedding row) and the operations of one prefill token (two per body
/// weight; the head runs for the last position only).
struct TokenCost {
    decode_bytes: f64,
    prefill_ops: f64,
    body_params: f64,
    head_params: f64,
}

fn token_cost(model: &smolt::model::Model) -> TokenCost {
    let g = model.gguf();
    let (mut bytes, mut body_params, mut head_params) = (0f64, 0f64, 0f64);
    let tied = g.tensor_info("output.weight").is_none();
    for t in g.tensors() {
        let b = g.tensor_data(t).len() as f64;
        let is_table = t.name == "token_embd.weight";
        bytes += if is_table && !tied {
            b / t.n_rows().max(1) as f64
        } else {
            b
        };
        if t.name == "output.weight" || (is_table && tied) {
            head_params = t.n_elements() as f64;
        }
        if !is_table && t.name != "output.weight" && t.n_rows() > 1 {
            body_params += t.n_elements() as f64;
        }
    }
    TokenCost {
        decode_bytes: bytes,
        prefill_ops: 2.0 * body_params,
        body_params,
        head_params,
    }
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
    let median = |v: &[f64]| min_median_max(v).map(|(_, m, _)| m);
    let cost = token_cost(model);
    let limits = args
        .limits
        .then(|| smolt::kernels::limits::measure(threads, 1024));
    let shares = limits.as_ref().map(|l| {
        let decode_gbps = median(&decode).map(|t| t * cost.decode_bytes / 1e9);
        let prefill_gops = median(&prefill).map(|t| t * cost.prefill_ops / 1e9);
        serde_json::json!({
            "decode_gb_per_s": decode_gbps,
            "decode_share_of_read_bandwidth": decode_gbps.map(|g| g / l.read_gbps),
            "prefill_gop_per_s": prefill_gops,
            "prefill_share_of_int8_peak": prefill_gops.zip(l.int8_gops).map(|(g, p)| g / p),
        })
    });
    if args.json {
        let v = serde_json::json!({
            "threads": threads,
            "precision": format!("{:?}", args.model.precision()),
            "prompt_tokens": args.prompt_tokens,
            "gen_tokens": args.gen_tokens,
            "prefill_tok_s": prefill,
            "decode_tok_s": decode,
            "cost": {
                "decode_bytes_per_token": cost.decode_bytes,
                "prefill_ops_per_token": cost.prefill_ops,
                "body_params": cost.body_params,
                "head_params": cost.head_params,
            },
            "limits": limits.as_ref().map(|l| serde_json::json!({
                "cpu": smolt::quant::cpu::cpu().to_string(),
                "threads": l.threads,
                "read_gb_per_s": l.read_gbps,
                "f32_gflop_per_s": l.f32_gflops,
                "int8_gop_per_s": l.int8_gops,
                "bf16_gflop_per_s": l.bf16_gflops,
                "amx_bf16_gflop_per_s": l.amx_bf16_gflops,
            })),
            "shares": shares,
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
        if let Some(l) = &limits {
            println!("{}", smolt::quant::cpu::cpu());
            let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
            println!(
                "machine, {} threads: read {:.1} GB/s; peaks f32 {:.0} GFLOP/s, int8 {} GOP/s, \
                 bf16 {} GFLOP/s, AMX bf16 {} GFLOP/s",
                l.threads,
                l.read_gbps,
                l.f32_gflops,
                opt(l.int8_gops),
                opt(l.bf16_gflops),
                opt(l.amx_bf16_gflops)
            );
            if let Some(t) = median(&decode) {
                let g = t * cost.decode_bytes / 1e9;
                println!(
                    "decode reads {:.0} MB/token: {g:.1} GB/s = {:.0}% of the read bandwidth",
                    cost.decode_bytes / 1e6,
                    100.0 * g / l.read_gbps
                );
            }
            if let (Some(t), Some(peak)) = (median(&prefill), l.int8_gops) {
                let g = t * cost.prefill_ops / 1e9;
                println!(
                    "prefill: {:.2} GOP/token: {g:.0} GOP/s = {:.0}% of the int8 peak",
                    cost.prefill_ops / 1e9,
                    100.0 * g / peak
                );
            }
        }
    }
    Ok(())
}

/// `(min, median, max)` of the samples; `None` for none.
fn min_median_max(samples: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    Some((*s.first()?, s[s.len() / 2], *s.last()?))
}

fn stats(samples: &[f64]) -> String {
    match min_median_max(samples) {
        Some((lo, mid, hi)) => format!("min {lo:.1} / median {mid:.1} / max {hi:.1} tok/s"),
        None => "no samples".to_string(),
    }
}
