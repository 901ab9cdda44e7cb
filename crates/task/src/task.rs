//! The task: what one job is, read from the task file (`task.toml`), and how its records become
//! prompts and answers. Training, evaluation, generation, the demo (and next the server and the
//! C API) all take a [`Task`], so one record renders the same way everywhere.
//!
//! A task file also holds the settings of later stages (training's `lr`, `lora_r`, ...): they
//! share one flat TOML table so that one file describes a whole run. [`Task::load`] reads the
//! task's keys and leaves the others to the stage that owns them; that stage checks them
//! (`smolt train` refuses any key that neither it nor the task knows).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::{ChatError, ChatFormat, ChatTemplateSetting};
use crate::encoder::TextEncoder;
use crate::json::{to_json_text, JsonStyle};
use crate::prompt;
use crate::schema::AnswerSchema;

/// The default prompt: a plain instruction, then the input, then a cue that the answer is JSON.
pub const DEFAULT_TEMPLATE: &str =
    "Extract the information from the text below as JSON.\n\n{input}\n\nJSON:";

/// The file a training run directory keeps its task (and training settings) in, so that
/// evaluation and generation with the run's adapter render prompts as training did.
pub const RUN_TASK_FILE: &str = "config.toml";

/// What to do with an example whose prompt + answer + EOS exceeds `max_len` tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlong {
    /// Cut tokens out of the middle of the prompt: the start (BOS, instruction) and the end
    /// (the text right before the answer, and the template's cue) matter most. Examples whose
    /// answer alone does not fit are skipped.
    #[default]
    TruncatePrompt,
    /// Drop the example.
    Skip,
}

/// One job: the model it is for, its data, the answer schema, and how records become text.
/// Every field has a default, so an empty file is a valid task (receipts-style extraction
/// with the default model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    // ---- inputs ----
    /// Base model (GGUF path or hub name); recorded as `base_model_name_or_path` in adapters.
    pub model: String,
    /// Training data, JSONL.
    pub data: PathBuf,
    /// Optional validation data, JSONL, same formats as `data`.
    pub valid: Option<PathBuf>,
    /// Optional JSON Schema that every answer must satisfy (and constrained decoding follows).
    pub schema: Option<PathBuf>,

    // ---- prompt ----
    /// Prompt template for `input`/`output` data; `{input}` is replaced by the input text.
    /// The answer follows the template's last character directly.
    pub template: String,
    /// How `messages` (chat) data is rendered: the model's chat template or the built-in
    /// Gemma 3 format (see [`ChatTemplateSetting`]).
    pub chat_template: ChatTemplateSetting,
    /// How JSON `output` values are serialised into answer text.
    pub json_style: JsonStyle,
    /// Longest example in tokens (prompt + answer + EOS).
    pub max_len: usize,
    /// What to do with examples longer than `max_len`.
    pub overlong: Overlong,
    /// Function calling: whether an answer may hold several calls, for records that do not
    /// say (`parallel_tool_calls` in a record). OpenAI's default, true, as the server's: in
    /// the bare JSON call syntax the calls are then always a JSON array. Not written when
    /// true (the default), so the training hash of runs from before it existed still matches
    /// and they resume.
    #[serde(skip_serializing_if = "is_true")]
    pub parallel_tool_calls: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Task {
    fn default() -> Self {
        Task {
            model: String::new(),
            data: PathBuf::new(),
            valid: None,
            schema: None,
            template: DEFAULT_TEMPLATE.to_string(),
            chat_template: ChatTemplateSetting::Auto,
            json_style: JsonStyle::Compact,
            max_len: 512,
            overlong: Overlong::TruncatePrompt,
            parallel_tool_calls: true,
        }
    }
}

impl Task {
    /// The task's keys in a task file, in the order they are written.
    pub const KEYS: &'static [&'static str] = &[
        "model",
        "data",
        "valid",
        "schema",
        "template",
        "chat_template",
        "json_style",
        "max_len",
        "overlong",
        "parallel_tool_calls",
    ];

    /// The task's keys of a parsed task file, the others left out; each key read as
    /// [`Task`] reads it, so that a bad value names its key.
    pub fn from_table(table: &toml::Table) -> Result<Task> {
        let own: toml::Table = table
            .iter()
            .filter(|(k, _)| Self::KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(toml::Value::Table(own).try_into()?)
    }

    /// Reads the task from a task file, with its paths taken relative to the file (a task
    /// folder works from any working directory) and made absolute. Keys of other stages are
    /// left to them. The task is validated.
    pub fn load(path: &Path) -> Result<Task> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("in task file {}", path.display()))?;
        let mut task =
            Self::from_table(&table).with_context(|| format!("in task file {}", path.display()))?;
        task.resolve_paths(path.parent().unwrap_or(Path::new("")));
        let mut problems = Vec::new();
        task.check(&mut problems);
        if !problems.is_empty() {
            anyhow::bail!(
                "invalid task file {}:\n  - {}",
                path.display(),
                problems.join("\n  - ")
            );
        }
        Ok(task)
    }

    /// The task a training run was made with (its [`RUN_TASK_FILE`]), if `dir` is a run
    /// directory; `None` for a plain adapter folder.
    pub fn of_run(dir: &Path) -> Result<Option<Task>> {
        let file = dir.join(RUN_TASK_FILE);
        if !file.is_file() {
            return Ok(None);
        }
        Task::load(&file).map(Some)
    }

    /// Makes the relative file paths (data, valid, schema, and a model given as a .gguf path)
    /// absolute, taking them relative to `base` (itself relative to the working directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &Path| -> PathBuf {
            if p.as_os_str().is_empty() || p.is_absolute() {
                return p.to_path_buf();
            }
            let joined = base.join(p);
            std::path::absolute(&joined).unwrap_or(joined)
        };
        self.data = fix(&self.data);
        self.valid = self.valid.as_deref().map(fix);
        self.schema = self.schema.as_deref().map(fix);
        if self.model.ends_with(".gguf") {
            self.model = fix(Path::new(&self.model)).display().to_string();
        }
    }

    /// Adds every problem with the task's values to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        if !self.template.contains("{input}") {
            problems.push("template must contain the placeholder {input}".to_string());
        }
        if self.max_len < 8 {
            problems.push(format!(
                "max_len = {} is too small (minimum 8)",
                self.max_len
            ));
        }
    }

    /// The prompt for one input: the template with `{input}` filled in. The answer follows
    /// its last character directly.
    pub fn prompt(&self, input: &str) -> String {
        prompt::render(&self.template, input)
    }

    /// A few-shot prompt: each solved example `(input, answer text)` in the task's template
    /// with its answer, then the query.
    pub fn few_shot_prompt(&self, shots: &[(&str, &str)], input: &str) -> String {
        prompt::render_few_shot(&self.template, shots, input)
    }

    /// The answer text of an `output` value: a string as it is, anything else as JSON in the
    /// task's style (exactly what training teaches).
    pub fn answer_text(&self, output: &Value) -> String {
        match output {
            Value::String(s) => s.clone(),
            v => to_json_text(v, self.json_style),
        }
    }

    /// The JSON layout constrained decoding must produce for this task's answers.
    pub fn json_layout(&self) -> smolt_constrain::JsonLayout {
        self.json_style.layout()
    }

    /// How this task renders conversations for the model behind `enc`.
    pub fn chat_format(&self, enc: &dyn TextEncoder) -> Result<ChatFormat, ChatError> {
        ChatFormat::resolve(self.chat_template, enc.model_chat_template().as_ref())
    }

    /// The answer schema, compiled, if the task names one.
    pub fn answer_schema(&self) -> Result<Option<AnswerSchema>> {
        self.schema.as_deref().map(AnswerSchema::load).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_the_fields_in_order() {
        // parallel_tool_calls is written only when false (see its doc).
        let every_key = Task {
            valid: Some("v".into()),
            schema: Some("s".into()),
            parallel_tool_calls: false,
            ..Task::default()
        };
        let table = toml::Table::try_from(every_key.clone()).unwrap();
        let keys: Vec<&str> = table.keys().map(|k| k.as_str()).collect();
        let mut sorted = Task::KEYS.to_vec();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        let text = toml::to_string(&Task {
            parallel_tool_calls: false,
            ..Task::default()
        })
        .unwrap();
        let order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        let expected: Vec<&str> = Task::KEYS
            .iter()
            .copied()
            .filter(|k| !matches!(*k, "valid" | "schema"))
            .collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn a_task_file_keeps_other_stages_keys_for_them_and_names_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("task.toml");
        std::fs::write(
            &p,
            "template = \"Q: {input}\\nA:\"\nlr = 1e-3\ndata = \"d/train.jsonl\"\nmax_len = 64\n",
        )
        .unwrap();
        let t = Task::load(&p).unwrap();
        assert_eq!(t.template, "Q: {input}\nA:");
        assert_eq!(t.max_len, 64);
        assert_eq!(t.data, dir.path().join("d/train.jsonl"));
        std::fs::write(&p, "max_len = \"long\"\n").unwrap();
        let e = format!("{:#}", Task::load(&p).unwrap_err());
        assert!(e.contains("max_len") && e.contains("task.toml"), "{e}");
        std::fs::write(&p, "template = \"no placeholder\"\nmax_len = 2\n").unwrap();
        let e = format!("{:#}", Task::load(&p).unwrap_err());
        assert!(e.contains("{input}") && e.contains("max_len = 2"), "{e}");
        let e = format!(
            "{:#}",
            Task::load(&dir.path().join("none.toml")).unwrap_err()
        );
        assert!(e.contains("none.toml"), "{e}");
    }

    #[test]
    fn answers_are_strings_verbatim_or_json_in_the_tasks_style() {
        let t = Task {
            json_style: JsonStyle::Python,
            ..Task::default()
        };
        assert_eq!(t.answer_text(&json!("as is")), "as is");
        assert_eq!(t.answer_text(&json!({"a": [1, 2]})), "{\"a\": [1, 2]}");
        assert_eq!(t.json_layout().item_separator, ", ");
        assert_eq!(
            Task::default().answer_text(&json!({"a": [1, 2]})),
            "{\"a\":[1,2]}"
        );
        assert_eq!(
            Task::default().prompt("x"),
            DEFAULT_TEMPLATE.replace("{input}", "x")
        );
    }
}
