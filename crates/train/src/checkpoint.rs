//! Checkpoints: everything needed to continue a run bit-identically, in one file.
//!
//! One safetensors file per checkpoint (`checkpoints/step-000050.safetensors`) holding the
//! parameters (`param/NAME`), the AdamW moments (`adam_m/NAME`, `adam_v/NAME`) and, in the
//! header metadata, a JSON [`CheckpointMeta`]. A single file written with
//! [`smolt_lora::io::write_atomic`] is complete or absent, so there is no
//! "half a checkpoint" state to recover from; leftover `*.tmp` files from a crash are deleted.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::batch::DataPosition;
use crate::optim::{AdamW, AdamWConfig, Moments};
use smolt_lora::io::{parse_safetensors, safetensors_bytes, write_atomic, TMP_SUFFIX};
use smolt_lora::Param;

/// Bumped when the layout changes, so an old checkpoint is refused rather than misread.
const FORMAT_VERSION: u32 = 1;
const META_KEY: &str = "smolt_checkpoint";

/// The scalar state of a run at a step boundary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub version: u32,
    /// Optimiser steps completed.
    pub step: u64,
    /// Micro-batches consumed.
    pub micro_batches: u64,
    /// The next micro-batch to train on.
    pub position: DataPosition,
    /// Word position of the trainer's ChaCha RNG (as a decimal string: JSON has no u128).
    pub rng_word_pos: String,
    /// Tokens and target tokens processed so far.
    pub tokens: u64,
    pub target_tokens: u64,
    /// Training wall time so far, for tokens/s and the summary across resumes.
    pub elapsed_s: f64,
    /// [`TrainConfig::training_hash`](crate::config::TrainConfig::training_hash) of the run.
    pub config_hash: String,
    /// [`Dataset::fingerprint`](crate::dataset::Dataset::fingerprint) of the training data.
    pub data_fingerprint: String,
    /// Parameter names in the engine's order, which the moments follow.
    pub param_names: Vec<String>,
}

/// A loaded checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub moments: Vec<Moments>,
}

/// The file name of the checkpoint after `step` steps; zero-padded so names sort by step.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Writes a checkpoint atomically into `dir` and returns its path.
pub fn save(dir: &Path, meta: &CheckpointMeta, params: &[Param], opt: &AdamW) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names: Vec<(String, String, String)> = params
        .iter()
        .map(|p| {
            (
                format!("param/{}", p.name),
                format!("adam_m/{}", p.name),
                format!("adam_v/{}", p.name),
            )
        })
        .collect();
    let mut tensors: Vec<(&str, &[usize], &[f32])> = Vec::with_capacity(3 * params.len());
    for ((p, mo), (pn, mn, vn)) in params.iter().zip(&opt.moments).zip(&names) {
        tensors.push((pn, &p.shape[..], &p.data));
        tensors.push((mn, &p.shape[..], &mo.m));
        tensors.push((vn, &p.shape[..], &mo.v));
    }
    let mut m = meta.clone();
    m.version = FORMAT_VERSION;
    let metadata = HashMap::from([(META_KEY.to_string(), serde_json::to_string(&m)?)]);
    let bytes = safetensors_bytes(tensors, metadata)?;
    let path = dir.join(checkpoint_name(meta.step));
    write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Reads one checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (tensors, metadata) =
        parse_safetensors(&bytes).with_context(|| format!("in {}", path.display()))?;
    let meta_json = metadata
        .get(META_KEY)
        .with_context(|| format!("{}: not a smolt checkpoint", path.display()))?;
    let meta: CheckpointMeta = serde_json::from_str(meta_json)
        .with_context(|| format!("{}: bad checkpoint metadata", path.display()))?;
    if meta.version != FORMAT_VERSION {
        bail!(
            "{}: checkpoint format {} (this smolt reads {FORMAT_VERSION})",
            path.display(),
            meta.version
        );
    }
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> = tensors
        .into_iter()
        .map(|t| (t.name, (t.shape, t.data)))
        .collect();
    let mut take = |key: String| {
        by_name
            .remove(&key)
            .with_context(|| format!("{}: missing tensor {key}", path.display()))
    };
    let mut params = Vec::new();
    let mut moments = Vec::new();
    for name in &meta.param_names {
        let (shape, data) = take(format!("param/{name}"))?;
        let (_, m) = take(format!("adam_m/{name}"))?;
        let (_, v) = take(format!("adam_v/{name}"))?;
        params.push((name.clone(), shape, data));
        moments.push(Moments { m, v });
    }
    Ok(Checkpoint {
        meta,
        params,
        moments,
    })
}

/// Complete checkpoints in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(parse_step) {
            out.push((step, entry.path()));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// Deletes temp files left by a write that was interrupted; they are never complete.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let mut n = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                fs::remove_file(entry.path())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The newest checkpoint that reads back whole. A damaged newer file (which atomic writes
/// should make impossible, but disks fail) is reported and skipped, not fatal.
pub fn load_latest(dir: &Path) -> Result<Option<(PathBuf, Checkpoint)>> {
    remove_stale_temps(dir)?;
    for (_, path) in list(dir)? {
        match load(&path) {
            Ok(c) => return Ok(Some((path, c))),
            Err(e) => eprintln!("warning: skipping unreadable checkpoint: {e:#}"),
        }
    }
    Ok(None)
}

/// Keeps the newest `keep` checkpoints and deletes the rest.
pub fn prune(dir: &Path, keep: usize) -> Result<()> {
    for (_, path) in list(dir)?.into_iter().skip(keep) {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Rebuilds optimiser state from a checkpoint's moments.
pub fn restore_optimizer(cfg: AdamWConfig, ckpt: &Checkpoint) -> AdamW {
    AdamW {
        cfg,
        step: ckpt.meta.step,
        moments: ckpt.moments.clone(),
    }
}
