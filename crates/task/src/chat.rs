//! Chat conversations (`{"messages": [...]}` records) → prompt text. The one place it happens:
//! training, validation, `smolt data check` and `smolt generate --prompts` all render through
//! [`ChatFormat`], so a model is asked at inference exactly what it was taught with.
//!
//! The format is the model's own chat template when its GGUF has one (`tokenizer.chat_template`:
//! Jinja as Hugging Face tokenizers ship it, rendered with minijinja the way `transformers`'
//! `apply_chat_template` renders it), else the built-in Gemma 3 format, which gives exactly the
//! text of Gemma 3's official template (the tests check it against that template). The task's
//! `chat_template` key chooses ([`ChatTemplateSetting`]); [`crate::Task::chat_format`] resolves
//! it for a model.
//!
//! BOS: templates print `{{ bos_token }}` themselves, while smolt's encoders add the BOS id to
//! every prompt. [`ChatFormat::prompt`] and [`ChatFormat::example`] drop the template's leading
//! BOS text (as llama.cpp does) so that the model sees one BOS, not two.

use std::fmt;

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::kind_of;

/// How `{"messages": [...]}` records become prompt text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplateSetting {
    /// The model's own chat template (its GGUF's `tokenizer.chat_template`) when it has one,
    /// else the built-in Gemma 3 format.
    #[default]
    Auto,
    /// The model's own chat template; a model without one is an error.
    Gguf,
    /// The built-in Gemma 3 format, whatever the model ships (the text of Gemma 3's official
    /// template).
    Gemma,
}

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A function's result, answering an assistant's tool call.
    Tool,
}

impl Role {
    /// A record's role; `model` (Gemma's name for it) is the assistant.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" | "model" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// One message of a conversation, as templates see it: `{"role": ..., "content": ...}`, and
/// for function calling the fields Hugging Face's templates read: an assistant's
/// `tool_calls` and a tool result's `tool_call_id` and `name`. Absent fields are left out, not
/// null, because templates test them with `is defined`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    /// Empty for an assistant message that only calls tools.
    pub content: String,
    /// `{"type": "function", "function": {"name", "arguments"}}` with `arguments` a JSON
    /// object (not OpenAI's string: templates write it with `tojson`), and `id` if known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The function a tool result comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// An assistant message calling `calls` (in the form [`Message::tool_calls`] describes).
    pub fn calls(content: impl Into<String>, calls: Vec<Value>) -> Message {
        Message {
            tool_calls: calls,
            ..Message::new(Role::Assistant, content)
        }
    }

    /// The result of a call, answering the call `id` to the function `name`.
    pub fn tool_result(
        content: impl Into<String>,
        id: Option<String>,
        name: Option<String>,
    ) -> Message {
        Message {
            tool_call_id: id,
            name,
            ..Message::new(Role::Tool, content)
        }
    }
}

/// The `messages` field of a record: an array of `{"role", "content"}` objects with string
/// content and a role among system, user, assistant (or model) and tool; an assistant message
/// may hold `tool_calls` (OpenAI's form, see [`parse_calls`]) instead of content,
/// a tool message its `tool_call_id` and `name`.
pub fn parse_messages(v: &Value) -> Result<Vec<Message>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "field \"messages\" must be an array, found {}",
            kind_of(v)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Some(m) = m.as_object() else {
                return Err(format!("messages[{i}] must be an object"));
            };
            let field = |key: &str| match m.get(key) {
                None => Err(format!("messages[{i}]: missing field \"{key}\"")),
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(v) => Err(format!(
                    "messages[{i}]: field \"{key}\" must be a string, found {}",
                    kind_of(v)
                )),
            };
            let role = field("role")?;
            let role = Role::parse(role).ok_or_else(|| {
                format!(
                    "messages[{i}]: unknown role \"{role}\" (expected system, user, assistant or tool)"
                )
            })?;
            let calls = match m.get("tool_calls") {
                None | Some(Value::Null) => Vec::new(),
                Some(v) => parse_calls(v).map_err(|e| format!("messages[{i}]: {e}"))?,
            };
            // A message that only calls tools has no text.
            let content = match m.get("content") {
                None | Some(Value::Null) if !calls.is_empty() => "",
                _ => field("content")?,
            };
            let text = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_string);
            Ok(Message {
                tool_calls: calls,
                tool_call_id: text("tool_call_id"),
                name: text("name"),
                ..Message::new(role, content)
            })
        })
        .collect()
}

/// An assistant message's `tool_calls` (OpenAI's `{"type": "function", "function": {"name",
/// "arguments"}}`, arguments a JSON string or object, with an optional `id`) in the form
/// templates read: arguments as an object.
pub fn parse_calls(v: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "`tool_calls` must be an array, found {}",
            kind_of(v)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let call = smolt_constrain::ToolCall::from_openai(c)
                .map_err(|e| format!("tool_calls[{j}]: {e}"))?;
            let mut out = serde_json::json!({
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            });
            match c.get("id") {
                None | Some(Value::Null) => {}
                Some(Value::String(id)) => out["id"] = Value::String(id.clone()),
                Some(other) => {
                    return Err(format!(
                        "tool_calls[{j}].id must be a string, found {}",
                        kind_of(other)
                    ))
                }
            }
            Ok(out)
        })
        .collect()
}

/// Why a conversation could not be rendered. Every variant says what to fix; none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template is not valid Jinja (or uses a tag or filter minijinja does not have).
    #[error("the chat template ({name}) does not compile: {detail}")]
    Compile { name: String, detail: String },
    /// The template refused the conversation through `raise_exception`, or the built-in format
    /// refused it for the same reason Gemma's template would.
    #[error("{by} refuses this conversation: {message}")]
    Refused { by: String, message: String },
    /// Rendering failed otherwise (an undefined function, a type error in the template, ...).
    #[error("the chat template ({name}) failed: {detail}")]
    Render { name: String, detail: String },
    /// `chat_template = "gguf"` with a model that has none.
    #[error(
        "chat_template = \"gguf\", but the model has no chat template (no tokenizer.chat_template \
         in its GGUF); use \"auto\" or \"gemma\" for the built-in Gemma 3 format"
    )]
    NoModelTemplate,
    /// The conversation cannot be a training example.
    #[error("{0}")]
    Conversation(String),
}

/// The chat template a model ships, with the spelling of the special tokens it may print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTemplate {
    /// Jinja source (the GGUF's `tokenizer.chat_template`).
    pub source: String,
    /// Text of the BOS token (`<bos>` for Gemma), given to the template as `bos_token`.
    pub bos_token: String,
    /// Text of the EOS token, given to the template as `eos_token`.
    pub eos_token: String,
}

/// Where GGUF chat templates come from, as templates are named in error messages.
const GGUF_TEMPLATE_NAME: &str = "tokenizer.chat_template";

/// Marks an error raised by the template itself through `raise_exception`.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// A compiled Jinja chat template, rendered as Hugging Face renders chat templates: blocks trim
/// the newline after them and the whitespace before them (`trim_blocks`, `lstrip_blocks`),
/// `{% break %}`/`{% continue %}` work, Python string methods (`.strip()`, `.startswith()`,
/// `.items()`, ...) are available, and the template sees `messages`, `add_generation_prompt`,
/// `bos_token`, `eos_token` and a `raise_exception(message)` function.
pub struct ChatTemplate {
    env: Environment<'static>,
    name: String,
    bos_token: String,
    eos_token: String,
    /// Whether the template reads a `tools` variable (Qwen 2.5's does, Gemma 3's does not).
    takes_tools: bool,
    /// Whether it writes calls in `<tool_call>` blocks (Qwen 2.5, Hermes).
    hermes_calls: bool,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `name` names it in error messages (with the line at fault).
    pub fn new(
        name: &str,
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<minijinja::Value, minijinja::Error> {
                Err(
                    minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
                        .with_source(Raised(message)),
                )
            },
        );
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| ChatError::Compile {
                name: name.to_string(),
                detail: describe_error(&e),
            })?;
        let takes_tools = env
            .get_template(name)
            .map(|t| t.undeclared_variables(false).contains("tools"))
            .unwrap_or(false);
        Ok(ChatTemplate {
            env,
            name: name.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            takes_tools,
            hermes_calls: source.contains("<tool_call>"),
        })
    }

    /// The model's template from what its GGUF says.
    pub fn from_model(t: &ModelTemplate) -> Result<ChatTemplate, ChatError> {
        ChatTemplate::new(GGUF_TEMPLATE_NAME, &t.source, &t.bos_token, &t.eos_token)
    }

    /// The text the template makes of `messages`, BOS text included if the template prints
    /// it. With `add_generation_prompt`, the opened assistant turn follows.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// Whether the template writes calls in `<tool_call>` blocks (Qwen 2.5, Hermes).
    pub fn writes_tool_call_blocks(&self) -> bool {
        self.hermes_calls
    }

    /// Whether the template reads `tools` (so [`ChatTemplate::render_with_tools`] shows them).
    pub fn takes_tools(&self) -> bool {
        self.takes_tools
    }

    /// [`ChatTemplate::render`] with `tools` (OpenAI's `{"type": "function", "function":
    /// {...}}` objects) given to the template as `tools`, as `apply_chat_template(tools=...)`
    /// does; `None` is Python's `None`.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let tmpl = self
            .env
            .get_template(&self.name)
            .expect("the template was added when it compiled");
        tmpl.render(minijinja::context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| match raised_message(&e) {
            Some(message) => ChatError::Refused {
                by: format!("the chat template ({})", self.name),
                message,
            },
            None => ChatError::Render {
                name: self.name.clone(),
                detail: describe_error(&e),
            },
        })
    }
}

/// The message given to `raise_exception`, if that is what failed.
fn raised_message(e: &minijinja::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        source = s.source();
    }
    None
}

/// minijinja's message, which names the template and line (`... (in tokenizer.chat_template:3)`).
fn describe_error(e: &minijinja::Error) -> String {
    e.to_string()
}

const TEMPLATE_LABEL: &str = "the model's chat template (tokenizer.chat_template)";
const GEMMA_LABEL: &str = "the built-in Gemma 3 chat format";

/// Gemma's BOS and EOS text, for the built-in format.
const GEMMA_BOS: &str = "<bos>";
const GEMMA_EOS: &str = "<eos>";

/// Gemma 3's chat format written out, giving exactly the text of Gemma 3's official chat
/// template (BOS text included): a leading system message is folded into the first turn
/// (Gemma has no system role), `assistant` is spelled `model`, contents are trimmed, and with
/// `add_generation_prompt` an opened model turn ends the text so the answer follows it.
/// Conversations the official template refuses (roles not alternating user/assistant after the
/// optional system message) are refused with its message.
pub fn render_gemma(
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, ChatError> {
    let mut s = String::from(GEMMA_BOS);
    let (prefix, turns) = match messages.split_first() {
        Some((first, rest)) if first.role == Role::System => {
            (format!("{}\n\n", first.content), rest)
        }
        _ => (String::new(), messages),
    };
    for (i, m) in turns.iter().enumerate() {
        if (m.role == Role::User) != (i % 2 == 0) {
            return Err(ChatError::Refused {
                by: GEMMA_LABEL.into(),
                message: "Conversation roles must alternate user/assistant/user/assistant/..."
                    .into(),
            });
        }
        s += "<start_of_turn>";
        s += match m.role {
            Role::System => "system",
            // Unreachable past the alternation check: tool results reach this format as user
            // turns ([`crate::tools`]).
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        s += "\n";
        if i == 0 {
            s += &prefix;
        }
        s += m.content.trim();
        s += "<end_of_turn>\n";
    }
    if add_generation_prompt {
        s += "<start_of_turn>model\n";
    }
    Ok(s)
}

/// How conversations become text for one model and config.
#[derive(Debug)]
pub enum ChatFormat {
    /// The built-in Gemma 3 format ([`render_gemma`]).
    Gemma,
    /// A Jinja template: the model's own.
    Template(Box<ChatTemplate>),
}

impl ChatFormat {
    /// The format `setting` asks for, given the model's template (if it has one). A model
    /// template that does not compile is an error, not a silent fallback.
    pub fn resolve(
        setting: ChatTemplateSetting,
        model: Option<&ModelTemplate>,
    ) -> Result<ChatFormat, ChatError> {
        match (setting, model) {
            (ChatTemplateSetting::Gemma, _) | (ChatTemplateSetting::Auto, None) => {
                Ok(ChatFormat::Gemma)
            }
            (ChatTemplateSetting::Gguf, None) => Err(ChatError::NoModelTemplate),
            (ChatTemplateSetting::Auto | ChatTemplateSetting::Gguf, Some(t)) => {
                Ok(ChatFormat::Template(Box::new(ChatTemplate::from_model(t)?)))
            }
        }
    }

    /// Which format this is, for logs and reports.
    pub fn describe(&self) -> &'static str {
        match self {
            ChatFormat::Gemma => GEMMA_LABEL,
            ChatFormat::Template(_) => TEMPLATE_LABEL,
        }
    }

    /// The full text of `messages`, BOS text included, as the template prints it.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        match self {
            ChatFormat::Gemma => render_gemma(messages, add_generation_prompt),
            ChatFormat::Template(t) => t.render(messages, add_generation_prompt),
        }
    }

    fn bos_text(&self) -> &str {
        match self {
            ChatFormat::Gemma => GEMMA_BOS,
            ChatFormat::Template(t) => &t.bos_token,
        }
    }

    fn eos_text(&self) -> &str {
        match self {
            ChatFormat::Gemma => GEMMA_EOS,
            ChatFormat::Template(t) => &t.eos_token,
        }
    }

    /// `text` without one leading BOS text: the encoder adds the BOS id itself.
    pub(crate) fn without_bos<'a>(&self, text: &'a str) -> &'a str {
        let bos = self.bos_text();
        if bos.is_empty() {
            text
        } else {
            text.strip_prefix(bos).unwrap_or(text)
        }
    }

    /// The prompt asking the model for the next assistant message: the conversation, then the
    /// opened assistant turn. Without the leading BOS text; encode it with BOS
    /// ([`crate::prompt::encode_prompt`] does).
    pub fn prompt(&self, messages: &[Message]) -> Result<String, ChatError> {
        let text = self.render(messages, true)?;
        Ok(self.without_bos(&text).to_string())
    }

    /// A training example from a conversation ending in the assistant's answer: the prompt
    /// ([`ChatFormat::prompt`] of the messages before the answer) and the answer text, which is
    /// what the template prints after that prompt for the whole conversation, up to and
    /// including its end-of-turn marker (trailing whitespace and EOS text left out: the EOS
    /// id is appended when the answer is tokenized, and generation stops at the marker).
    pub fn example(&self, messages: &[Message]) -> Result<(String, String), ChatError> {
        self.example_by(messages, |m, agp| self.render(m, agp))
    }

    /// [`ChatFormat::example`] with `render(messages, add_generation_prompt)` giving the
    /// full text (tool conversations render their own way, [`crate::tools`]).
    pub(crate) fn example_by(
        &self,
        messages: &[Message],
        render: impl Fn(&[Message], bool) -> Result<String, ChatError>,
    ) -> Result<(String, String), ChatError> {
        let Some((answer, context)) = messages.split_last() else {
            return Err(ChatError::Conversation("no messages".into()));
        };
        if answer.role != Role::Assistant {
            return Err(ChatError::Conversation(
                "the last message must be the assistant's answer".into(),
            ));
        }
        if !context.iter().any(|m| m.role == Role::User) {
            return Err(ChatError::Conversation(
                "no user message before the assistant's answer".into(),
            ));
        }
        let prompt = render(context, true)?;
        let full = render(messages, false)?;
        let Some(answer) = full.strip_prefix(&prompt) else {
            return Err(ChatError::Conversation(format!(
                "{} does not print the conversation before the answer, with its generation \
                 prompt, as the start of the whole conversation, so the answer cannot be told \
                 apart from the prompt",
                self.describe()
            )));
        };
        let answer = answer.trim_end();
        let eos = self.eos_text();
        let answer = match answer.strip_suffix(eos) {
            Some(a) if !eos.is_empty() => a,
            _ => answer,
        };
        Ok((self.without_bos(&prompt).to_string(), answer.to_string()))
    }
}
