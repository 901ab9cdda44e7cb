//! The answer schema: a JSON Schema every answer of a task must satisfy, checked when data is
//! read (the same schema constrains decoding, through smolt-constrain).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// A schema file's JSON (not yet compiled: constrained decoding compiles it its own way).
pub fn read_schema(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading schema {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// A compiled JSON Schema for answers.
pub struct AnswerSchema {
    path: PathBuf,
    validator: jsonschema::Validator,
}

impl AnswerSchema {
    /// Loads and compiles a schema file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_value(path, &read_schema(path)?)
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

    /// Every violation of the schema by an answer (`None`: the answer is not JSON), as
    /// messages.
    pub fn check(&self, answer: Option<&Value>) -> Vec<String> {
        let Some(v) = answer else {
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
