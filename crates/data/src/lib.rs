//! smolt-data: dataset utilities — the synthetic receipts generator and train/valid/test splits.
//!
//! Every dataset in smolt is JSONL of [`Record`]s, `{"input": "...", "output": {...}}`: the input
//! is the text the model reads, the output the truth it must produce. The trainer
//! (`smolt-train`) and the evaluator (`smolt-eval`) both read this shape, so the generator and the
//! splitter only ever move whole records around and never need to know the task.

pub mod drift;
pub mod fields;
pub mod split;
pub mod synth;
pub mod tool_import;
pub mod tool_synth;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use fields::{select_eval_config, select_schema, select_value};
pub use split::{split, SplitError, SplitSpec, Splits};
pub use synth::{
    arithmetic_errors, receipts, receipts_eval_config, receipts_schema, Country, SynthConfig,
};
pub use tool_import::{import_tool_records, Imported, ToolFormat};
pub use tool_synth::{builtin_tools, synth_tool_records, ToolSynthConfig};

/// One example: what the model reads and what it must answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The text given to the model (for receipts: OCR-like text, noise included).
    pub input: String,
    /// The truth, kept clean of any noise applied to `input`.
    pub output: serde_json::Value,
}

/// Errors of reading and writing JSONL files, with the line that failed so a user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a {{\"input\", \"output\"}} record: {source}")]
    Parse {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `records` as JSONL (one compact object per line), creating parent directories.
///
/// Compact lines keep files diff- and `grep`-friendly and match what `smolt-train` reads.
pub fn write_jsonl(path: &Path, records: &[Record]) -> Result<(), JsonlError> {
    let io = |source| JsonlError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for r in records {
        serde_json::to_writer(&mut w, r).map_err(|e| io(e.into()))?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Reads a JSONL file of records; blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, JsonlError> {
    let p = || path.display().to_string();
    let f = File::open(path).map_err(|source| JsonlError::Io { path: p(), source })?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| JsonlError::Io { path: p(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let r = serde_json::from_str(&line).map_err(|source| JsonlError::Parse {
            path: p(),
            line: i + 1,
            source,
        })?;
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/receipts.jsonl");
        let recs = vec![
            Record {
                input: "A\nB".into(),
                output: serde_json::json!({"total": 1.5}),
            },
            Record {
                input: "C".into(),
                output: serde_json::json!({"total": 2}),
            },
        ];
        write_jsonl(&path, &recs).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"input\":\"A\\nB\",\"output\":{\"total\":1.5}}"));
        assert_eq!(read_jsonl(&path).unwrap(), recs);
    }

    #[test]
    fn jsonl_parse_error_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"input\":\"a\",\"output\":1}\n\n{oops}\n").unwrap();
        let e = read_jsonl(&path).unwrap_err().to_string();
        assert!(e.contains(":3:"), "{e}");
    }
}
