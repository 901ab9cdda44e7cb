//! OpenAI request bodies → a checked [`Request`]. Every field is read by hand so that a wrong
//! one is answered 400 with its name (`param`) and what was expected, and a field the server
//! does not implement yet is refused by name instead of silently ignored: a client that asks
//! for penalties must learn it did not get them.

use serde_json::{Map, Value};
use smolt_constrain::{ToolCallSpec, ToolError, MAX_PARALLEL_CALLS};
use smolt_task::{Message, Role};

use crate::error::ApiError;

/// Which endpoint a body came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completion,
}

/// What the model continues.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A conversation, rendered with the model's chat format.
    Messages(Vec<Message>),
    /// Raw prompt text, sent as is.
    Prompt(String),
}

/// `response_format`.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    Text,
    /// `{"type": "json_object"}`: any JSON object.
    JsonObject,
    /// `{"type": "json_schema", "json_schema": {"schema": ...}}`.
    JsonSchema(Value),
}

/// A checked request: every value within its range.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub endpoint: Endpoint,
    pub model: String,
    pub input: Input,
    /// `None`: up to the end of the context.
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    /// 0: no limit.
    pub top_k: usize,
    /// `None`: a fresh seed per request.
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub format: Format,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    /// vLLM's extension: go on past end-of-generation tokens until `max_tokens`.
    pub ignore_eos: bool,
    /// Log-probabilities of the output tokens: `None` for none, `Some(k)` for each token's
    /// with the `k` most likely alternatives (chat `top_logprobs`, completions `logprobs`).
    pub logprobs: Option<usize>,
    /// Choices (`n`), each generated as a sequence of its own.
    pub n: usize,
    /// `tools`, `tool_choice` and `parallel_tool_calls`, checked; `None` without tools (the
    /// answer is text).
    pub tools: Option<ToolCallSpec>,
}

/// OpenAI's default temperature (also its default for `top_p`: 1).
const DEFAULT_TEMPERATURE: f32 = 1.0;
/// OpenAI's limit on stop sequences.
const MAX_STOPS: usize = 4;
/// OpenAI's limits on alternatives per token: chat `top_logprobs`, completions `logprobs`.
pub const MAX_TOP_LOGPROBS: usize = 20;
pub const MAX_COMPLETION_LOGPROBS: usize = 5;
/// Choices per request: each takes a seat of its own in the batch, so a bound keeps one
/// request from filling the batch for everyone else.
pub const MAX_CHOICES: usize = 16;

/// Fields of both endpoints that the server implements.
const COMMON: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "response_format",
    "ignore_eos",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "logit_bias",
];
const CHAT_ONLY: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_parallel_tool_calls",
];
const COMPLETION_ONLY: &[&str] = &["prompt", "echo", "suffix", "best_of"];
/// OpenAI fields that this server does not implement yet: refused by name.
const NOT_YET: &[&str] = &[
    "functions",
    "function_call",
    "audio",
    "modalities",
    "prediction",
    "reasoning_effort",
    "web_search_options",
    "min_tokens",
    "repetition_penalty",
];

/// Parses and checks `body` for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(
            None,
            format!("the body must be a JSON object, found {}", kind(&value)),
        ));
    };
    let own = match endpoint {
        Endpoint::Chat => CHAT_ONLY,
        Endpoint::Completion => COMPLETION_ONLY,
    };
    for key in obj.keys() {
        if NOT_YET.contains(&key.as_str()) {
            return Err(ApiError::field(
                key,
                format!("`{key}` is not supported by this server yet"),
            ));
        }
        if !COMMON.contains(&key.as_str()) && !own.contains(&key.as_str()) {
            return Err(ApiError::field(
                key,
                format!("unrecognized request argument supplied: `{key}`"),
            ));
        }
    }
    let f = Fields(&obj);
    let model = f
        .string("model")?
        .ok_or_else(|| {
            ApiError::field(
                "model",
                "`model` is required: the name of a model in GET /v1/models",
            )
        })?
        .to_string();
    let input = match endpoint {
        Endpoint::Chat => Input::Messages(messages(f.get("messages"))?),
        Endpoint::Completion => Input::Prompt(prompt(f.get("prompt"))?),
    };
    refuse_unsupported(&f)?;
    let tools = tools(&f)?;
    let format = response_format(f.get("response_format"))?;
    if tools.as_ref().is_some_and(ToolCallSpec::allows_calls) && format != Format::Text {
        return Err(ApiError::field(
            "response_format",
            "`response_format` together with `tools` is not supported yet: give one",
        ));
    }
    let n = choices(&f)?;
    let stream = f.boolean("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(_) if !stream => {
            return Err(ApiError::field(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true",
            ));
        }
        Some(Value::Object(o)) => {
            for k in o.keys() {
                if k != "include_usage" {
                    return Err(ApiError::field(
                        "stream_options",
                        format!("unrecognized stream option `{k}` (known: include_usage)"),
                    ));
                }
            }
            Fields(o)
                .boolean("include_usage")
                .map_err(|e| ApiError::field("stream_options", e.message))?
                .unwrap_or(false)
        }
        Some(v) => {
            return Err(ApiError::field(
                "stream_options",
                format!("`stream_options` must be an object, found {}", kind(v)),
            ))
        }
    };
    Ok(Request {
        endpoint,
        model,
        input,
        max_tokens: max_tokens(&f, endpoint)?,
        temperature: temperature(&f)?,
        top_p: top_p(&f)?,
        top_k: top_k(&f)?,
        seed: f.integer("seed")?.map(|s| s as u64),
        stop: stops(f.get("stop"))?,
        format,
        stream,
        include_usage,
        ignore_eos: f.boolean("ignore_eos")?.unwrap_or(false),
        logprobs: logprobs(&f, endpoint)?,
        n,
        tools,
    })
}

/// `tools`, `tool_choice`, `parallel_tool_calls` with OpenAI's rules and defaults; an error
/// names the field at fault. No tools (absent or empty) is a plain text request.
fn tools(f: &Fields) -> Result<Option<ToolCallSpec>, ApiError> {
    let (tools, choice, parallel) = (
        f.get("tools"),
        f.get("tool_choice"),
        f.get("parallel_tool_calls"),
    );
    // smolt's extension (OpenAI sets no bound): most calls in one answer when parallel.
    let max_calls = f.integer("max_parallel_tool_calls")?;
    if tools.is_none() && choice.is_none() && parallel.is_none() {
        return Ok(None);
    }
    let err = |e: ToolError| ApiError::field(e.param(), e.to_string());
    let mut spec = ToolCallSpec::from_openai(tools, choice, parallel).map_err(err)?;
    if let Some(n) = max_calls {
        let negative = ToolError::BadMaxCalls {
            found: n.to_string(),
            max: MAX_PARALLEL_CALLS,
        };
        let n = usize::try_from(n).map_err(|_| err(negative))?;
        spec = spec.with_max_parallel_calls(n).map_err(err)?;
    }
    Ok((!spec.tools().is_empty()).then_some(spec))
}

/// `n`, and `best_of` where a client sends it too: only as many candidates as choices, since
/// picking the best of more is not implemented.
fn choices(f: &Fields) -> Result<usize, ApiError> {
    let n = f.integer("n")?.unwrap_or(1);
    if !(1..=MAX_CHOICES as i64).contains(&n) {
        return Err(ApiError::field(
            "n",
            format!("`n` must be between 1 and {MAX_CHOICES} (choices per request), found {n}"),
        ));
    }
    if let Some(b) = f.integer("best_of")? {
        if b != n {
            return Err(ApiError::field(
                "best_of",
                format!(
                    "`best_of` must equal `n` ({n}): returning the best of more candidates \
                     than choices is not supported yet"
                ),
            ));
        }
    }
    Ok(n as usize)
}

/// Chat: `logprobs: true` with `top_logprobs` in 0..=20; completions: `logprobs` in 0..=5.
fn logprobs(f: &Fields, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
    let (key, max, value) = match endpoint {
        Endpoint::Chat => {
            let on = f.boolean("logprobs")?.unwrap_or(false);
            let top = f.integer("top_logprobs")?;
            if top.is_some() && !on {
                return Err(ApiError::field(
                    "top_logprobs",
                    "`top_logprobs` needs `logprobs` set to true",
                ));
            }
            if !on {
                return Ok(None);
            }
            ("top_logprobs", MAX_TOP_LOGPROBS, top.unwrap_or(0))
        }
        Endpoint::Completion => match f.integer("logprobs")? {
            None => return Ok(None),
            Some(k) => ("logprobs", MAX_COMPLETION_LOGPROBS, k),
        },
    };
    if !(0..=max as i64).contains(&value) {
        return Err(ApiError::field(
            key,
            format!("`{key}` must be between 0 and {max}, found {value}"),
        ));
    }
    Ok(Some(value as usize))
}

/// Fields that exist in OpenAI's API and are accepted at their neutral value only.
fn refuse_unsupported(f: &Fields) -> Result<(), ApiError> {
    for key in ["presence_penalty", "frequency_penalty"] {
        if f.number(key)?.is_some_and(|v| v != 0.0) {
            return Err(ApiError::field(
                key,
                format!("`{key}` is not supported yet (only 0, the default)"),
            ));
        }
    }
    match f.get("logit_bias") {
        None => {}
        Some(Value::Object(o)) if o.is_empty() => {}
        Some(Value::Object(_)) => {
            return Err(ApiError::field(
                "logit_bias",
                "`logit_bias` is not supported yet",
            ))
        }
        Some(v) => {
            return Err(ApiError::field(
                "logit_bias",
                format!("`logit_bias` must be an object, found {}", kind(v)),
            ))
        }
    }
    if f.boolean("echo")? == Some(true) {
        return Err(ApiError::field("echo", "`echo` is not supported yet"));
    }
    if f.get("suffix").is_some() {
        return Err(ApiError::field("suffix", "`suffix` is not supported"));
    }
    // `user` identifies the end user to the provider; there is nothing here to use it for.
    f.string("user")?;
    Ok(())
}

fn max_tokens(f: &Fields, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
    let plain = f.integer("max_tokens")?;
    let newer = match endpoint {
        Endpoint::Chat => f.integer("max_completion_tokens")?,
        Endpoint::Completion => None,
    };
    let (key, value) = match (plain, newer) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::field(
                "max_completion_tokens",
                format!("`max_tokens` ({a}) and `max_completion_tokens` ({b}) disagree; give one"),
            ))
        }
        (_, Some(b)) => ("max_completion_tokens", b),
        (Some(a), None) => ("max_tokens", a),
        (None, None) => return Ok(None),
    };
    if value < 1 {
        return Err(ApiError::field(
            key,
            format!("`{key}` must be at least 1, got {value}"),
        ));
    }
    Ok(Some(usize::try_from(value).unwrap_or(usize::MAX)))
}

fn temperature(f: &Fields) -> Result<f32, ApiError> {
    match f.number("temperature")? {
        None => Ok(DEFAULT_TEMPERATURE),
        Some(t) if (0.0..=2.0).contains(&t) => Ok(t as f32),
        Some(t) => Err(ApiError::field(
            "temperature",
            format!("`temperature` must be between 0 and 2 (0 is greedy), got {t}"),
        )),
    }
}

fn top_p(f: &Fields) -> Result<f32, ApiError> {
    match f.number("top_p")? {
        None => Ok(1.0),
        Some(p) if p > 0.0 && p <= 1.0 => Ok(p as f32),
        Some(p) => Err(ApiError::field(
            "top_p",
            format!("`top_p` must be in (0, 1], got {p}"),
        )),
    }
}

/// vLLM's `top_k`: -1 or 0 for no limit.
fn top_k(f: &Fields) -> Result<usize, ApiError> {
    match f.integer("top_k")? {
        None | Some(-1) | Some(0) => Ok(0),
        Some(k) if k > 0 => Ok(usize::try_from(k).unwrap_or(usize::MAX)),
        Some(k) => Err(ApiError::field(
            "top_k",
            format!("`top_k` must be positive, or -1 or 0 for no limit; got {k}"),
        )),
    }
}

fn stops(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                other => Err(ApiError::field(
                    "stop",
                    format!("`stop` must hold strings, found {}", kind(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(ApiError::field(
                "stop",
                format!(
                    "`stop` must be a string or an array of strings, found {}",
                    kind(other)
                ),
            ))
        }
    };
    if list.len() > MAX_STOPS {
        return Err(ApiError::field(
            "stop",
            format!(
                "`stop` holds at most {MAX_STOPS} sequences, got {}",
                list.len()
            ),
        ));
    }
    if list.iter().any(|s| s.is_empty()) {
        return Err(ApiError::field(
            "stop",
            "`stop` sequences must not be empty",
        ));
    }
    Ok(list)
}

fn response_format(v: Option<&Value>) -> Result<Format, ApiError> {
    let bad = |m: String| ApiError::field("response_format", m);
    let Some(v) = v else {
        return Ok(Format::Text);
    };
    let Value::Object(o) = v else {
        return Err(bad(format!(
            "`response_format` must be an object such as {{\"type\": \"json_object\"}}, found {}",
            kind(v)
        )));
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Format::Text),
        Some("json_object") => Ok(Format::JsonObject),
        Some("json_schema") => {
            let Some(Value::Object(js)) = o.get("json_schema") else {
                return Err(bad(
                    "`response_format.json_schema` must be an object: {\"name\", \"schema\", \"strict\"}"
                        .into(),
                ));
            };
            for (k, v) in js {
                match (k.as_str(), v) {
                    ("name" | "description", Value::String(_)) | ("strict", Value::Bool(_)) => {}
                    ("schema", _) => {}
                    ("name" | "description" | "strict", _) => {
                        return Err(bad(format!(
                            "`response_format.json_schema.{k}` has the wrong type: {}",
                            kind(v)
                        )))
                    }
                    _ => {
                        return Err(bad(format!(
                            "unrecognized key `{k}` in `response_format.json_schema` \
                             (known: name, description, schema, strict)"
                        )))
                    }
                }
            }
            match js.get("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(_))) => Ok(Format::JsonSchema(s.clone())),
                Some(s) => Err(bad(format!(
                    "`response_format.json_schema.schema` must be a JSON Schema object, found {}",
                    kind(s)
                ))),
                None => Err(bad(
                    "`response_format.json_schema.schema` is required: the JSON Schema the answer must match"
                        .into(),
                )),
            }
        }
        Some(other) => Err(bad(format!(
            "unknown `response_format.type` \"{other}\" (known: text, json_object, json_schema)"
        ))),
        None => Err(bad(
            "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\"".into(),
        )),
    }
}

/// Chat `messages`: roles system (or developer), user, assistant (with optional
/// `tool_calls`, then content optional) and tool (`tool_call_id`, optional `name`); content a
/// string or an array of text parts.
fn messages(v: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    let bad = |m: String| ApiError::field("messages", m);
    let items = match v {
        None => {
            return Err(bad(
                "`messages` is required: an array of {\"role\", \"content\"}".into(),
            ))
        }
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(bad(format!(
                "`messages` must be an array, found {}",
                kind(v)
            )))
        }
    };
    if items.is_empty() {
        return Err(bad("`messages` is empty: give at least one message".into()));
    }
    let mut out: Vec<Message> = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(bad(format!(
                "messages[{i}] must be an object, found {}",
                kind(m)
            )));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.as_str(),
            Some(v) => {
                return Err(bad(format!(
                    "messages[{i}].role must be a string, found {}",
                    kind(v)
                )))
            }
            None => return Err(bad(format!("messages[{i}] has no `role`"))),
        };
        let (role, extra): (Role, &[&str]) = match role {
            "system" | "developer" => (Role::System, &[]),
            "user" => (Role::User, &[]),
            "assistant" => (Role::Assistant, &["tool_calls"]),
            "tool" => (Role::Tool, &["tool_call_id", "name"]),
            "function" => {
                return Err(bad(format!(
                    "messages[{i}]: role \"function\" (OpenAI's deprecated form) is not \
                     supported; use \"tool\" with a `tool_call_id`"
                )))
            }
            other => {
                return Err(bad(format!(
                    "messages[{i}]: unknown role \"{other}\" (expected system, developer, user, assistant or tool)"
                )))
            }
        };
        for k in m.keys() {
            if k != "role" && k != "content" && !extra.contains(&k.as_str()) {
                return Err(bad(format!(
                    "messages[{i}]: `{k}` is not supported in a {} message",
                    m["role"].as_str().unwrap_or_default()
                )));
            }
        }
        let field = |k: &str| m.get(k).filter(|v| !v.is_null());
        let calls = match field("tool_calls") {
            None => Vec::new(),
            Some(v) => smolt_task::parse_calls(v).map_err(|e| bad(format!("messages[{i}].{e}")))?,
        };
        let text = if !calls.is_empty() && field("content").is_none() {
            String::new()
        } else {
            content(i, field("content"))?
        };
        if role != Role::Tool {
            out.push(Message {
                tool_calls: calls,
                ..Message::new(role, text)
            });
            continue;
        }
        let id = match field("tool_call_id") {
            Some(Value::String(id)) => id.clone(),
            Some(v) => {
                return Err(bad(format!(
                    "messages[{i}].tool_call_id must be a string, found {}",
                    kind(v)
                )))
            }
            None => {
                return Err(bad(format!(
                "messages[{i}]: a tool message needs `tool_call_id`, the id of the call it answers"
            )))
            }
        };
        // Formats without tool support name the function a result is from; a client need
        // not repeat it when the call is in the conversation.
        let name = match field("name") {
            Some(Value::String(n)) => Some(n.clone()),
            Some(v) => {
                return Err(bad(format!(
                    "messages[{i}].name must be a string, found {}",
                    kind(v)
                )))
            }
            None => out
                .iter()
                .flat_map(|m| &m.tool_calls)
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id.as_str()))
                .and_then(|c| c["function"]["name"].as_str())
                .map(str::to_string),
        };
        out.push(Message::tool_result(text, Some(id), name));
    }
    Ok(out)
}

/// A message's text: a string, or text parts joined by newlines (as vLLM joins them).
fn content(i: usize, v: Option<&Value>) -> Result<String, ApiError> {
    let bad = |m: String| ApiError::field("messages", m);
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    (Some("text"), _) => {
                        return Err(bad(format!(
                            "messages[{i}].content[{j}]: a text part needs a string `text`"
                        )))
                    }
                    (Some(t), _) => {
                        return Err(bad(format!(
                            "messages[{i}].content[{j}]: content of type \"{t}\" is not supported (text only)"
                        )))
                    }
                    (None, _) => {
                        return Err(bad(format!(
                            "messages[{i}].content[{j}] must be {{\"type\": \"text\", \"text\": ...}}"
                        )))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        None => Err(bad(format!("messages[{i}] has no `content`"))),
        Some(v) => Err(bad(format!(
            "messages[{i}].content must be a string or an array of text parts, found {}",
            kind(v)
        ))),
    }
}

/// Completion `prompt`: a string, or an array holding one string.
fn prompt(v: Option<&Value>) -> Result<String, ApiError> {
    let bad = |m: String| ApiError::field("prompt", m);
    match v {
        None => Err(bad("`prompt` is required: the text to continue".into())),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => match &items[..] {
            [Value::String(s)] => Ok(s.clone()),
            _ if items.iter().any(|v| v.is_number() || v.is_array()) => Err(bad(
                "`prompt` must be text: token-id prompts are not supported yet".into(),
            )),
            [_] | [] => Err(bad(
                "`prompt` must be a string (or an array holding one string); token-id prompts are not supported yet"
                    .into(),
            )),
            _ => Err(bad(format!(
                "`prompt` holds {} prompts; one per request is supported for now",
                items.len()
            ))),
        },
        Some(v) => Err(bad(format!("`prompt` must be a string, found {}", kind(v)))),
    }
}

/// Typed access to a body's fields; `null` counts as absent, as OpenAI treats it.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, want: &str, v: &Value) -> ApiError {
        ApiError::field(key, format!("`{key}` must be {want}, found {}", kind(v)))
    }

    fn string(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            // Beyond i64 only as too large, which every range check then refuses by value.
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.as_i64().unwrap_or(i64::MAX))),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "an integer", v)),
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }
}

/// How messages name a JSON value's type.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("the integer {n}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value) -> Result<Request, ApiError> {
        parse(Endpoint::Chat, body.to_string().as_bytes())
    }

    fn hi() -> Value {
        json!([{"role": "user", "content": "hi"}])
    }

    #[test]
    fn a_full_chat_request_parses_with_every_value() {
        let r = chat(json!({
            "model": "m", "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": 3,
            "stop": ["x", "y"], "stream": true, "stream_options": {"include_usage": true},
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}},
            "n": 1, "presence_penalty": 0, "logprobs": false, "user": "u"
        }))
        .unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(
            r.input,
            Input::Messages(vec![
                Message::new(Role::System, "be brief"),
                Message::new(Role::User, "a\nb")
            ])
        );
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!((r.temperature, r.top_p, r.seed), (0.0, 0.5, Some(3)));
        assert_eq!(r.stop, ["x", "y"]);
        assert!(r.stream && r.include_usage);
        assert_eq!(r.format, Format::JsonSchema(json!({"type": "object"})));
    }

    #[test]
    fn defaults_follow_openai() {
        let r = chat(json!({"model": "m", "messages": hi(), "stop": null})).unwrap();
        assert_eq!(r.max_tokens, None);
        assert_eq!((r.temperature, r.top_p, r.top_k), (1.0, 1.0, 0));
        assert!(r.stop.is_empty() && !r.stream && r.format == Format::Text);
        let r = parse(
            Endpoint::Completion,
            br#"{"model": "m", "prompt": ["once"], "stop": "\n"}"#,
        )
        .unwrap();
        assert_eq!(r.input, Input::Prompt("once".into()));
        assert_eq!(r.stop, ["\n"]);
    }

    /// Each bad body is refused with the field at fault and a message about it.
    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (
                json!({"model": "m", "messages": hi(), "max_tokens": -1}),
                "max_tokens",
                "at least 1",
            ),
            (
                json!({"model": "m", "messages": hi(), "max_tokens": "5"}),
                "max_tokens",
                "integer",
            ),
            (
                json!({"model": "m", "messages": hi(), "max_tokens": 2.5}),
                "max_tokens",
                "integer",
            ),
            (
                json!({"model": "m", "messages": hi(), "n": u64::MAX}),
                "n",
                "between 1 and 16",
            ),
            (
                json!({"model": "m", "messages": hi(), "max_tokens": 5, "max_completion_tokens": 6}),
                "max_completion_tokens",
                "disagree",
            ),
            (
                json!({"model": "m", "messages": hi(), "temperature": 3}),
                "temperature",
                "between 0 and 2",
            ),
            (
                json!({"model": "m", "messages": hi(), "top_p": 0}),
                "top_p",
                "(0, 1]",
            ),
            (
                json!({"model": "m", "messages": hi(), "n": 17}),
                "n",
                "between 1 and 16",
            ),
            (
                json!({"model": "m", "messages": hi(), "n": 0}),
                "n",
                "between 1 and 16",
            ),
            (
                json!({"model": "m", "messages": hi(), "n": 1.5}),
                "n",
                "an integer",
            ),
            (
                json!({"model": "m", "messages": hi(), "functions": []}),
                "functions",
                "not supported",
            ),
            (
                json!({"model": "m", "messages": hi(), "logprobs": 1}),
                "logprobs",
                "true or false",
            ),
            (
                json!({"model": "m", "messages": hi(), "logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
                "between 0 and 20",
            ),
            (
                json!({"model": "m", "messages": hi(), "logprobs": true, "top_logprobs": -1}),
                "top_logprobs",
                "between 0 and 20",
            ),
            (
                json!({"model": "m", "messages": hi(), "logprobs": true, "top_logprobs": "3"}),
                "top_logprobs",
                "an integer",
            ),
            (
                json!({"model": "m", "messages": hi(), "top_logprobs": 3}),
                "top_logprobs",
                "needs `logprobs`",
            ),
            (
                json!({"model": "m", "messages": hi(), "logprobs": false, "top_logprobs": 0}),
                "top_logprobs",
                "needs `logprobs`",
            ),
            (
                json!({"model": "m", "messages": hi(), "frobnicate": 1}),
                "frobnicate",
                "unrecognized",
            ),
            (
                json!({"model": "m", "messages": hi(), "stop": 5}),
                "stop",
                "string or an array",
            ),
            (
                json!({"model": "m", "messages": hi(), "stream_options": {"include_usage": true}}),
                "stream_options",
                "only allowed",
            ),
            (
                json!({"model": "m", "messages": hi(), "response_format": {"type": "yaml"}}),
                "response_format",
                "unknown",
            ),
            (
                json!({"model": "m", "messages": hi(), "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                "response_format",
                "required",
            ),
            (json!({"model": "m", "messages": []}), "messages", "empty"),
            (json!({"model": "m"}), "messages", "required"),
            (
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "messages",
                "unknown role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "messages",
                "no `content`",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages",
                "text only",
            ),
            (json!({"messages": hi()}), "model", "required"),
            (json!({"model": 5, "messages": hi()}), "model", "a string"),
        ];
        for (body, param, words) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert!(e.message.contains(words), "{body}: {}", e.message);
        }
    }

    #[test]
    fn logprobs_and_choices_parse_per_endpoint() {
        let r = chat(json!({"model": "m", "messages": hi(), "logprobs": true})).unwrap();
        assert_eq!((r.logprobs, r.n), (Some(0), 1));
        let r = chat(
            json!({"model": "m", "messages": hi(), "logprobs": true, "top_logprobs": 20, "n": 16}),
        )
        .unwrap();
        assert_eq!((r.logprobs, r.n), (Some(20), 16));
        let r = chat(json!({"model": "m", "messages": hi(), "logprobs": false})).unwrap();
        assert_eq!(r.logprobs, None);
        let completion = |body: Value| parse(Endpoint::Completion, body.to_string().as_bytes());
        let r =
            completion(json!({"model": "m", "prompt": "x", "logprobs": 5, "n": 3, "best_of": 3}))
                .unwrap();
        assert_eq!((r.logprobs, r.n), (Some(5), 3));
        let r = completion(json!({"model": "m", "prompt": "x", "logprobs": 0})).unwrap();
        assert_eq!(r.logprobs, Some(0));
        for (body, param, words) in [
            (json!({"logprobs": 6}), "logprobs", "between 0 and 5"),
            (json!({"logprobs": -1}), "logprobs", "between 0 and 5"),
            (json!({"logprobs": true}), "logprobs", "an integer"),
            (json!({"top_logprobs": 2}), "top_logprobs", "unrecognized"),
            (json!({"n": 2, "best_of": 3}), "best_of", "must equal `n`"),
            (json!({"best_of": 0}), "best_of", "must equal `n`"),
        ] {
            let mut full = json!({"model": "m", "prompt": "x"});
            for (k, v) in body.as_object().unwrap() {
                full[k] = v.clone();
            }
            let e = completion(full.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{full}");
            assert_eq!(e.param.as_deref(), Some(param), "{full}: {}", e.message);
            assert!(e.message.contains(words), "{full}: {}", e.message);
        }
    }

    #[test]
    fn tools_and_tool_messages_parse() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let r = chat(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c9", "content": "done"}
        ], "tools": tools, "parallel_tool_calls": false}))
        .unwrap();
        let spec = r.tools.unwrap();
        assert_eq!(spec.choice(), &smolt_constrain::ToolChoice::Auto);
        assert!(!spec.parallel());
        let Input::Messages(m) = r.input else {
            panic!("chat input")
        };
        assert_eq!(m[1].content, "");
        assert_eq!(m[1].tool_calls[0]["function"]["arguments"], json!({}));
        assert_eq!(m[2].role, Role::Tool);
        // The function's name comes from the call the result answers.
        assert_eq!(m[2].name.as_deref(), Some("f"));
        assert_eq!(m[2].tool_call_id.as_deref(), Some("c9"));
        // No tools, or an empty list: a plain text request.
        for extra in [
            json!({"tools": []}),
            json!({"tool_choice": "none"}),
            json!({}),
        ] {
            let mut body = json!({"model": "m", "messages": hi()});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert_eq!(chat(body).unwrap().tools, None);
        }
        let e = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "x", "tool_calls": []}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"), "{}", e.message);
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused() {
        for body in [&b"{not json"[..], b"[1, 2]", b""] {
            let e = parse(Endpoint::Chat, body).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.param.is_none());
        }
    }

    #[test]
    fn completion_fields_belong_to_completions() {
        let e = chat(json!({"model": "m", "messages": hi(), "echo": true})).unwrap_err();
        assert!(e.message.contains("unrecognized"), "{}", e.message);
        let e = parse(
            Endpoint::Completion,
            br#"{"model": "m", "prompt": "x", "echo": true}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("echo"));
        let e = parse(Endpoint::Completion, br#"{"model": "m", "prompt": [1, 2]}"#).unwrap_err();
        assert!(e.message.contains("token-id"), "{}", e.message);
    }
}
