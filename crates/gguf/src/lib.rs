//! GGUF: an mmap reader and a writer for the GGUF container format.
//!
//! A hostile or damaged file must produce an [`Error`] naming the problem, never a panic,
//! an over-allocation or an out-of-bounds read.

mod error;
mod inspect;
mod reader;
mod types;
mod value;
mod writer;

pub use error::Error;
pub use inspect::{human_bytes, human_count, TypeTotal};
pub use reader::{Gguf, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;
