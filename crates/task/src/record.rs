//! Record formats: a line of a JSONL data file → prompt text and answer text.
//!
//! Three line formats are accepted, detected per file from its first record:
//! - `{"input": str, "output": JSON value or str}` — the prompt is the task's template with
//!   `{input}` filled in; a non-string `output` is serialised per the task's [`JsonStyle`];
//! - `{"prompt": str, "completion": str}` — used verbatim;
//! - `{"messages": [{"role", "content"}, ...]}` — rendered by [`crate::chat`]: the model's own
//!   chat template when its GGUF has one, else the built-in Gemma 3 format (the task's
//!   `chat_template`); the answer is the last assistant message (earlier turns are context).
//! - `{"tools": [...], "messages": [...]}` — function calling ([`ToolRecord`]): rendered with
//!   the tools by [`crate::tools`], the answer is the last assistant message's `tool_calls`
//!   written as the model writes calls, or its text where no tool fits.
//!
//! Every problem carries the file and line it is on, and a file is read whole before failing,
//! so a user fixes it in one pass.
//!
//! [`JsonStyle`]: crate::JsonStyle

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use anyhow::Context;

use crate::chat::{ChatFormat, Message, Role};
use crate::encoder::TextEncoder;
use crate::json::kind_of;
use crate::task::Task;
use crate::tools::{is_tool_record, ToolRecord};

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
    /// `{"tools", "messages"}`: function calling.
    Tools,
}

impl Format {
    pub fn describe(self) -> &'static str {
        match self {
            Format::InputOutput => "{\"input\", \"output\"}",
            Format::PromptCompletion => "{\"prompt\", \"completion\"}",
            Format::Messages => "{\"messages\": [...]}",
            Format::Tools => "{\"tools\": [...], \"messages\": [...]}",
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
    /// The record, for function calling: evaluation decodes and scores with its tools.
    pub tools: Option<ToolRecord>,
}

/// Reads and checks a JSONL file, returning text examples or every error found. `enc` is the
/// model's: chat records are rendered with its chat template as `task.chat_template` says.
pub fn read_jsonl(
    path: &Path,
    task: &Task,
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
                let detected = if is_tool_record(obj) {
                    Format::Tools
                } else if obj.contains_key("messages") {
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
        if matches!(f, Format::Messages | Format::Tools) && chat.is_none() {
            match task.chat_format(enc) {
                Ok(c) => chat = Some(c),
                Err(e) => return Err(fail(i + 1, e.to_string())),
            }
        }
        match record_to_text(f, obj, task, chat.as_ref()) {
            Ok((prompt, answer, answer_json, tools)) => out.push(TextExample {
                prompt,
                answer,
                answer_json,
                source: at,
                tools,
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
    task: &Task,
    chat: Option<&ChatFormat>,
) -> Result<(String, String, Option<Value>, Option<ToolRecord>), String> {
    match f {
        Format::InputOutput => {
            let input = get_str(obj, "input")?;
            let output = obj
                .get("output")
                .ok_or_else(|| "missing field \"output\"".to_string())?;
            let prompt = task.prompt(input);
            let (answer, json) = match output {
                Value::String(s) => (s.clone(), serde_json::from_str(s).ok()),
                Value::Null => return Err("field \"output\" is null".into()),
                v => (task.answer_text(v), Some(v.clone())),
            };
            Ok((prompt, answer, json, None))
        }
        Format::PromptCompletion => {
            let prompt = get_str(obj, "prompt")?.to_string();
            let answer = get_str(obj, "completion")?.to_string();
            let json = serde_json::from_str(answer.trim()).ok();
            Ok((prompt, answer, json, None))
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
            Ok((prompt, answer, json, None))
        }
        Format::Tools => {
            if !is_tool_record(obj) {
                return Err(
                    "missing field \"tools\" (every line of a tool file lists its tools)".into(),
                );
            }
            let record = ToolRecord::from_json(obj, task.parallel_tool_calls, true)?;
            let chat = chat.expect("the chat format is resolved before chat records");
            let (prompt, answer) = chat
                .tool_example(&record, &task.json_layout())
                .map_err(|e| e.to_string())?;
            Ok((prompt, answer, None, Some(record)))
        }
    }
}

/// Whether a data file holds function-calling records: its first record lists tools (as
/// [`read_jsonl`] decides a file's format by its first record). A file that cannot be read or
/// parsed is not one; reading it properly reports why.
pub fn is_tool_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v.as_object().map(is_tool_record))
        .unwrap_or(false)
}

/// One line of a prompts file (`smolt generate --prompts`): a prompt without an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptRecord {
    /// 1-based line number.
    pub line: usize,
    pub prompt: Prompt,
}

/// A prompt before the model is known.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Final text (a `prompt`, or an `input` put into the task's template).
    Text(String),
    /// A conversation, rendered with [`crate::Task::chat_format`] once the model is known.
    Chat(Vec<Message>),
    /// A conversation with tools ([`ToolRecord`] without an answer): rendered with its tools,
    /// answered under its tools' constraint.
    Tools(Box<ToolRecord>),
}

/// Reads a prompts file — one JSON string, `{"prompt"}`, `{"input"}` (put into the task's
/// template), `{"messages"}` or `{"tools", "messages"}` per line. Every line must be usable before any generation
/// starts, so a typo on line 900 does not surface after an hour of work: all bad lines are
/// reported together, with their numbers.
pub fn read_prompts(file: &Path, task: &Task) -> anyhow::Result<Vec<PromptRecord>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!(
                    "{}:{line_no}: not valid JSON ({e})",
                    file.display()
                ));
                continue;
            }
        };
        let prompt = match &v {
            serde_json::Value::String(s) => Some(Prompt::Text(s.clone())),
            serde_json::Value::Object(o) => {
                if is_tool_record(o) {
                    match ToolRecord::from_json(o, task.parallel_tool_calls, false) {
                        Ok(r) => out.push(PromptRecord {
                            line: line_no,
                            prompt: Prompt::Tools(Box::new(r)),
                        }),
                        Err(e) => errors.push(format!("{}:{line_no}: {e}", file.display())),
                    }
                    continue;
                }
                match (o.get("prompt"), o.get("input"), o.get("messages")) {
                    (Some(serde_json::Value::String(p)), _, _) => Some(Prompt::Text(p.clone())),
                    (None, Some(serde_json::Value::String(inp)), _) => {
                        Some(Prompt::Text(task.prompt(inp)))
                    }
                    (None, None, Some(m)) => match crate::chat::parse_messages(m) {
                        Ok(m) if !m.is_empty() => Some(Prompt::Chat(m)),
                        Ok(_) => {
                            errors.push(format!("{}:{line_no}: no messages", file.display()));
                            continue;
                        }
                        Err(e) => {
                            errors.push(format!("{}:{line_no}: {e}", file.display()));
                            continue;
                        }
                    },
                    _ => None,
                }
            }
            _ => None,
        };
        match prompt {
            Some(prompt) => out.push(PromptRecord {
                line: line_no,
                prompt,
            }),
            None => errors.push(format!(
                "{}:{line_no}: expected {{\"prompt\": string}}, {{\"input\": string}}, \
                 {{\"messages\": [...]}} or a string",
                file.display()
            )),
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(20);
        anyhow::bail!(
            "{n} bad line(s) in {}:\n  {}",
            file.display(),
            errors.join("\n  ")
        );
    }
    if out.is_empty() {
        anyhow::bail!("{} holds no prompts", file.display());
    }
    Ok(out)
}
