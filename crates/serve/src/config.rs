//! What the server is started with (the `smolt serve` flags, as a library value).

use std::path::PathBuf;

use smolt_model::{KvType, Precision};

/// A LoRA adapter served under its own model name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSpec {
    /// The name requests give as `model`.
    pub name: String,
    /// A `smolt train` run directory or any PEFT LoRA folder.
    pub dir: PathBuf,
}

impl std::str::FromStr for AdapterSpec {
    type Err = String;

    /// `NAME=DIR`, as `--adapter` takes it.
    fn from_str(s: &str) -> Result<AdapterSpec, String> {
        let Some((name, dir)) = s.split_once('=') else {
            return Err(format!(
                "`{s}` is not NAME=DIR (the name clients put in \"model\", then the adapter's folder)"
            ));
        };
        let name = name.trim();
        if name.is_empty() || dir.is_empty() {
            return Err(format!("`{s}`: both NAME and DIR must be given (NAME=DIR)"));
        }
        Ok(AdapterSpec {
            name: name.to_string(),
            dir: PathBuf::from(dir),
        })
    }
}

/// Everything `smolt serve` needs to start.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The GGUF file (already resolved to a local path).
    pub model: PathBuf,
    /// The name of the base model in requests and `/v1/models`.
    pub model_id: String,
    pub adapters: Vec<AdapterSpec>,
    pub precision: Precision,
    /// Requests that may wait for a seat; one more is answered 429.
    pub max_queue: usize,
    /// Sequences decoded together in one forward pass per step (seats).
    pub max_batch: usize,
    /// When set, `/v1/*` requests must send `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Larger request bodies are answered 413.
    pub max_body_bytes: usize,
    /// Prompt plus output at most this many tokens (default and upper bound: the model's
    /// context length). A smaller value bounds each request's memory and time.
    pub max_model_len: Option<usize>,
    /// Bytes of prompt-prefix keys and values kept for reuse (0: no prefix cache).
    pub prefix_cache_bytes: usize,
    /// How the seats' KV caches store keys and values; `None`: see [`ServeConfig::kv_type`].
    pub kv_cache: Option<KvType>,
    /// Keep the base weights' int8 panels packed ([`smolt_model::Model::keep_panels`]):
    /// batched steps skip repacking them, for about one byte more per weight. `None`: where
    /// it pays on this CPU ([`smolt_model::Model::keeping_panels_pays`]).
    pub keep_panels: Option<bool>,
    /// Where answers this model is unsure of go; `None`: every answer is the model's own.
    pub fallback: Option<Fallback>,
}

/// Routing to a fallback model: a JSON answer (`response_format` json_schema or json_object,
/// not streamed) whose least sure field is below `min_confidence` is asked again of `url`, and
/// the fallback's response is returned instead.
#[derive(Clone, Debug)]
pub struct Fallback {
    /// An OpenAI-compatible server: root URL, its /v1, or the full /v1/chat/completions URL.
    pub url: String,
    /// The `model` the forwarded request names.
    pub model: String,
    pub min_confidence: f64,
    /// Sent as `Authorization: Bearer` to the fallback only.
    pub api_key: Option<String>,
    /// Most seconds to wait for the fallback's whole answer.
    pub timeout: std::time::Duration,
}

/// Default `max_body_bytes`: room for a prompt filling a 32k-token context several times over.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;
/// Default `max_batch`: sequences decoded together (seats); more requests wait in the queue.
pub const DEFAULT_MAX_BATCH: usize = 32;
/// Default `max_queue`.
pub const DEFAULT_MAX_QUEUE: usize = 64;
/// Default `prefix_cache_bytes`: 128 MiB, about 7,000 positions of Gemma 3 270M (18 KB
/// each in f16), a dozen receipt prompts or many more shared system prompts.
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 128 << 20;

impl ServeConfig {
    /// The defaults for `model`, served under `model_id`, without adapters.
    pub fn new(model: impl Into<PathBuf>, model_id: impl Into<String>) -> ServeConfig {
        ServeConfig {
            model: model.into(),
            model_id: model_id.into(),
            adapters: Vec::new(),
            precision: Precision::Fast,
            max_queue: DEFAULT_MAX_QUEUE,
            max_batch: DEFAULT_MAX_BATCH,
            api_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_model_len: None,
            prefix_cache_bytes: DEFAULT_PREFIX_CACHE_BYTES,
            kv_cache: None,
            keep_panels: None,
            fallback: None,
        }
    }

    /// The seats' KV cache type: `kv_cache` if set, else f16 for `Precision::Fast` (half the
    /// memory per seat, as llama-server keeps it) and f32 for `Precision::F32` (the
    /// reference's arithmetic).
    pub fn kv_type(&self) -> KvType {
        self.kv_cache.unwrap_or(match self.precision {
            Precision::Fast => KvType::F16,
            Precision::F32 => KvType::F32,
        })
    }

    /// Refuses names that would make `model` ambiguous, before anything loads.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.model_id.is_empty() {
            anyhow::bail!("the served model name is empty");
        }
        let mut seen = vec![self.model_id.as_str()];
        for a in &self.adapters {
            if seen.contains(&a.name.as_str()) {
                anyhow::bail!(
                    "the name `{}` is used twice (the base model and each adapter need their own)",
                    a.name
                );
            }
            seen.push(&a.name);
        }
        if self.max_queue == 0 {
            anyhow::bail!("--max-queue must be at least 1");
        }
        if self.max_batch == 0 {
            anyhow::bail!("--max-batch must be at least 1");
        }
        if self.max_model_len == Some(0) {
            anyhow::bail!("--max-model-len must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_flags_parse_and_bad_ones_say_what_is_expected() {
        let a: AdapterSpec = "receipts=runs/r1".parse().unwrap();
        assert_eq!(a.name, "receipts");
        assert_eq!(a.dir, PathBuf::from("runs/r1"));
        // A `=` inside the folder stays in the folder.
        let a: AdapterSpec = "x=a=b".parse().unwrap();
        assert_eq!(a.dir, PathBuf::from("a=b"));
        assert!("runs/r1"
            .parse::<AdapterSpec>()
            .unwrap_err()
            .contains("NAME=DIR"));
        assert!("=runs".parse::<AdapterSpec>().is_err());
        assert!("name=".parse::<AdapterSpec>().is_err());
    }

    #[test]
    fn names_must_be_distinct() {
        let mut c = ServeConfig::new("m.gguf", "base");
        c.adapters.push("a=x".parse().unwrap());
        c.check().unwrap();
        c.adapters.push("base=y".parse().unwrap());
        assert!(c.check().unwrap_err().to_string().contains("`base`"));
        let mut c = ServeConfig::new("m.gguf", "base");
        c.max_queue = 0;
        assert!(c.check().is_err());
    }
}
