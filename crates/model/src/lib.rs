//! smolt-model: decoder-only transformers run straight from a GGUF file.
//!
//! [`ArchSpec`] reads the architecture from metadata (Gemma 3, Qwen 2 / 2.5, Qwen 3 and `llama`:
//! Llama 3.x, SmolLM2; a family is a set of flags, not another block); [`Model`] binds the
//! weights by tensor name, checking every shape, and runs the forward pass over a [`KvCache`] in
//! one of two [`Precision`]s.
//!
//! ```no_run
//! use smolt_model::{Logits, Model, Precision};
//! let model = Model::load("gemma-3-270m-q4_k_m.gguf", Precision::Fast)?;
//! let mut cache = model.new_cache();
//! // Prefill the prompt in one pass, logits for its last position only.
//! let logits = model.forward(&[2, 818, 5279, 529, 7001, 563], &mut cache, Logits::Last)?;
//! assert_eq!(logits.len(), model.spec.vocab_size);
//! # Ok::<(), smolt_model::ModelError>(())
//! ```

mod arch;
mod batch;
pub mod block;
mod cache;
mod error;
mod linear;
mod model;
mod proj;

pub use arch::{Activation, Arch, ArchSpec, LayerSpec};
pub use batch::BatchSeq;
pub use block::{block_forward, BlockPass, BlockRecord, BlockVectors};
pub use cache::{KvCache, KvType};
pub use error::{ModelError, Result};
pub use linear::{Linear, LoraDelta};
pub use model::{keep_freed_memory, Block, Logits, Model, Precision, QkvBias, SpecialTokens};
pub use proj::Proj;
pub use smolt_kernels::{Rope, RopeStyle};

pub mod testing;

/// A cache holding the first `k · PREFIX_ALIGN` positions of a prompt, continued with at least
/// [`PREFIX_MIN_FEED`] more tokens in one call, gives bit for bit the results of one pass over
/// the whole prompt: every kernel then groups the rows as that pass does (attention's 64-row
/// query blocks, the matmuls' 16- and 4-row tiles, the tiled attention from 32 rows on).
/// Elsewhere the results differ by rounding, which the 8-bit activations can amplify to a
/// few hundredths of a logit or more. For callers that reuse a shared prompt prefix.
pub const PREFIX_ALIGN: usize = 64;
/// See [`PREFIX_ALIGN`].
pub const PREFIX_MIN_FEED: usize = 32;
