//! `hf:owner/repo/file.gguf`: a plain HTTPS download from the Hugging Face hub.
//!
//! Redirects are followed by hand: the hub answers with a redirect to its CDN, and that
//! first answer is the only place the file's sha256 (`X-Linked-Etag`) appears, and the only
//! host that should ever see the user's `HF_TOKEN`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::HubError;
use crate::source::{hex, megabytes};

pub(crate) const ENDPOINT: &str = "https://huggingface.co";

/// Connection and idle-read limits: a dead network must fail in seconds, not hang a
/// training run's startup.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            read: Duration::from_secs(60),
        }
    }
}

/// Where an `hf:` file is cached: mirroring the repository path keeps two repositories'
/// `model.gguf` apart.
pub(crate) fn cache_path(dir: &Path, owner: &str, repo: &str, file: &str) -> PathBuf {
    let mut p = dir.join("hf").join(owner).join(repo);
    for seg in file.split('/') {
        p.push(seg);
    }
    p
}

fn manual(url: &str, owner: &str, repo: &str, file: &str) -> String {
    format!(
        "Download it yourself (in a browser from {url}, or with \
         `huggingface-cli download {owner}/{repo} {file}`), then pass --model PATH/TO/FILE.gguf."
    )
}

/// The cached copy if there is one, else a download into the cache.
pub(crate) fn ensure(
    endpoint: &str,
    owner: &str,
    repo: &str,
    file: &str,
    dir: &Path,
    timeouts: Timeouts,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, HubError> {
    let dest = cache_path(dir, owner, repo, file);
    // Downloads land under this name only by an atomic rename after the size (and hash,
    // when the hub gives one) checked out, so an existing file is complete.
    if dest.is_file() {
        return Ok(dest);
    }
    let url = format!("{endpoint}/{owner}/{repo}/resolve/main/{file}");
    let fail = |reason: String| HubError::Download {
        url: url.clone(),
        reason,
        manual: manual(&url, owner, repo, file),
    };
    let agent = |redirects: u32| {
        ureq::AgentBuilder::new()
            .timeout_connect(timeouts.connect)
            .timeout_read(timeouts.read)
            .redirects(redirects)
            .user_agent(concat!("smolt/", env!("CARGO_PKG_VERSION")))
            .build()
    };

    progress(&format!("downloading {url}…"));
    let mut req = agent(0).get(&url);
    let token = std::env::var("HF_TOKEN")
        .or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN"))
        .ok()
        .filter(|t| !t.trim().is_empty());
    if let Some(t) = &token {
        req = req.set("Authorization", &format!("Bearer {}", t.trim()));
    }
    let first = req.call().map_err(|e| fail(describe(e, token.is_some())))?;

    let mut expected_sha = None;
    let mut expected_len = None;
    let resp = if (300..400).contains(&first.status()) {
        expected_sha = first
            .header("x-linked-etag")
            .map(|s| s.trim_matches('"').to_ascii_lowercase())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        expected_len = first
            .header("x-linked-size")
            .and_then(|s| s.parse::<u64>().ok());
        let location = first
            .header("location")
            .ok_or_else(|| fail(format!("HTTP {} without a Location header", first.status())))?;
        let next = if location.starts_with('/') {
            format!("{endpoint}{location}")
        } else {
            location.to_string()
        };
        agent(5)
            .get(&next)
            .call()
            .map_err(|e| fail(describe(e, false)))?
    } else {
        first
    };
    let expected_len = expected_len.or_else(|| {
        resp.header("content-length")
            .and_then(|s| s.parse::<u64>().ok())
    });

    let parent = dest.parent().expect("cache path has a parent");
    fs::create_dir_all(parent)
        .map_err(HubError::io(format!("cannot create {}", parent.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(parent)
        .map_err(HubError::io(format!(
            "cannot create a temporary file in {}",
            parent.display()
        )))?;
    let mut reader = resp.into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut next_report = 32 << 20;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("connection failed after {total} bytes: {e}"))),
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(HubError::io(format!(
            "cannot write in {}",
            parent.display()
        )))?;
        total += n as u64;
        if total >= next_report {
            next_report += 32 << 20;
            match expected_len {
                Some(len) => progress(&format!("{} of {}", megabytes(total), megabytes(len))),
                None => progress(&megabytes(total)),
            }
        }
    }
    if let Some(len) = expected_len {
        if len != total {
            return Err(fail(format!(
                "the download stopped at {total} of {len} bytes"
            )));
        }
    }
    if let Some(sha) = expected_sha {
        progress("verifying sha256…");
        let got = hex(&hasher.finalize());
        if got != sha {
            return Err(fail(format!(
                "the file has sha256 {got}, the hub says {sha}; it was discarded"
            )));
        }
    }
    tmp.as_file().sync_all().map_err(HubError::io(format!(
        "cannot write in {}",
        parent.display()
    )))?;
    tmp.persist(&dest).map_err(|e| {
        HubError::io(format!("cannot move the download to {}", dest.display()))(e.error)
    })?;
    progress(&format!("cached at {}", dest.display()));
    Ok(dest)
}

fn describe(e: ureq::Error, had_token: bool) -> String {
    match e {
        ureq::Error::Status(code @ (401 | 403), _) => {
            if had_token {
                format!("HTTP {code}: HF_TOKEN was refused; check that it is valid and that you accepted the model's license on its page")
            } else {
                format!("HTTP {code}: the repository is gated or private; accept its license on the model page and set HF_TOKEN to an access token")
            }
        }
        ureq::Error::Status(404, _) => {
            "HTTP 404: no such repository or file (names are case-sensitive)".to_string()
        }
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => format!("network error: {t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn unreachable_host_fails_fast_with_instructions() {
        let dir = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
        let started = Instant::now();
        let mut log = Vec::new();
        let e = ensure(
            "http://127.0.0.1:9",
            "owner",
            "repo",
            "sub/m.gguf",
            dir.path(),
            Timeouts {
                connect: Duration::from_secs(2),
                read: Duration::from_secs(2),
            },
            &mut |m| log.push(m.to_string()),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(e, HubError::Download { .. }), "{e:?}");
        let msg = e.to_string();
        for needle in [
            "http://127.0.0.1:9/owner/repo/resolve/main/sub/m.gguf",
            "network error",
            "--model",
            "huggingface-cli download owner/repo sub/m.gguf",
        ] {
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        }
        assert!(!cache_path(dir.path(), "owner", "repo", "sub/m.gguf").exists());
        assert!(log[0].starts_with("downloading"), "{log:?}");
    }

    #[test]
    fn cached_download_is_reused_without_network() {
        let dir = tempfile::tempdir().unwrap();
        let p = cache_path(dir.path(), "o", "r", "a/m.gguf");
        assert!(p.ends_with("hf/o/r/a/m.gguf"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"GGUF").unwrap();
        let got = ensure(
            "http://127.0.0.1:9",
            "o",
            "r",
            "a/m.gguf",
            dir.path(),
            Timeouts::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(got, p);
    }
}
