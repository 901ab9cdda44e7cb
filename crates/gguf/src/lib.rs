//! GGUF: an mmap reader and a writer for the GGUF container format.
//!
//! A hostile or damaged file must produce an [`Error`] naming the problem, never a panic,
//! an over-allocation or an out-of-bounds read.

mod types;

pub use types::GgmlType;
