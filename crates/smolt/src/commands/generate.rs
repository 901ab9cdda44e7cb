//! `smolt generate`: continue a prompt with the model.

use std::io::Write;
use std::time::Instant;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use smolt::constrain::{ConstraintEngine, ConstraintSpec, ToolCallSpec, ToolOutput};
use smolt::decode::{GenerateOptions, SamplingParams, StopReason};
use smolt::task::record::{read_prompts, Prompt, PromptRecord};
use smolt::task::Task;

use super::{load_model, open_model, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    smolt generate --temperature 0 -n 48 \"The capital of France is\"\n  \
    smolt generate --ids --precision f32 -n 16 \"Once upon a time\"\n  \
    smolt generate --temperature 0.8 --top-p 0.95 --seed 7 \"Write a haiku about receipts:\"\n  \
    smolt generate --prompts records.jsonl --schema schema.json --adapter runs/receipts > out.jsonl\n  \
    smolt generate --file receipt.txt --schema schema.json -n 256\n\n\
With --prompts, each line of the file is {\"prompt\": TEXT} (sent as is), {\"input\": TEXT} (put \
into the task's template, from --config or the adapter's run, as training did), {\"messages\": \
[{\"role\", \"content\"}, ...]} (a conversation, rendered as training renders chat data: the \
model's chat template or the built-in Gemma 3 format, per the task's chat_template, then the \
opened assistant turn), {\"tools\": [...], \"messages\": [...]} (function calling, optionally \
with \"tool_choice\" and \"parallel_tool_calls\": rendered with the tools as training renders \
tool records, decoded under the tools' constraint so every call names a listed tool with \
arguments matching its schema; the row adds \"tool_calls\" in OpenAI's form, or \"content\") \
or a JSON string; one JSON line per prompt is written to stdout: \
{\"line\", \"output\", \"json\", \"valid\", \"finish\", \"tokens\", \"seconds\"}. Every prompt \
is answered even when some are cut off by -n; the exit status is 1 if any was.")]
pub struct Args {
    /// The prompt. Special-token text such as `<start_of_turn>` is parsed as those tokens.
    #[arg(required_unless_present_any = ["prompts", "file"], conflicts_with_all = ["prompts", "file"])]
    prompt: Option<String>,
    /// Read the prompt from a file (raw UTF-8, nothing stripped) instead.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "prompts")]
    file: Option<PathBuf>,
    /// A JSONL file of prompts to answer one after the other (see below).
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// A task or training config: its template renders `input` lines of --prompts, its
    /// chat_template `messages` lines, and its json_style lays out constrained JSON (default:
    /// the --adapter run's config).
    #[arg(long)]
    config: Option<PathBuf>,
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
    /// Constrained greedy decoding checks up to this many draft tokens per forward pass,
    /// guessed by finding the last few output tokens in the prompt (extraction copies spans);
    /// 0 turns it off. A receipt with a fine-tuned adapter takes about a fifth less time. The
    /// output is the same either way, bit for bit with quantized weights: a pass carries only
    /// as many drafts as keep it on the one-token pass's arithmetic (2 after one token).
    #[arg(long, default_value_t = smolt::decode::DEFAULT_DRAFT_TOKENS, value_name = "N")]
    draft_tokens: usize,
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
    fn options(&self, seed: u64) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed,
            },
            stop_at_end_of_generation: !self.ignore_eos,
            stop_tokens: Vec::new(),
            draft_tokens: self.draft_tokens,
        }
    }

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
    if let Some(file) = &args.prompts {
        return run_batch(&args, file, constraint.as_ref());
    }
    let from_file = match &args.file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the prompt file {}", f.display()))?,
        ),
        None => None,
    };
    let text = from_file
        .as_deref()
        .or(args.prompt.as_deref())
        .unwrap_or_default();
    let opened = open_model(&args.model)?;
    if let Some(spec) = constraint {
        return run_constrained(&args, opened, text, &spec);
    }
    let loaded = opened.load(&args.model)?;
    let tok = &loaded.tokenizer;
    let prompt = encode_prompt(&loaded, text)?;
    let opts = args.options(args.seed);
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
    opened: super::Opened,
    text: &str,
    spec: &ConstraintSpec,
) -> anyhow::Result<()> {
    let start = Instant::now();
    // Building the constraint engine (the vocabulary's trie and llguidance's token slices:
    // ≈ 0.9 s for Gemma's 262k tokens on a 2-core Xeon, one thread) runs beside binding the
    // weights and reading all of the prompt but its last token, which then goes in with the
    // first tokens the grammar forces: 2.97 → 2.77 s for a receipt (whole process, medians
    // of 6).
    let tokenizer = Arc::clone(&opened.tokenizer);
    let (loaded, prompt, cache, constraint) = std::thread::scope(|s| {
        let job = s.spawn(|| -> anyhow::Result<_> { Ok(engine(args, &tokenizer)?.compile(spec)?) });
        let prefilled = (|| {
            let loaded = opened.load(&args.model)?;
            let prompt = encode_prompt(&loaded, text)?;
            let mut cache = loaded.model.new_cache();
            if prompt.len() > 1 {
                let fed = prompt.len() - 1;
                loaded
                    .model
                    .forward(&prompt[..fed], &mut cache, smolt::model::Logits::None)?;
            }
            anyhow::Ok((loaded, prompt, cache))
        })();
        let built = job
            .join()
            .map_err(|_| anyhow::anyhow!("building the constraint engine panicked"))?;
        // A model that does not load is the first thing to report.
        let (loaded, prompt, cache) = prefilled?;
        anyhow::Ok((loaded, prompt, cache, built?))
    })?;
    for w in constraint.warnings() {
        eprintln!("smolt: grammar warning: {w}");
    }
    let opts = &args.options(args.seed);
    let out = if !cache.is_empty() {
        smolt::decode::answer_prefilled(&loaded.model, cache, &prompt, Some(&constraint), opts)?
    } else {
        smolt::decode::answer(&loaded.model, &prompt, Some(&constraint), opts)?
    };
    let secs = start.elapsed().as_secs_f64();
    if args.ids {
        println!("{}", serde_json::to_string(&out.ids)?);
    } else {
        println!("{}", loaded.tokenizer.decode(&out.ids, true));
    }
    if let (true, Some(stats)) = (args.timings, &out.stats) {
        eprintln!(
            "prompt {} tokens; {} output tokens ({} forced, {} of {} drafts accepted) in {} forward passes, {:.2} s after the tokenizer loaded (masks {:.3} s); finish: {}",
            prompt.len(),
            out.ids.len(),
            stats.forced_tokens,
            stats.drafts_accepted,
            stats.drafted,
            stats.forward_passes,
            secs,
            stats.mask_nanos.iter().sum::<u64>() as f64 * 1e-9,
            out.ending.as_str()
        );
    }
    if out.ending == smolt::decode::Ending::Truncated {
        anyhow::bail!(
            "the output was cut off by the token limit (-n {}) inside an unfinished value: \
             it is NOT valid; raise -n or bound the schema (maxLength, maxItems)",
            args.max_tokens
        );
    }
    Ok(())
}

/// `text` as the model reads it (BOS where the tokenizer wants one), or an error if it
/// leaves no room in the context for an answer.
fn encode_prompt(loaded: &super::Loaded, text: &str) -> anyhow::Result<Vec<u32>> {
    let tok = &loaded.tokenizer;
    let prompt = tok.encode(text, tok.add_bos_token(), true);
    let room = loaded.model.spec.context_length;
    if prompt.len() >= room {
        anyhow::bail!(
            "the prompt is {} tokens; the model's context holds {room}",
            prompt.len()
        );
    }
    Ok(prompt)
}

/// The task when one is known: --config, else the adapter run's.
fn task_config(args: &Args) -> anyhow::Result<Option<Task>> {
    super::task_of(args.config.as_deref(), args.model.adapter.as_deref())
}

/// The constraint engine: JSON laid out as the task's answers were trained when a task is
/// known (an adapter's run, or --config), else `", "` / `": "` (`json.dumps`' layout).
fn engine(
    args: &Args,
    tok: &Arc<smolt::tokenizer::Tokenizer>,
) -> anyhow::Result<Arc<ConstraintEngine>> {
    Ok(match task_config(args)? {
        Some(task) => smolt::evaluate::engine_for_task(Arc::clone(tok), &task)?,
        None => ConstraintEngine::new(Arc::clone(tok))?,
    })
}

/// A --prompts line as the model will see it.
struct RenderedPrompt {
    line: usize,
    text: String,
    add_bos: bool,
    /// A tools line: the spec (in the model's call syntax) its answer is decoded under and
    /// read back with.
    tools: Option<ToolCallSpec>,
}

/// Renders every conversation with the model's chat template (or the built-in format, as the
/// task says), before any generation, so a conversation the template refuses is reported at
/// once with its line.
fn render_prompts(
    file: &std::path::Path,
    prompts: Vec<PromptRecord>,
    tok: &smolt::tokenizer::Tokenizer,
    task: &Task,
) -> anyhow::Result<Vec<RenderedPrompt>> {
    let mut chat = None;
    let mut out = Vec::with_capacity(prompts.len());
    for p in prompts {
        let (text, add_bos, tools) = match p.prompt {
            Prompt::Text(text) => (text, tok.add_bos_token(), None),
            Prompt::Chat(messages) => {
                let chat = match &mut chat {
                    Some(c) => c,
                    None => chat.insert(task.chat_format(tok)?),
                };
                let text = chat
                    .prompt(&messages)
                    .with_context(|| format!("{}:{}", file.display(), p.line))?;
                // As in training: the rendering leaves BOS to the encoder.
                (text, true, None)
            }
            Prompt::Tools(record) => {
                let chat = match &mut chat {
                    Some(c) => c,
                    None => chat.insert(task.chat_format(tok)?),
                };
                let spec = chat.tool_spec(&record.spec);
                let text = chat
                    .prompt_with_tools(&record.context, Some(&spec))
                    .with_context(|| format!("{}:{}", file.display(), p.line))?;
                (text, true, Some(spec))
            }
        };
        out.push(RenderedPrompt {
            line: p.line,
            text,
            add_bos,
            tools,
        });
    }
    Ok(out)
}

/// `--prompts FILE`: one JSON line per prompt on stdout, in file order.
fn run_batch(
    args: &Args,
    file: &std::path::Path,
    spec: Option<&ConstraintSpec>,
) -> anyhow::Result<()> {
    let task = task_config(args)?.unwrap_or_default();
    let prompts = read_prompts(file, &task)?;
    let loaded = load_model(&args.model)?;
    let tok = &loaded.tokenizer;
    let prompts = render_prompts(file, prompts, tok, &task)?;
    if let (Some(_), Some(p)) = (spec, prompts.iter().find(|p| p.tools.is_some())) {
        anyhow::bail!(
            "{}:{}: a tools line is decoded under its tools' constraint; drop --schema, --json, \
             --regex and --grammar, or the line's tools",
            file.display(),
            p.line
        );
    }
    let engine = engine(args, tok)?;
    let constraint = match spec {
        Some(spec) => Some(engine.compile(spec)?),
        None => None,
    };
    let room = loaded.model.spec.context_length;
    let bar = super::count_bar(prompts.len(), "prompts")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut cut = 0;
    for (k, p) in prompts.iter().enumerate() {
        let ids = tok.encode(&p.text, p.add_bos, true);
        if ids.len() >= room {
            anyhow::bail!(
                "{}:{}: the prompt is {} tokens; the model's context holds {room}",
                file.display(),
                p.line,
                ids.len()
            );
        }
        // Each prompt gets its own seed, so a line's output does not depend on the lines
        // before it.
        let opts = args.options(args.seed.wrapping_add(k as u64));
        let start = Instant::now();
        let line_constraint = match &p.tools {
            Some(tools) if tools.allows_calls() => Some(
                engine
                    .compile(&ConstraintSpec::ToolCalls(tools.clone()))
                    .with_context(|| format!("{}:{}: the tools", file.display(), p.line))?,
            ),
            _ => None,
        };
        let constraint = line_constraint.as_ref().or(constraint.as_ref());
        let answer = smolt::decode::answer(&loaded.model, &ids, constraint, &opts)?;
        let (gen_ids, finish) = (answer.ids, answer.ending.as_str());
        let secs = start.elapsed().as_secs_f64();
        let text = tok.decode(&gen_ids, true);
        let valid = constraint.is_some() && finish != "truncated";
        cut += (finish == "truncated") as usize;
        let json: serde_json::Value =
            serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null);
        let mut row = serde_json::json!({
            "line": p.line,
            "output": text,
            "json": json,
            "valid": if constraint.is_some() { serde_json::json!(valid) } else { serde_json::Value::Null },
            "finish": finish,
            "tokens": gen_ids.len(),
            "seconds": (secs * 1e4).round() / 1e4,
        });
        if let Some(tools) = &p.tools {
            // As the server answers: calls in OpenAI's form, or the text.
            match tools.parse(&text) {
                Ok(ToolOutput::Calls(calls)) => {
                    let calls: Vec<serde_json::Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(j, c)| c.to_openai(&format!("call_{}_{j}", p.line)))
                        .collect();
                    row["tool_calls"] = serde_json::Value::Array(calls);
                    row["content"] = serde_json::Value::Null;
                }
                Ok(ToolOutput::Text(t)) => row["content"] = serde_json::Value::String(t),
                Err(e) => row["error"] = serde_json::Value::String(e.to_string()),
            }
        }
        writeln!(out, "{row}")?;
        out.flush()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if cut > 0 {
        anyhow::bail!(
            "{cut} of {} outputs were cut off by the token limit (-n {}) and are NOT valid \
             (\"finish\": \"truncated\"); raise -n or bound the schema",
            prompts.len(),
            args.max_tokens
        );
    }
    Ok(())
}
