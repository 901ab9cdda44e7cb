//! `smolt init`: a task folder to start from — a commented config, a schema, scoring rules and
//! a few example records in every supported place, so a user edits instead of guessing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The scoring rules' file in a task folder, beside `task.toml`: `smolt eval --config` finds
/// it there.
pub const SCORING_FILE: &str = "eval.toml";

/// The files of a new task, relative to its folder. `{name}` in the config is replaced by the
/// task's name.
const FILES: &[(&str, &str)] = &[
    ("task.toml", include_str!("skeleton/task.toml")),
    ("schema.json", include_str!("skeleton/schema.json")),
    (SCORING_FILE, include_str!("skeleton/eval.toml")),
    ("data/train.jsonl", include_str!("skeleton/train.jsonl")),
    ("data/valid.jsonl", include_str!("skeleton/valid.jsonl")),
    ("data/test.jsonl", include_str!("skeleton/test.jsonl")),
];

/// Writes a task skeleton into `dir` (created; refused when it exists and is not empty, so
/// nothing a user wrote is overwritten). Returns the files written.
pub fn write_skeleton(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} already exists and is not empty; pick a new name or delete it first",
            dir.display()
        );
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "task".into());
    let shown = dir.display().to_string();
    let mut written = Vec::new();
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text.replace("{name}", &shown).replace("{task}", &name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_file;
    use crate::encoder::ByteEncoder;
    use crate::task::Task;

    #[test]
    fn the_skeleton_is_a_valid_task_with_every_key_and_checked_data() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("receipts");
        let files = write_skeleton(&dir).unwrap();
        assert_eq!(files.len(), FILES.len());
        let text = std::fs::read_to_string(dir.join("task.toml")).unwrap();
        for key in Task::KEYS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "task.toml does not show `{key}`"
            );
        }
        assert!(!text.contains("{name}"));
        let task = Task::load(&dir.join("task.toml")).unwrap();
        // The shown values are the defaults, apart from the paths the skeleton fills in.
        let defaults = Task {
            model: task.model.clone(),
            data: task.data.clone(),
            valid: task.valid.clone(),
            schema: task.schema.clone(),
            ..Task::default()
        };
        assert_eq!(task, defaults);
        assert_eq!(task.data, dir.join("data/train.jsonl"));
        let schema = task
            .answer_schema()
            .unwrap()
            .expect("the skeleton has a schema");
        for f in ["train", "valid", "test"] {
            let r = check_file(
                &dir.join(format!("data/{f}.jsonl")),
                &task,
                &ByteEncoder,
                Some(&schema),
            );
            assert!(r.is_ok() && r.warnings.is_empty(), "{r}");
        }
        // Never over a user's files.
        let e = write_skeleton(&dir).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
    }
}
