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

/// A parsed `--model` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// The default model, fetched into the cache on first use.
    Default,
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
                "it is empty; pass a .gguf path, `gemma-3-270m`, or `hf:owner/repo/file.gguf`",
            ));
        }
        if DEFAULT_ALIASES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(trimmed))
        {
            return Ok(ModelSpec::Default);
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
            assert_eq!(ModelSpec::parse(s).unwrap(), ModelSpec::Default, "{s}");
        }
    }

    #[test]
    fn paths_stay_paths() {
        for s in ["model.gguf", "./default", "/tmp/x.gguf", "dir/gemma-3-270m"] {
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
