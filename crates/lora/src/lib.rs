//! smolt-lora: LoRA adapters — their shape ([`LoraConfig`], [`Target`]), their files in PEFT's
//! layout ([`files`]: save, load, attach to a model for inference) — and the training forward
//! and backward pass of a decoder over its frozen, still-quantized base.
//!
//! The base is never copied whole: the forward multiplies by the weights as the file stores
//! them (the inference engine's own kernels), and the backward, which owes the frozen weights no
//! gradient, only carries `dX = dY·W` back through them — one decoded matrix at a time. The LM
//! head runs only at the answer positions, fused with the cross-entropy over vocabulary chunks
//! ([`linear_cross_entropy`]). Everything is generic over the float type, so the f64 instance of
//! this very code is what the finite-difference checks verify.
//!
//! ```no_run
//! use smolt_lora::{Frozen, LoraAdapter, LoraConfig, Sequence, StepOptions};
//! use smolt_model::{Model, Precision};
//! let model = Model::load("gemma-3-270m-q4_k_m.gguf", Precision::Fast)?;
//! let base = Frozen::from_model(&model);
//! let mut adapter = LoraAdapter::<f32>::new(&model.spec, &LoraConfig::default(), 42)?;
//! let tokens = [2, 818, 5279, 529, 7001, 563];
//! let labels = [-100, -100, -100, -100, 7001, 563];
//! let out = base.step(&mut adapter, &Sequence { tokens: &tokens, labels: &labels }, &StepOptions::default())?;
//! println!("loss {} over {} tokens", out.loss, out.n_targets);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adapter;
pub mod attention;
mod base;
mod config;
mod error;
pub mod files;
pub mod gguf_lora;
mod head;
pub mod io;
pub mod merge;
pub mod prof;
mod step;
mod weights;

pub use adapter::{peft_name, peft_row, reorder_b_rows, target_dims, LoraAdapter, Param};
pub use base::{BaseMatmul, Dense, Frozen, FrozenBlock, FrozenLinear, HeadCache};
pub use config::{LoraConfig, Target};
pub use error::{LoraError, Result};
pub use files::{
    attach_adapter, load_adapter, save_adapter, to_peft_layout, ADAPTER_CONFIG_FILE, ADAPTER_FILE,
};
pub use head::{linear_cross_entropy, CHUNK};
pub use merge::{merged_gguf, MergeReport, MergeTypes};
pub use step::{Sequence, StepOptions, StepOutput, IGNORE};
pub use weights::{AdapterWeights, LoraPair};
