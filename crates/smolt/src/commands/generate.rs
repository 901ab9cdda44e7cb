//! `smolt generate`: continue a prompt with the model.

use std::io::Write;
use std::time::Instant;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use smolt::constrain::{ConstraintEngine, ConstraintSpec, Finish, GenerateLimits};
use smolt::decode::{GenerateOptions, ModelLogits, Sampler, SamplingParams, StopReason};

use super::{load_model, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    smolt generate --temperature 0 -n 48 \"The capital of France is\"\n  \
    smolt generate --ids --precision f32 -n 16 \"Once upon a time\"\n  \
    smolt generate --temperature 0.8 --top-p 0.95 --seed 7 \"Write a haiku about receipts:\"")]
pub struct Args {
    /// The prompt. Special-token text such as `<start_of_turn>` is parsed as those tokens.
    prompt: String,
    #[command(flatten)]
    model: ModelArgs,
    /// Maximum number of new tokens.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy (always the most likely token).
    #[arg(short, long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample only among the K most likely tokens (0: no limit).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sample only among the most likely tokens whose probabilities add up to P.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Random seed for sampling; the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the generated token ids as a JSON array instead of text.
    #[arg(long)]
    ids: bool,
    /// Keep going past end-of-generation tokens (<eos>, <end_of_turn>) until -n tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print timing (prefill and decode tokens/s) to stderr at the end.
    #[arg(long)]
    timings: bool,
    /// Constrain the output to JSON matching this JSON Schema file (valid by construction).
    #[arg(long, group = "constraint", value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Constrain the output to any JSON value.
    #[arg(long, group = "constraint")]
    json: bool,
    /// Constrain the output to match this regular expression.
    #[arg(long, group = "constraint", value_name = "REGEX")]
    regex: Option<String>,
    /// Constrain the output to this Lark grammar file (llguidance's Lark dialect).
    #[arg(long, group = "constraint", value_name = "FILE")]
    grammar: Option<PathBuf>,
}

impl Args {
    fn constraint(&self) -> anyhow::Result<Option<ConstraintSpec>> {
        Ok(if let Some(f) = &self.schema {
            Some(ConstraintSpec::json_schema_file(f)?)
        } else if self.json {
            Some(ConstraintSpec::AnyJson)
        } else if let Some(r) = &self.regex {
            Some(ConstraintSpec::Regex(r.clone()))
        } else if let Some(f) = &self.grammar {
            Some(ConstraintSpec::lark_file(f)?)
        } else {
            None
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.temperature.is_nan() || args.temperature < 0.0 {
        anyhow::bail!("--temperature must be 0 or more (0 is greedy)");
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        anyhow::bail!("--top-p must be in (0, 1]");
    }
    // Check the constraint before the model loads: a bad schema should fail fast.
    let constraint = args.constraint()?;
    let loaded = load_model(&args.model)?;
    let tok = &loaded.tokenizer;
    let prompt = tok.encode(&args.prompt, tok.add_bos_token(), true);
    let room = loaded.model.spec.context_length;
    if prompt.len() >= room {
        anyhow::bail!(
            "the prompt is {} tokens; the model's context holds {room}",
            prompt.len()
        );
    }
    let opts = GenerateOptions {
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop_at_end_of_generation: !args.ignore_eos,
        stop_tokens: Vec::new(),
    };

    if let Some(spec) = constraint {
        return run_constrained(&args, &loaded, &prompt, &spec, &opts);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut text = TextStream::default();
    let start = Instant::now();
    let mut first_token_at = None;
    let generation = smolt::decode::generate(&loaded.model, &prompt, &opts, |id| {
        first_token_at.get_or_insert_with(Instant::now);
        if !args.ids {
            let piece = text.push(tok, id);
            // A closed stdout (e.g. `| head`) ends generation instead of erroring later.
            if out
                .write_all(piece.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return false;
            }
        }
        true
    })
    .context("generation failed")?;
    let end = Instant::now();
    if args.ids {
        writeln!(out, "{}", serde_json::to_string(&generation.ids)?)?;
    } else {
        writeln!(out, "{}", text.finish(tok))?;
    }
    if args.timings {
        let first = first_token_at.unwrap_or(end);
        let prefill_s = (first - start).as_secs_f64();
        let decode_n = generation.ids.len().saturating_sub(1);
        let decode_s = (end - first).as_secs_f64();
        eprintln!(
            "prompt: {} tokens in {:.3} s ({:.1} tok/s); generated {} tokens, decode {:.1} tok/s; stopped: {}",
            prompt.len(),
            prefill_s,
            prompt.len() as f64 / prefill_s.max(1e-9),
            generation.ids.len(),
            decode_n as f64 / decode_s.max(1e-9),
            describe(generation.stop),
        );
    }
    Ok(())
}

fn describe(stop: StopReason) -> String {
    match stop {
        StopReason::StopToken(id) => format!("end-of-generation token {id}"),
        StopReason::MaxTokens => "token limit (-n)".into(),
        StopReason::Callback => "output closed".into(),
        StopReason::ContextFull => "context full".into(),
    }
}

/// Turns ids into text as they arrive. A character may span several byte tokens, so text is
/// only released up to the last complete character; the rest waits for the next token.
#[derive(Default)]
struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    fn push(&mut self, tok: &smolt::tokenizer::Tokenizer, id: u32) -> String {
        self.ids.push(id);
        let text = tok.decode(&self.ids, false);
        let ready = text.trim_end_matches('\u{FFFD}');
        if ready.len() <= self.emitted || !ready.is_char_boundary(self.emitted) {
            return String::new();
        }
        let piece = ready[self.emitted..].to_string();
        self.emitted = ready.len();
        piece
    }

    fn finish(&mut self, tok: &smolt::tokenizer::Tokenizer) -> String {
        let text = tok.decode(&self.ids, false);
        let rest = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        rest
    }
}

/// Generation under a constraint: every step samples only among the tokens the grammar
/// allows, tokens the grammar forces are fed in one batch, and running out of tokens inside
/// an unfinished value is an error, never a silently invalid answer.
fn run_constrained(
    args: &Args,
    loaded: &super::Loaded,
    prompt: &[u32],
    spec: &ConstraintSpec,
    opts: &GenerateOptions,
) -> anyhow::Result<()> {
    let engine = ConstraintEngine::new(Arc::clone(&loaded.tokenizer))?;
    let constraint = engine.compile(spec)?;
    for w in constraint.warnings() {
        eprintln!("smolt: grammar warning: {w}");
    }
    let mut state = constraint.start();
    let mut source = ModelLogits::new(&loaded.model);
    let mut sampler = Sampler::new(opts.sampling.clone());
    let start = Instant::now();
    let out = smolt::constrain::generate_constrained(
        &mut source,
        prompt,
        &mut state,
        GenerateLimits::new(args.max_tokens),
        |logits| sampler.sample(logits),
    )?;
    let secs = start.elapsed().as_secs_f64();
    if args.ids {
        println!("{}", serde_json::to_string(&out.ids)?);
    } else {
        println!("{}", loaded.tokenizer.decode(&out.ids, true));
    }
    if args.timings {
        eprintln!(
            "prompt {} tokens; {} output tokens ({} forced) in {} forward passes, {:.2} s; finish: {:?}",
            prompt.len(),
            out.ids.len(),
            out.stats.forced_tokens,
            out.stats.forward_passes,
            secs,
            out.finish
        );
    }
    if out.finish == Finish::Truncated {
        anyhow::bail!(
            "the output was cut off by the token limit (-n {}) inside an unfinished value: \
             it is NOT valid; raise -n or bound the schema (maxLength, maxItems)",
            args.max_tokens
        );
    }
    Ok(())
}
