//! Reading GGUF files: the header is parsed eagerly and checked; tensor data stays in the
//! mapping and is handed out as borrowed slices.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::Error;
use crate::value::{Value, ValueType};
use crate::GgmlType;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml supports at most four dimensions; more in a file means the file is damaged.
pub const MAX_DIMS: u32 = 4;
/// Arrays nested deeper than this are refused: no real model nests at all, and unbounded
/// recursion on hostile input would overflow the stack.
const MAX_ARRAY_DEPTH: usize = 4;
/// Counts are only checked against the bytes left in the file, and a parsed value is larger
/// than its encoding (a one-byte `u8` becomes a 32-byte `Value`), so trusting a count for
/// up-front allocation would let a small hostile file demand gigabytes before a single
/// element is read. Vectors start at most this big and grow as elements actually parse.
const MAX_PREALLOC: usize = 4096;

/// One tensor's record from the header. `dims` is in GGML order: `dims[0]` (ne0) is the
/// contiguous row length.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (ne0).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows (product of ne1..).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An opened GGUF file.
pub struct Gguf {
    storage: Storage,
    path: Option<PathBuf>,
    pub version: u32,
    pub alignment: u64,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
}

impl Gguf {
    /// Map and parse a file. The mapping is read-only; tensor slices borrow from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, Error> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        if len == 0 {
            return Err(Error::Truncated {
                what: "magic".into(),
                offset: 0,
                needed: 4,
                available: 0,
            });
        }
        // SAFETY: the mapping is read-only and private to this process. Another process
        // truncating the file while it is mapped would fault; that is the documented risk of
        // every mmap-based model loader (llama.cpp included) and is accepted for zero-copy
        // loading. Every access goes through bounds-checked slices of `len` bytes.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut g = Gguf::parse(Storage::Mapped(mmap))?;
        g.path = Some(path.to_path_buf());
        Ok(g)
    }

    /// Parse a GGUF image held in memory (tests, and files produced on the fly).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, Error> {
        Gguf::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<Gguf, Error> {
        let bytes = storage.bytes();
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.take(4, "magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic {
                found: [magic[0], magic[1], magic[2], magic[3]],
            });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // A tensor record takes at least 8 (name) + 4 + 8 + 4 + 8 bytes, a KV at least 8 + 4 + 1.
        c.check_count(n_tensors, 32, "tensor count")?;
        c.check_count(n_kv, 13, "metadata count")?;

        let mut metadata = Vec::with_capacity(prealloc(n_kv));
        let mut metadata_index = HashMap::with_capacity(prealloc(n_kv));
        for i in 0..n_kv {
            let key = c.string(&format!("key of metadata entry {i}"))?;
            let ty_id = c.u32(&format!("type of metadata `{key}`"))?;
            let ty = ValueType::from_id(ty_id).ok_or_else(|| Error::UnknownValueType {
                key: key.clone(),
                id: ty_id,
            })?;
            let value = c.value(ty, &key, 0).map_err(|e| name_value(e, &key))?;
            if metadata_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::DuplicateKey(key));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let v = &metadata[i].1;
                match v.as_u64() {
                    Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                    _ => return Err(Error::BadAlignment(v.to_string())),
                }
            }
        };

        let mut tensors = Vec::with_capacity(prealloc(n_tensors));
        let mut tensor_index = HashMap::with_capacity(prealloc(n_tensors));
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor {i}"))?;
            let n_dims = c.u32(&format!("dimension count of tensor `{name}`"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::BadDims {
                    tensor: name,
                    reason: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&format!("dimension {d} of tensor `{name}`"))?);
            }
            let ty_id = c.u32(&format!("type of tensor `{name}`"))?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| Error::UnknownTensorType {
                tensor: name.clone(),
                id: ty_id,
            })?;
            let offset = c.u64(&format!("offset of tensor `{name}`"))?;
            let n_bytes = tensor_size(&name, &dims, ty)?;
            if !offset.is_multiple_of(alignment) {
                return Err(Error::MisalignedTensor {
                    tensor: name,
                    offset,
                    alignment,
                });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::DuplicateTensor(name));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_bytes,
            });
        }

        let data_offset = align_up(c.pos as u64, alignment);
        let file_len = bytes.len() as u64;
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(Error::TensorOutOfBounds {
                        tensor: t.name.clone(),
                        start: data_offset.saturating_add(t.offset),
                        n_bytes: t.n_bytes,
                        file_len,
                    })
                }
            }
        }
        check_overlaps(&tensors)?;

        Ok(Gguf {
            storage,
            path: None,
            version,
            alignment,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            data_offset,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Start of the tensor data section (absolute file offset).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Where GGUF files keep the chat template (llama.cpp's `LLM_KV_TOKENIZER_CHAT_TEMPLATE`).
    pub const CHAT_TEMPLATE_KEY: &'static str = "tokenizer.chat_template";

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The model's chat template (Jinja source, as Hugging Face tokenizers ship it), stored
    /// under [`Gguf::CHAT_TEMPLATE_KEY`]: `Ok(None)` when the file has none, an error when the
    /// key holds something other than a string.
    pub fn chat_template(&self) -> Result<Option<&str>, Error> {
        match self.get(Self::CHAT_TEMPLATE_KEY) {
            None => Ok(None),
            Some(_) => self.get_str(Self::CHAT_TEMPLATE_KEY).map(Some),
        }
    }

    /// A required metadata value, with an error naming the key if it is missing.
    pub fn require(&self, key: &str) -> Result<&Value, Error> {
        self.get(key)
            .ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, Error> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "a string", v))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, Error> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| wrong_type(key, "a non-negative integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, Error> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| wrong_type(key, "a number", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value], Error> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong_type(key, "an array", v))
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, Error> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong_type(key, "an array of strings", v))
            })
            .collect()
    }

    /// An array of numbers as f32 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, Error> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| wrong_type(key, "an array of numbers", v))
            })
            .collect()
    }

    /// An array of integers as i64 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, Error> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| wrong_type(key, "an array of integers", v))
            })
            .collect()
    }

    /// All tensor records in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor, borrowed from the mapping (bounds were checked at open).
    /// `info` must come from this file's [`Gguf::tensors`]; a record from another file may
    /// lie outside this one and panics.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.storage.bytes()[start..start + info.n_bytes as usize]
    }

    /// Tells the kernel this process will not read `info`'s bytes for a while (they were copied
    /// into another layout): its pages leave the resident set and, if touched again, come back
    /// from the page cache. Best effort: a no-op for a file read into memory or where the
    /// kernel declines. The bytes seen through [`Gguf::tensor_data`] do not change.
    pub fn release_tensor(&self, info: &TensorInfo) {
        self.release_tensor_bytes(info, 0, info.n_bytes as usize);
    }

    /// [`Gguf::release_tensor`] for the bytes `start .. start + len` of the tensor's data only
    /// (clamped to it).
    pub fn release_tensor_bytes(&self, info: &TensorInfo, start: usize, len: usize) {
        let n = info.n_bytes as usize;
        let (start, len) = (start.min(n), len.min(n - start.min(n)));
        #[cfg(unix)]
        if let Storage::Mapped(m) = &self.storage {
            let start = (self.data_offset + info.offset) as usize + start;
            // SAFETY: the mapping is the read-only shared mapping of the file made in `open`
            // (never written through, never copy-on-write), so MADV_DONTNEED only drops this
            // process's page-table entries: a later read faults the page back in from the
            // page cache with the same bytes. That the file itself is not modified while it is
            // mapped is the assumption `open` already rests on; under it, the slices borrowed
            // from the mapping keep reading the same values. The range is inside the mapping
            // (bounds checked at open, `start`/`len` clamped to the tensor); memmap2 widens it
            // down to a page boundary, which can only release more of this same read-only file.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        }
    }

    /// A tensor by name: its record and bytes, or an error naming the missing tensor.
    pub fn tensor(&self, name: &str) -> Result<(&TensorInfo, &[u8]), Error> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        Ok((info, self.tensor_data(info)))
    }
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> Error {
    Error::WrongType {
        key: key.to_string(),
        expected: expected.to_string(),
        found: format!("{:?}", found.value_type()),
    }
}

fn prealloc(n: u64) -> usize {
    n.min(MAX_PREALLOC as u64) as usize
}

/// Value readers label errors with the bare key (no allocation per element); at the top
/// level that becomes a phrase a user can read.
fn name_value(e: Error, key: &str) -> Error {
    match e {
        Error::Truncated {
            what,
            offset,
            needed,
            available,
        } if what == key => Error::Truncated {
            what: format!("value of metadata `{key}`"),
            offset,
            needed,
            available,
        },
        Error::BadUtf8 { what, offset } if what.starts_with(key) => Error::BadUtf8 {
            what: format!("string value of metadata `{key}`{}", &what[key.len()..]),
            offset,
        },
        e => e,
    }
}

pub(crate) fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, Error> {
    let mut n: u64 = 1;
    for &d in dims {
        if d == 0 {
            return Err(Error::BadDims {
                tensor: name.to_string(),
                reason: format!("a zero dimension in {dims:?}"),
            });
        }
        n = n.checked_mul(d).ok_or_else(|| Error::BadDims {
            tensor: name.to_string(),
            reason: format!("element count of {dims:?} overflows"),
        })?;
    }
    if !dims[0].is_multiple_of(ty.block_size() as u64) {
        return Err(Error::BadDims {
            tensor: name.to_string(),
            reason: format!(
                "row length {} is not a multiple of the {} block size {}",
                dims[0],
                ty,
                ty.block_size()
            ),
        });
    }
    ty.bytes_for(n).ok_or_else(|| Error::BadDims {
        tensor: name.to_string(),
        reason: format!("byte size of {dims:?} {ty} overflows"),
    })
}

fn check_overlaps(tensors: &[TensorInfo]) -> Result<(), Error> {
    let mut spans: Vec<(u64, u64, &str)> = tensors
        .iter()
        .map(|t| (t.offset, t.offset + t.n_bytes, t.name.as_str()))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::OverlappingTensors {
                first: w[0].2.to_string(),
                second: w[1].2.to_string(),
            });
        }
    }
    Ok(())
}

/// A bounds-checked little-endian reader over the header bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                available: self.remaining(),
            });
        }
        let n = n as usize;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Refuse a count whose elements could not fit in the rest of the file, before
    /// anything is allocated for them.
    fn check_count(&self, n: u64, min_size: u64, what: &str) -> Result<(), Error> {
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(Error::AbsurdCount {
                what: what.to_string(),
                count: n,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, Error> {
        let len = self.u64(what)?;
        let offset = self.pos as u64;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| {
            // The bytes cannot be shown as they are, but a lossy rendering usually lets the
            // user recognise which key or name was damaged.
            let shown = String::from_utf8_lossy(&raw[..raw.len().min(64)]);
            Error::BadUtf8 {
                what: format!("{what} ({shown:?})"),
                offset,
            }
        })
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value, Error> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => {
                let b = self.array::<1>(key)?[0];
                match b {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => {
                        return Err(Error::BadBool {
                            key: key.to_string(),
                            byte: b,
                        })
                    }
                }
            }
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::TooDeep(key.to_string()));
                }
                let elem_id = self.u32(key)?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| Error::UnknownValueType {
                    key: key.to_string(),
                    id: elem_id,
                })?;
                let n = self.u64(key)?;
                self.check_count(
                    n,
                    elem.min_encoded_size(),
                    &format!("length of array `{key}`"),
                )?;
                let mut items = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}
