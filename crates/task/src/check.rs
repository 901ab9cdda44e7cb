//! `smolt data check`: everything worth knowing about a data file before training on it, with
//! the file and line of every problem.
//!
//! Training refuses a file with parse errors or schema violations; this check reports those
//! and also what training accepts but a user should look at: duplicated examples (they weigh
//! double and leak between splits), one prompt with two different answers (the model cannot
//! learn both), empty answers, and how the token lengths sit against `max_len`.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::encoder::TextEncoder;
use crate::record::{read_jsonl, DataError, Format, Location};
use crate::schema::AnswerSchema;
use crate::task::Task;

/// Percentiles of a length distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lengths {
    pub min: usize,
    pub p50: usize,
    pub p90: usize,
    pub p99: usize,
    pub max: usize,
}

impl Lengths {
    /// Nearest-rank percentiles of `v` (all zero when empty).
    pub fn of(mut v: Vec<usize>) -> Lengths {
        if v.is_empty() {
            return Lengths::default();
        }
        v.sort_unstable();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Lengths {
            min: v[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// What [`check_file`] found.
#[derive(Debug, Default)]
pub struct DataReport {
    pub path: PathBuf,
    pub format: Option<Format>,
    /// For chat data: which chat format rendered it (the model's template or the built-in).
    pub chat: Option<&'static str>,
    pub records: usize,
    /// Lines that cannot be used at all (not JSON, wrong fields, schema violations).
    pub errors: Vec<DataError>,
    /// Usable but suspicious: duplicates, conflicting answers, empty answers.
    pub warnings: Vec<DataError>,
    /// Tokens per example: prompt, answer (with its end token) and both together (with BOS).
    pub prompt_tokens: Lengths,
    pub answer_tokens: Lengths,
    pub total_tokens: Lengths,
    /// Examples longer than `max_len` (training truncates or skips them, per `overlong`).
    pub over_max_len: usize,
    pub max_len: usize,
}

impl DataReport {
    /// Whether training would accept the file.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// How many problems of each kind are listed before "... and N more".
const SHOWN: usize = 30;

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fmt_name = match self.format {
            Some(Format::InputOutput) => "input/output",
            Some(Format::PromptCompletion) => "prompt/completion",
            Some(Format::Messages) => "messages (chat)",
            Some(Format::Tools) => "tools + messages (function calling)",
            None => "unknown",
        };
        writeln!(f, "{}", self.path.display())?;
        writeln!(f, "  records   {} ({} format)", self.records, fmt_name)?;
        if let Some(chat) = self.chat {
            writeln!(f, "  chat      rendered with {chat}")?;
        }
        if self.records > 0 && self.format.is_some() {
            let row = |name: &str, l: &Lengths| {
                format!(
                    "  {name:<9} min {}  p50 {}  p90 {}  p99 {}  max {}",
                    l.min, l.p50, l.p90, l.p99, l.max
                )
            };
            writeln!(f, "tokens per example:")?;
            writeln!(f, "{}", row("prompt", &self.prompt_tokens))?;
            writeln!(f, "{}", row("answer", &self.answer_tokens))?;
            writeln!(f, "{}", row("total", &self.total_tokens))?;
            writeln!(
                f,
                "  {} of {} longer than max_len = {}",
                self.over_max_len, self.records, self.max_len
            )?;
        }
        let list = |f: &mut fmt::Formatter<'_>, title: &str, v: &[DataError]| -> fmt::Result {
            if v.is_empty() {
                return Ok(());
            }
            writeln!(f, "{title} ({}):", v.len())?;
            for e in v.iter().take(SHOWN) {
                writeln!(f, "  {e}")?;
            }
            if v.len() > SHOWN {
                writeln!(f, "  ... and {} more", v.len() - SHOWN)?;
            }
            Ok(())
        };
        list(f, "errors", &self.errors)?;
        list(f, "warnings", &self.warnings)?;
        if self.is_ok() {
            writeln!(f, "ok: training can use this file")
        } else {
            writeln!(f, "training would refuse this file: fix the errors above")
        }
    }
}

/// Checks one JSONL data file: format, fields, the schema (if any), duplicates and token
/// lengths under the task's template and `max_len`.
pub fn check_file(
    path: &Path,
    task: &Task,
    enc: &dyn TextEncoder,
    schema: Option<&AnswerSchema>,
) -> DataReport {
    let mut report = DataReport {
        path: path.to_path_buf(),
        max_len: task.max_len,
        ..Default::default()
    };
    let (format, texts) = match read_jsonl(path, task, enc) {
        Ok(x) => x,
        Err(e) => {
            report.records = count_records(path);
            report.errors = e.errors;
            return report;
        }
    };
    report.format = Some(format);
    if matches!(format, Format::Messages | Format::Tools) {
        // It compiled for read_jsonl just now.
        report.chat = task.chat_format(enc).ok().map(|c| c.describe());
    }
    report.records = texts.len();
    let (mut p, mut a, mut t) = (Vec::new(), Vec::new(), Vec::new());
    let mut by_pair: HashMap<(&str, &str), &Location> = HashMap::new();
    let mut by_prompt: HashMap<&str, (&str, &Location)> = HashMap::new();
    for ex in &texts {
        if let Some(s) = schema {
            for message in s.check(ex.answer_json.as_ref()) {
                report.errors.push(DataError {
                    at: ex.source.clone(),
                    message,
                });
            }
        }
        let warn = |message: String| DataError {
            at: ex.source.clone(),
            message,
        };
        if ex.answer.trim().is_empty() {
            report
                .warnings
                .push(warn("empty answer: the model learns to say nothing".into()));
        }
        if let Some(first) = by_pair.get(&(ex.prompt.as_str(), ex.answer.as_str())) {
            report
                .warnings
                .push(warn(format!("duplicate of line {}", first.line)));
        } else {
            by_pair.insert((&ex.prompt, &ex.answer), &ex.source);
            match by_prompt.get(ex.prompt.as_str()) {
                Some((other, at)) if *other != ex.answer => {
                    report.warnings.push(warn(format!(
                        "same prompt as line {} with a different answer",
                        at.line
                    )));
                }
                Some(_) => {}
                None => {
                    by_prompt.insert(&ex.prompt, (&ex.answer, &ex.source));
                }
            }
        }
        let np = enc.encode(&ex.prompt, true).len();
        let na = enc.encode(&ex.answer, false).len() + 1;
        p.push(np);
        a.push(na);
        t.push(np + na);
        report.over_max_len += (np + na > task.max_len) as usize;
    }
    report.prompt_tokens = Lengths::of(p);
    report.answer_tokens = Lengths::of(a);
    report.total_tokens = Lengths::of(t);
    report
}

/// The tool examples whose answer the decoding constraint could not produce, each as an error
/// at its line: the answer text (calls as the model writes them) is run through the constraint
/// compiled from the record's tools, as decoding would compile it. JSON Schema validators
/// treat `format` as a note while the constraint enforces it (`"format": "time"` is RFC 3339's
/// `14:00:00Z`, not `14:00`), and training on an answer the constraint refuses teaches the
/// model text it will never be allowed to write.
pub fn unreachable_tool_answers(
    examples: &[crate::TextExample],
    engine: &std::sync::Arc<smolt_constrain::ConstraintEngine>,
    chat: &crate::ChatFormat,
) -> Vec<DataError> {
    let layout = engine.json_layout().clone();
    let mut errors = Vec::new();
    for ex in examples {
        let Some(record) = &ex.tools else { continue };
        let Some(answer) = &record.answer else {
            continue;
        };
        let spec = chat.tool_spec(&record.spec);
        if !spec.allows_calls() {
            continue;
        }
        let err = |message: String| DataError {
            at: ex.source.clone(),
            message,
        };
        let constraint =
            match engine.compile(&smolt_constrain::ConstraintSpec::ToolCalls(spec.clone())) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(err(format!(
                        "the tools do not compile into a constraint: {e}"
                    )));
                    continue;
                }
            };
        let text = answer.text(&spec, &layout);
        let ids = engine.tokenizer().encode(&text, false, false);
        let mut state = constraint.start();
        let ok = state.valid_prefix(&ids);
        let accepted = ok == ids.len() && state.commit_forced(&ids).is_ok() && state.is_accepting();
        if !accepted {
            let done = engine.tokenizer().decode(&ids[..ok], false);
            errors.push(err(format!(
                "decoding could not write this answer: its tools' constraint stops it after {:?} \
                 (a value the schema's format, pattern or bounds refuse?)",
                done.chars()
                    .rev()
                    .take(40)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            )));
        }
    }
    errors
}

/// Non-empty lines, for the record count of a file that failed to parse.
fn count_records(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
        .unwrap_or(0)
}

/// A one-line summary, for callers that print many files.
pub fn one_line(r: &DataReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{}: {} records, {} errors, {} warnings",
        r.path.display(),
        r.records,
        r.errors.len(),
        r.warnings.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::ByteEncoder;
    use serde_json::json;

    fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Lengths::of((1..=100).collect());
        assert_eq!((l.min, l.p50, l.p90, l.p99, l.max), (1, 50, 90, 99, 100));
        assert_eq!(Lengths::of(vec![]), Lengths::default());
        let one = Lengths::of(vec![7]);
        assert_eq!((one.min, one.p50, one.max), (7, 7, 7));
    }

    #[test]
    fn duplicates_conflicts_and_empty_answers_are_warnings_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.jsonl",
            &[
                r#"{"input": "a", "output": {"x": 1}}"#,
                r#"{"input": "b", "output": {"x": 2}}"#,
                r#"{"input": "a", "output": {"x": 1}}"#,
                r#"{"input": "b", "output": {"x": 3}}"#,
                r#"{"input": "c", "output": ""}"#,
            ],
        );
        let r = check_file(&p, &Task::default(), &ByteEncoder, None);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.records, 5);
        let w: Vec<String> = r.warnings.iter().map(|e| e.to_string()).collect();
        assert!(w[0].ends_with("d.jsonl:3: duplicate of line 1"), "{w:?}");
        assert!(w[1].contains(":4: same prompt as line 2"), "{w:?}");
        assert!(w[2].contains(":5: empty answer"), "{w:?}");
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn schema_violations_and_bad_lines_are_errors_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let schema = AnswerSchema::from_value(
            Path::new("s.json"),
            &json!({"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}),
        )
        .unwrap();
        let p = write(
            dir.path(),
            "d.jsonl",
            &[
                r#"{"input": "a", "output": {"x": 1}}"#,
                r#"{"input": "b", "output": {"x": "two"}}"#,
                r#"{"input": "c", "output": {"y": 1}}"#,
            ],
        );
        let r = check_file(&p, &Task::default(), &ByteEncoder, Some(&schema));
        assert!(!r.is_ok());
        let e: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("d.jsonl:2: answer violates the schema at /x"),
            "{e:?}"
        );
        assert!(e[1].contains("d.jsonl:3:"), "{e:?}");
        assert!(r.to_string().contains("training would refuse"));

        let bad = write(dir.path(), "bad.jsonl", &["{not json", r#"{"input": "a"}"#]);
        let r = check_file(&bad, &Task::default(), &ByteEncoder, None);
        assert_eq!(r.records, 2);
        assert!(r.errors[0]
            .to_string()
            .contains("bad.jsonl:1: not valid JSON"));
        assert!(r.errors[1]
            .to_string()
            .contains("bad.jsonl:2: missing field \"output\""));
    }

    #[test]
    fn token_lengths_follow_the_template_and_count_over_long_examples() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.jsonl",
            &[
                r#"{"input": "aaaa", "output": "xy"}"#,
                r#"{"input": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "output": "xy"}"#,
            ],
        );
        let cfg = Task {
            template: "Q:{input}\nA:".into(),
            max_len: 20,
            ..Task::default()
        };
        let r = check_file(&p, &cfg, &ByteEncoder, None);
        // BOS + "Q:" + input + "\nA:" ; answer "xy" + EOS.
        assert_eq!(r.prompt_tokens.min, 1 + 2 + 4 + 3);
        assert_eq!(r.prompt_tokens.max, 1 + 2 + 40 + 3);
        assert_eq!(r.answer_tokens.max, 3);
        assert_eq!(r.total_tokens.max, 49);
        assert_eq!(r.over_max_len, 1);
        assert_eq!(r.chat, None);
    }

    #[test]
    fn chat_data_says_how_it_was_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.jsonl",
            &[
                r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
            ],
        );
        let r = check_file(&p, &Task::default(), &ByteEncoder, None);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.chat, Some("the built-in Gemma 3 chat format"));
        assert!(
            r.to_string()
                .contains("chat      rendered with the built-in Gemma 3 chat format"),
            "{r}"
        );
    }
}
