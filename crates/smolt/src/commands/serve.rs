//! `smolt serve`: an OpenAI-compatible HTTP server over the model and its adapters.

use std::path::Path;

use anyhow::Context;
use smolt_serve::{AdapterSpec, ServeConfig, Server};

use super::{resolve_model, PrecisionArg};

/// `--kv-cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KvCacheArg {
    /// Half the memory per position; rounding far below the fast mode's 8-bit activations.
    F16,
    /// The arithmetic of the f32 reference.
    F32,
}

/// `--keep-panels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeepPanelsArg {
    /// Where the CPU runs the AVX-512 panels.
    Auto,
    On,
    Off,
}

#[derive(clap::Args)]
#[command(after_help = "Endpoints:\n  \
    GET  /health                liveness and readiness (JSON)\n  \
    GET  /v1/models             the base model and each adapter\n  \
    POST /v1/chat/completions   OpenAI chat completions (messages, stream, response_format)\n  \
    POST /v1/completions        OpenAI text completions (prompt)\n  \
    POST /v1/load_lora_adapter  {\"lora_name\", \"lora_path\"}: serve another adapter now\n  \
    POST /v1/unload_lora_adapter {\"lora_name\"}: stop serving it (running requests finish)\n  \
    GET  /metrics               Prometheus metrics\n\n\
Each request names the base model or an adapter in \"model\". Conversations are rendered with \
the model's chat template (an adapter's training run renders them as it was trained). \
response_format {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": \
{\"name\", \"schema\"}} constrains the answer to valid JSON (an invalid schema is a 400). \
logprobs/top_logprobs (completions: logprobs 0-5) give each output token's log-probability; \
n (up to 16) generates several choices, each its own sequence. tools/tool_choice answer with \
tool_calls held to each tool's schema (parallel calls: at most max_parallel_tool_calls, \
default 4). Parameters not implemented yet (penalties) are refused with a 400 that names them, never ignored.\n\n\
Up to --max-batch sequences are decoded together, whatever adapter each uses: one forward \
pass per step over the shared base weights, each sequence with its own adapter's low-rank \
term; new prompts join between steps, starting from the cached keys and values of the \
longest prompt start seen before (--prefix-cache-mib). Up to --max-queue more requests wait for a seat, more \
are answered 429 with Retry-After. A client that disconnects cancels its \
request. Ctrl-C or SIGTERM stops accepting, finishes the requests in flight, then exits.\n\n\
JSON answers (response_format json_object or json_schema) carry each top-level field's \
confidence in their choice (\"confidence\": {field: p}, p the lowest probability of a token the \
model chose freely in the value; in a stream, in the finish chunk). With --fallback, a JSON \
answer that is not streamed and whose least sure field is below --min-confidence is asked again \
of the fallback (any OpenAI-compatible server: a hosted model, vLLM, or smolt serve with a larger \
model), and its answer is returned; every such response says \"answered_by\": \"local\" or \
\"fallback\", and /metrics counts both. If the fallback fails, the local answer is sent with \
\"fallback_error\". Pick the threshold with `smolt eval --fallback`, which reports the score and \
the share routed at each one.\n\n\
Examples:\n  \
    smolt serve\n  \
    smolt serve --adapter receipts=runs/receipts --port 8000 --api-key \"$KEY\"\n  \
    smolt serve --adapter receipts=runs/receipts --fallback https://api.openai.com \\\n    \
    --fallback-model gpt-4o-mini --min-confidence 0.6\n  \
    curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n    \
    -d '{\"model\": \"gemma-3-270m\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}], \"max_tokens\": 32}'\n\n\
Any OpenAI client works: point its base URL at http://HOST:PORT/v1.")]
pub struct Args {
    /// A .gguf file, `gemma-3-270m` (the default, fetched on first use) or `hf:owner/repo/file.gguf`.
    #[arg(short, long, default_value = smolt::hub::DEFAULT_MODEL, env = "SMOLT_MODEL")]
    model: String,
    /// The name clients use for the base model (default: --model when it is a name, else the
    /// file's stem).
    #[arg(long, value_name = "NAME")]
    served_model_name: Option<String>,
    /// Serve a LoRA adapter under NAME: a `smolt train` run directory or a PEFT LoRA folder.
    /// Repeat for more adapters.
    #[arg(long = "adapter", value_name = "NAME=DIR")]
    adapters: Vec<AdapterSpec>,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests that may wait for a seat in the batch; one more is answered 429.
    #[arg(long, default_value_t = smolt_serve::DEFAULT_MAX_QUEUE, value_name = "N")]
    max_queue: usize,
    /// Sequences decoded together, one forward pass per step (each holds a KV cache).
    #[arg(long, default_value_t = smolt_serve::DEFAULT_MAX_BATCH, value_name = "N")]
    max_batch: usize,
    /// Require `Authorization: Bearer KEY` on /v1/* (health and metrics stay open).
    #[arg(
        long,
        env = "SMOLT_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Request bodies above this many bytes are answered 413.
    #[arg(long, default_value_t = smolt_serve::DEFAULT_MAX_BODY_BYTES, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Prompt plus output tokens per request (default: the model's context length).
    #[arg(long, value_name = "TOKENS")]
    max_model_len: Option<usize>,
    /// Memory for the keys and values of prompt starts that repeat (a shared system prompt,
    /// a task template), reused by later prompts instead of recomputed; 0 turns it off.
    #[arg(long, default_value_t = smolt_serve::DEFAULT_PREFIX_CACHE_BYTES >> 20, value_name = "MIB")]
    prefix_cache_mib: usize,
    /// How each sequence's KV cache stores keys and values (default: f16 with
    /// `--precision fast`, f32 with `--precision f32`).
    #[arg(long, value_enum, value_name = "TYPE")]
    kv_cache: Option<KvCacheArg>,
    /// Keep the weights' int8 panels unpacked in memory so that batched steps (several
    /// sequences at once) skip repacking them: about one byte more per weight (peak RSS 564 →
    /// 900 MB for Gemma 3 270M), the same answers. `auto` (the default) keeps them where the
    /// CPU runs the AVX-512 panels (+40% output tok/s at 16 sequences on a 2-core Xeon), not
    /// on AVX2 CPUs (+0–16% there, inside the noise).
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    keep_panels: KeepPanelsArg,
    /// Arithmetic of the forward pass.
    #[arg(long, value_enum, default_value = "fast")]
    precision: PrecisionArg,
    /// Route unsure JSON answers to this OpenAI-compatible server (root URL, its /v1, or the
    /// full /v1/chat/completions URL). Its key comes from FALLBACK_API_KEY, else
    /// OPENAI_API_KEY.
    #[arg(long, value_name = "URL")]
    fallback: Option<String>,
    /// The fallback's model name (default: the first its /v1/models lists at start).
    #[arg(long, value_name = "NAME", requires = "fallback")]
    fallback_model: Option<String>,
    /// Answers whose least sure field is below this go to the fallback (0 to 1).
    #[arg(long, value_name = "P", default_value_t = 0.5, requires = "fallback")]
    min_confidence: f64,
    /// Seconds to wait for the fallback's whole answer.
    #[arg(long, value_name = "S", default_value_t = 60.0, requires = "fallback")]
    fallback_timeout: f64,
}

/// The fallback routing of `args`, its model asked of the endpoint when not given.
fn fallback(args: &Args) -> anyhow::Result<Option<smolt_serve::Fallback>> {
    let Some(url) = &args.fallback else {
        return Ok(None);
    };
    if !(0.0..=1.0).contains(&args.min_confidence) {
        anyhow::bail!("--min-confidence must be between 0 and 1");
    }
    if !(args.fallback_timeout.is_finite() && args.fallback_timeout > 0.0) {
        anyhow::bail!("--fallback-timeout must be a positive number of seconds");
    }
    let api_key = std::env::var("FALLBACK_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or(super::distill::api_key(None)?);
    let timeout = std::time::Duration::from_secs_f64(args.fallback_timeout);
    let model = match &args.fallback_model {
        Some(m) => m.clone(),
        None => {
            let client = smolt::teacher::Client::new(smolt::teacher::ClientConfig {
                api_key: api_key.clone(),
                timeout,
                ..smolt::teacher::ClientConfig::new(url)
            })?;
            super::distill::model_of(&client, None, "--fallback-model")?
        }
    };
    Ok(Some(smolt_serve::Fallback {
        url: url.clone(),
        model,
        min_confidence: args.min_confidence,
        api_key,
        timeout,
    }))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let fallback = fallback(&args)?;
    let path = resolve_model(&args.model)?;
    let model_id = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| default_name(&args.model, &path));
    let precision = match args.precision {
        PrecisionArg::Fast => smolt::model::Precision::Fast,
        PrecisionArg::F32 => smolt::model::Precision::F32,
    };
    let config = ServeConfig {
        adapters: args.adapters,
        precision,
        max_queue: args.max_queue,
        max_batch: args.max_batch,
        api_key: args.api_key.filter(|k| !k.is_empty()),
        max_body_bytes: args.max_body_bytes,
        max_model_len: args.max_model_len,
        prefix_cache_bytes: args.prefix_cache_mib.saturating_mul(1 << 20),
        kv_cache: args.kv_cache.map(|k| match k {
            KvCacheArg::F16 => smolt::model::KvType::F16,
            KvCacheArg::F32 => smolt::model::KvType::F32,
        }),
        keep_panels: match args.keep_panels {
            KeepPanelsArg::Auto => None,
            KeepPanelsArg::On => Some(true),
            KeepPanelsArg::Off => Some(false),
        },
        fallback,
        ..ServeConfig::new(path, model_id)
    };
    let server = Server::load(config)?;
    let names: Vec<String> = server
        .models()
        .served()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Two threads answer HTTP; the model's work happens on the compute pool.
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    eprintln!(
        "smolt: serving {} on http://{local}/v1 (Ctrl-C to stop)",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    runtime.block_on(server.serve(listener, smolt_serve::shutdown_signal()))?;
    eprintln!("smolt: stopped");
    Ok(())
}

/// `gemma-3-270m` stays `gemma-3-270m`; a path becomes its file stem.
fn default_name(spec: &str, path: &Path) -> String {
    let is_path = spec.contains('/') || spec.contains('\\') || spec.ends_with(".gguf");
    if !is_path {
        return spec.to_string();
    }
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_model_argument() {
        let p = Path::new("/cache/gemma-3-270m-q4_k_m.gguf");
        assert_eq!(default_name("gemma-3-270m", p), "gemma-3-270m");
        assert_eq!(
            default_name("/cache/gemma-3-270m-q4_k_m.gguf", p),
            "gemma-3-270m-q4_k_m"
        );
        assert_eq!(default_name("hf:o/r/x.gguf", Path::new("/c/x.gguf")), "x");
    }
}
