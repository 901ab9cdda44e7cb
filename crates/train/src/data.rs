//! Training data: JSONL files → prompt/answer text → token ids with a loss mask.
//!
//! Three line formats are accepted, detected per file from its first record:
//! - `{"input": str, "output": JSON value or str}` — the prompt is the config template with
//!   `{input}` filled in; a non-string `output` is serialised per [`JsonStyle`];
//! - `{"prompt": str, "completion": str}` — used verbatim;
//! - `{"messages": [{"role", "content"}, ...]}` — rendered by [`crate::chat`]: the model's own
//!   chat template when its GGUF has one, else the built-in Gemma 3 format (config key
//!   `chat_template`); the loss is on the last assistant message only (earlier turns are
//!   context).
//!
//! Prompt and answer are tokenized separately and concatenated, exactly as at decode time where
//! the prompt is encoded and the answer is generated after it; tokenizing them together could
//! merge tokens across the boundary and teach the model a split it never sees when decoding.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::chat::{ChatFormat, ModelTemplate, Role};
use crate::config::{JsonStyle, Overlong, TrainConfig};
use crate::prompt::MIN_PROMPT_TOKENS;

/// Text → token ids, as the training data needs it. A small trait so the data pipeline can be
/// tested with a toy encoder and does not care which tokenizer backs it.
pub trait TextEncoder {
    /// Encodes `text`, with a leading BOS if `add_bos`. Control tokens written in the text (for
    /// example `<start_of_turn>` in a chat rendering) must become their control ids.
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32>;
    /// The id appended after each answer so the model learns to stop.
    fn eos_id(&self) -> u32;
    /// The model's own chat template, if it ships one, for rendering `{"messages"}` records.
    fn model_chat_template(&self) -> Option<ModelTemplate> {
        None
    }
}

/// Where a record came from, for messages a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One tokenized training example.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Token ids: BOS, prompt, answer, EOS.
    pub ids: Vec<u32>,
    /// `loss_mask[t]` is true when `ids[t]` is a target, i.e. the loss includes
    /// `-log p(ids[t] | ids[..t])`. True exactly on the answer tokens and the final EOS, and
    /// never at t = 0.
    pub loss_mask: Vec<bool>,
    /// Where the example came from.
    pub source: Location,
}

impl Example {
    /// Number of target tokens (positions where the loss is taken).
    pub fn n_targets(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether the example has no tokens (never true for loaded data).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A problem with one line of a data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem found in a data file. All lines are checked before failing so that a user
/// fixes a file in one pass rather than one error per run.
#[derive(Debug)]
pub struct DataErrors {
    pub file: PathBuf,
    pub errors: Vec<DataError>,
}

/// How many errors are printed before "... and N more".
const SHOWN_ERRORS: usize = 20;

impl fmt::Display for DataErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.len() == 1 {
            return write!(f, "{}", self.errors[0]);
        }
        writeln!(
            f,
            "{} problems in {}:",
            self.errors.len(),
            self.file.display()
        )?;
        for e in self.errors.iter().take(SHOWN_ERRORS) {
            writeln!(f, "  {e}")?;
        }
        if self.errors.len() > SHOWN_ERRORS {
            writeln!(f, "  ... and {} more", self.errors.len() - SHOWN_ERRORS)?;
        }
        Ok(())
    }
}

impl std::error::Error for DataErrors {}

/// The record layout of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    InputOutput,
    PromptCompletion,
    Messages,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::InputOutput => "{\"input\", \"output\"}",
            Format::PromptCompletion => "{\"prompt\", \"completion\"}",
            Format::Messages => "{\"messages\": [...]}",
        }
    }
}

/// A record turned into text, before tokenization.
#[derive(Clone, Debug, PartialEq)]
pub struct TextExample {
    pub prompt: String,
    pub answer: String,
    /// The answer as JSON when it is JSON, for schema validation.
    pub answer_json: Option<Value>,
    pub source: Location,
}

/// What loading did besides producing examples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataStats {
    /// Non-empty lines read.
    pub records: usize,
    /// Examples whose prompt was shortened to fit `max_len`.
    pub truncated: usize,
    /// Examples dropped because they could not be made to fit.
    pub skipped: usize,
    /// Tokens in the kept examples.
    pub tokens: usize,
    /// Target tokens in the kept examples.
    pub target_tokens: usize,
}

/// A loaded, tokenized data file.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: Format,
    pub examples: Vec<Example>,
    pub stats: DataStats,
}

impl Dataset {
    /// A human line such as "train.jsonl: 812 examples, 3 truncated, 1 skipped (> 512 tokens)".
    pub fn describe(&self, max_len: usize) -> String {
        let mut s = format!(
            "{}: {} examples, {} tokens ({} trained on)",
            self.path.display(),
            self.examples.len(),
            self.stats.tokens,
            self.stats.target_tokens
        );
        if self.stats.truncated > 0 || self.stats.skipped > 0 {
            s += &format!(
                "; longer than max_len = {max_len}: {} truncated, {} skipped",
                self.stats.truncated, self.stats.skipped
            );
        }
        s
    }

    /// SHA-256 over all ids and masks, so a resume can tell the data changed under it.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for e in &self.examples {
            h.update((e.ids.len() as u64).to_le_bytes());
            for (&id, &m) in e.ids.iter().zip(&e.loss_mask) {
                h.update(id.to_le_bytes());
                h.update([m as u8]);
            }
        }
        crate::config::hex(&h.finalize())
    }
}

/// Reads and checks a JSONL file, returning text examples or every error found. `enc` is the
/// model's: chat records are rendered with its chat template as `cfg.chat_template` says.
pub fn read_jsonl(
    path: &Path,
    cfg: &TrainConfig,
    enc: &dyn TextEncoder,
) -> Result<(Format, Vec<TextExample>), DataErrors> {
    let fail = |line: usize, message: String| DataErrors {
        file: path.to_path_buf(),
        errors: vec![DataError {
            at: Location {
                file: path.to_path_buf(),
                line,
            },
            message,
        }],
    };
    let text = std::fs::read(path).map_err(|e| fail(0, format!("cannot read file: {e}")))?;
    let text = String::from_utf8(text).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        fail(line, "not valid UTF-8".into())
    })?;

    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut format = None;
    // Resolved at the first chat record: other files never need (or fail on) a template.
    let mut chat: Option<ChatFormat> = None;
    for (i, line) in text.lines().enumerate() {
        let at = Location {
            file: path.to_path_buf(),
            line: i + 1,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| DataError {
            at: at.clone(),
            message,
        };
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err(format!("not valid JSON ({e})")));
                continue;
            }
        };
        let Some(obj) = value.as_object() else {
            errors.push(err(format!(
                "expected a JSON object, found {}",
                kind_of(&value)
            )));
            continue;
        };
        let f = match format {
            Some(f) => f,
            None => {
                let detected = if obj.contains_key("messages") {
                    Format::Messages
                } else if obj.contains_key("prompt") || obj.contains_key("completion") {
                    Format::PromptCompletion
                } else if obj.contains_key("input") || obj.contains_key("output") {
                    Format::InputOutput
                } else {
                    let keys: Vec<_> = obj.keys().map(|k| format!("\"{k}\"")).collect();
                    errors.push(err(format!(
                        "cannot tell the record format from keys [{}]; expected \"input\"+\"output\", \"prompt\"+\"completion\" or \"messages\"",
                        keys.join(", ")
                    )));
                    continue;
                };
                format = Some(detected);
                detected
            }
        };
        if f == Format::Messages && chat.is_none() {
            match ChatFormat::for_encoder(cfg.chat_template, enc) {
                Ok(c) => chat = Some(c),
                Err(e) => return Err(fail(i + 1, e.to_string())),
            }
        }
        match record_to_text(f, obj, cfg, chat.as_ref()) {
            Ok((prompt, answer, answer_json)) => out.push(TextExample {
                prompt,
                answer,
                answer_json,
                source: at,
            }),
            Err(m) => errors.push(err(format!("{m} (file format: {})", f.describe()))),
        }
    }
    if errors.is_empty() && out.is_empty() {
        errors.push(DataError {
            at: Location {
                file: path.to_path_buf(),
                line: 1,
            },
            message: "no examples: the file is empty".into(),
        });
    }
    if errors.is_empty() {
        Ok((format.expect("at least one record"), out))
    } else {
        Err(DataErrors {
            file: path.to_path_buf(),
            errors,
        })
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

type Obj = serde_json::Map<String, Value>;

fn get_str<'a>(obj: &'a Obj, key: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        None => Err(format!("missing field \"{key}\"")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(format!(
            "field \"{key}\" must be a string, found {}",
            kind_of(v)
        )),
    }
}

fn record_to_text(
    f: Format,
    obj: &Obj,
    cfg: &TrainConfig,
    chat: Option<&ChatFormat>,
) -> Result<(String, String, Option<Value>), String> {
    match f {
        Format::InputOutput => {
            let input = get_str(obj, "input")?;
            let output = obj
                .get("output")
                .ok_or_else(|| "missing field \"output\"".to_string())?;
            let prompt = crate::prompt::render(&cfg.template, input);
            let (answer, json) = match output {
                Value::String(s) => (s.clone(), serde_json::from_str(s).ok()),
                Value::Null => return Err("field \"output\" is null".into()),
                v => (to_json_text(v, cfg.json_style), Some(v.clone())),
            };
            Ok((prompt, answer, json))
        }
        Format::PromptCompletion => {
            let prompt = get_str(obj, "prompt")?.to_string();
            let answer = get_str(obj, "completion")?.to_string();
            let json = serde_json::from_str(answer.trim()).ok();
            Ok((prompt, answer, json))
        }
        Format::Messages => {
            let messages = match obj.get("messages") {
                Some(v) => crate::chat::parse_messages(v)?,
                None => return Err("missing field \"messages\"".into()),
            };
            if !messages.iter().any(|m| m.role == Role::Assistant) {
                return Err("no assistant message to learn from".into());
            }
            let chat = chat.expect("the chat format is resolved before chat records");
            let (prompt, answer) = chat.example(&messages).map_err(|e| e.to_string())?;
            let content = &messages[messages.len() - 1].content;
            let json = serde_json::from_str(content.trim()).ok();
            Ok((prompt, answer, json))
        }
    }
}

/// Serialises a JSON value as answer text in the configured style.
pub fn to_json_text(v: &Value, style: JsonStyle) -> String {
    match style {
        JsonStyle::Compact => serde_json::to_string(v).expect("Value always serialises"),
        JsonStyle::Python => {
            let mut s = String::new();
            write_python_style(v, &mut s);
            s
        }
    }
}

fn write_python_style(v: &Value, out: &mut String) {
    match v {
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_style(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::to_string(k).expect("string serialises"));
                out.push_str(": ");
                write_python_style(x, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("scalar serialises")),
    }
}

/// Tokenizes one text example; `None` when it must be skipped. The bool says it was truncated.
pub fn tokenize_example(
    ex: &TextExample,
    enc: &dyn TextEncoder,
    max_len: usize,
    overlong: Overlong,
) -> Option<(Example, bool)> {
    let mut prompt = enc.encode(&ex.prompt, true);
    let mut answer = enc.encode(&ex.answer, false);
    answer.push(enc.eos_id());
    let mut truncated = false;
    if prompt.len() + answer.len() > max_len {
        match overlong {
            Overlong::Skip => return None,
            Overlong::TruncatePrompt => {
                let budget = max_len.checked_sub(answer.len())?;
                if budget < MIN_PROMPT_TOKENS.min(prompt.len()) || budget == 0 {
                    return None;
                }
                truncated = crate::prompt::cut_middle(&mut prompt, budget);
            }
        }
    }
    let n_prompt = prompt.len();
    let mut ids = prompt;
    ids.extend_from_slice(&answer);
    let mut loss_mask = vec![false; ids.len()];
    loss_mask[n_prompt.max(1)..].fill(true);
    Some((
        Example {
            ids,
            loss_mask,
            source: ex.source.clone(),
        },
        truncated,
    ))
}

/// A compiled JSON Schema for answers.
pub struct AnswerSchema {
    path: PathBuf,
    validator: jsonschema::Validator,
}

impl AnswerSchema {
    /// Loads and compiles a schema file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading schema {}", path.display()))?;
        let schema: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        Self::from_value(path, &schema)
    }

    /// Compiles an in-memory schema; `path` is only used in messages.
    pub fn from_value(path: &Path, schema: &Value) -> Result<Self> {
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| anyhow::anyhow!("{}: not a valid JSON Schema: {e}", path.display()))?;
        Ok(AnswerSchema {
            path: path.to_path_buf(),
            validator,
        })
    }

    /// Every violation of the schema by the answer, as messages.
    pub fn check(&self, ex: &TextExample) -> Vec<String> {
        let Some(v) = &ex.answer_json else {
            return vec![format!(
                "answer is not JSON, but a schema ({}) was given",
                self.path.display()
            )];
        };
        self.validator
            .iter_errors(v)
            .map(|e| {
                let at = e.instance_path.to_string();
                let at = if at.is_empty() { "/".to_string() } else { at };
                format!("answer violates the schema at {at}: {e}")
            })
            .collect()
    }
}

/// Loads a JSONL file end to end: parse, check against the schema, tokenize, fit to
/// `max_len`. Errors carry `file:line`.
pub fn load_dataset(
    path: &Path,
    cfg: &TrainConfig,
    enc: &dyn TextEncoder,
    schema: Option<&AnswerSchema>,
) -> Result<Dataset> {
    let (format, texts) = read_jsonl(path, cfg, enc)?;
    if let Some(schema) = schema {
        let errors: Vec<DataError> = texts
            .iter()
            .flat_map(|t| {
                schema.check(t).into_iter().map(|message| DataError {
                    at: t.source.clone(),
                    message,
                })
            })
            .collect();
        if !errors.is_empty() {
            return Err(DataErrors {
                file: path.to_path_buf(),
                errors,
            }
            .into());
        }
    }
    let mut stats = DataStats {
        records: texts.len(),
        ..DataStats::default()
    };
    let mut examples = Vec::with_capacity(texts.len());
    for t in &texts {
        match tokenize_example(t, enc, cfg.max_len, cfg.overlong) {
            Some((ex, truncated)) => {
                stats.truncated += truncated as usize;
                stats.tokens += ex.len();
                stats.target_tokens += ex.n_targets();
                examples.push(ex);
            }
            None => stats.skipped += 1,
        }
    }
    if examples.is_empty() {
        anyhow::bail!(
            "{}: all {} examples are longer than max_len = {} and were skipped; raise max_len or use overlong = \"truncate-prompt\"",
            path.display(),
            stats.records,
            cfg.max_len
        );
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        format,
        examples,
        stats,
    })
}

/// The real tokenizer. Special-token text is parsed (`parse_special`), because prompts rendered
/// from chat templates spell control tokens such as `<start_of_turn>` in text.
impl TextEncoder for smolt_tokenizer::Tokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        smolt_tokenizer::Tokenizer::encode(self, text, add_bos, true)
    }
    fn eos_id(&self) -> u32 {
        // Every GGUF vocabulary smolt supports has an EOS; a chat-only one ends turns instead.
        smolt_tokenizer::Tokenizer::eos_id(self)
            .or_else(|| self.end_of_turn_id())
            .expect("the vocabulary has neither an EOS nor an end-of-turn token")
    }
    fn model_chat_template(&self) -> Option<ModelTemplate> {
        let text = |id: Option<u32>| {
            id.map(|id| self.token_piece(id).to_string())
                .unwrap_or_default()
        };
        self.chat_template().map(|source| ModelTemplate {
            source: source.to_string(),
            bos_token: text(self.bos_id()),
            eos_token: text(smolt_tokenizer::Tokenizer::eos_id(self)),
        })
    }
}

/// A byte-level encoder for tests and the toy example: one token per byte (id = byte + 3),
/// BOS = 1, EOS = 2, and `<end_of_turn>` = 0 so chat rendering can be checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByteEncoder;

impl TextEncoder for ByteEncoder {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() + 1);
        if add_bos {
            out.push(1);
        }
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("<end_of_turn>") {
                out.push(0);
                rest = r;
            } else {
                let c = rest.chars().next().expect("non-empty");
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(|b| b as u32 + 3));
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }
    fn eos_id(&self) -> u32 {
        2
    }
}

/// Loads what a config names: the schema (if any), the training data and the validation data
/// (if any), printing nothing. The CLI's whole data step.
pub fn load_for_config(
    cfg: &TrainConfig,
    enc: &dyn TextEncoder,
) -> Result<(Dataset, Option<Dataset>)> {
    if cfg.data.as_os_str().is_empty() {
        anyhow::bail!("no training data: set `data` in the config or pass --data");
    }
    let schema = cfg.schema.as_deref().map(AnswerSchema::load).transpose()?;
    let train = load_dataset(&cfg.data, cfg, enc, schema.as_ref())?;
    let valid = cfg
        .valid
        .as_deref()
        .map(|v| load_dataset(v, cfg, enc, schema.as_ref()))
        .transpose()?;
    Ok((train, valid))
}
