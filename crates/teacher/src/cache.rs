//! The response cache: an append-only JSONL file, one `{"key", "response"}` line per answer
//! received, keyed by a hash of the request body.
//!
//! Each line is written whole with one write as soon as its answer arrives, so a run killed at
//! any point keeps every answer it received (at worst the last line is cut short: it is
//! skipped on reading and the request asked again). A rerun with the same settings finds every
//! answer here and sends nothing. Only answers are kept — failures are not, so a rerun retries
//! them. The file is locked while a run uses it, so two runs cannot interleave lines.
//!
//! The key is the request body alone (model, messages, schema, sampling settings, seed): the
//! same model behind another URL answers from the same cache. The API key is never part of a
//! request body, so it is never here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The cache key of a request body: the SHA-256 of its JSON text, in hex.
pub fn key_of(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Cache {
    path: PathBuf,
    file: Mutex<File>,
    entries: Mutex<HashMap<String, Value>>,
    /// Lines that could not be read (a line cut short by a kill).
    skipped: usize,
}

impl Cache {
    /// Opens (or creates) a cache file and reads what it holds.
    pub fn open(path: &Path) -> anyhow::Result<Cache> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the cache {}", path.display()))?;
        file.try_lock().map_err(|e| {
            anyhow::anyhow!(
                "the cache {} is in use by another run ({e}): wait for it, or give --cache another file",
                path.display()
            )
        })?;
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text)
            .with_context(|| format!("cannot read the cache {}", path.display()))?;
        let mut entries = HashMap::new();
        let mut skipped = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let parsed = serde_json::from_str::<Value>(line).ok().and_then(|v| {
                let key = v.get("key")?.as_str()?.to_string();
                Some((key, v.get("response")?.clone()))
            });
            match parsed {
                Some((k, v)) => {
                    entries.insert(k, v);
                }
                None => skipped += 1,
            }
        }
        // A line cut short by a kill must not swallow the next one.
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        Ok(Cache {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            entries: Mutex::new(entries),
            skipped,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines of the file that could not be read.
    pub fn skipped_lines(&self) -> usize {
        self.skipped
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Keeps an answer: on disk first (one write of the whole line), then in memory.
    pub fn put(&self, key: &str, response: &Value) -> anyhow::Result<()> {
        let mut line = json!({"key": key, "response": response}).to_string();
        line.push('\n');
        {
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(line.as_bytes())
                .and_then(|_| f.flush())
                .with_context(|| format!("cannot write to the cache {}", self.path.display()))?;
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), response.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_a_reopen_and_a_cut_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        {
            let c = Cache::open(&p).unwrap();
            assert!(c.is_empty());
            c.put("a", &json!({"x": 1})).unwrap();
            c.put("b", &json!({"x": 2})).unwrap();
        }
        // A kill in the middle of a write.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"key\": \"c\", \"resp").unwrap();
        drop(f);
        {
            let c = Cache::open(&p).unwrap();
            assert_eq!(c.len(), 2);
            assert_eq!(c.skipped_lines(), 1);
            assert_eq!(c.get("b"), Some(json!({"x": 2})));
            assert_eq!(c.get("c"), None);
            c.put("c", &json!({"x": 3})).unwrap();
        }
        let c = Cache::open(&p).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("c"), Some(json!({"x": 3})));
    }

    #[test]
    fn a_second_run_on_the_same_cache_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        let _held = Cache::open(&p).unwrap();
        let e = Cache::open(&p).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
    }

    #[test]
    fn the_key_is_the_body() {
        let a = key_of(&json!({"model": "m", "seed": 1}));
        assert_eq!(a.len(), 64);
        assert_eq!(a, key_of(&json!({"model": "m", "seed": 1})));
        assert_ne!(a, key_of(&json!({"model": "m", "seed": 2})));
    }
}
