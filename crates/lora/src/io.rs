//! Crash-safe file writing and the f32 safetensors files that adapters and checkpoints use.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// Suffix of files being written; a file with it is never a complete checkpoint.
pub const TMP_SUFFIX: &str = ".tmp";

/// The temporary name `path` is written under before being renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("file path").to_os_string();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that a crash at any instant leaves either the old file or the
/// new one, never a torn one: write a temp file in the same directory, fsync it, rename it
/// over the target (atomic on POSIX), then fsync the directory so the rename itself survives
/// a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            // Directories cannot be opened for fsync on every platform; best effort.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// One named f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serialises f32 tensors (little-endian, as safetensors requires) with string metadata.
pub fn safetensors_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, d)| {
            (
                n.to_string(),
                s.to_vec(),
                d.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(owned.len());
    for (n, s, b) in &owned {
        let v = TensorView::new(Dtype::F32, s.clone(), b)
            .map_err(|e| anyhow::anyhow!("tensor {n}: {e:?}"))?;
        views.push((n.clone(), v));
    }
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata)
    };
    safetensors::serialize(views, &meta).map_err(|e| anyhow::anyhow!("safetensors: {e:?}"))
}

/// Reads every tensor of a safetensors file as f32, with its metadata, in file order of name.
pub fn read_safetensors(path: &Path) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_safetensors(&bytes).with_context(|| format!("in {}", path.display()))
}

/// Parses safetensors bytes into f32: F32 as stored, F16, BF16 and F64 converted (adapters
/// trained with PyTorch are often saved in half precision).
pub fn parse_safetensors(bytes: &[u8]) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| anyhow::anyhow!("bad header: {e:?}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("bad file: {e:?}"))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => bail!("tensor {name} is {other:?}; smolt reads F32, F16, BF16 and F64"),
        };
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn safetensors_round_trip_is_exact() {
        let a = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.25e-9, 7.0, 8.0];
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        let bytes = safetensors_bytes([("t", &[2usize, 3][..], &a[..])], meta.clone()).unwrap();
        let (t, m) = parse_safetensors(&bytes).unwrap();
        assert_eq!(m, meta);
        assert_eq!(t[0].shape, vec![2, 3]);
        let bits: Vec<u32> = t[0].data.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, a.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}
