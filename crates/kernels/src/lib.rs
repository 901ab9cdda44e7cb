//! smolt-kernels: the dense ops of a decoder-only transformer, forward and backward side by side.
//!
//! Conventions, as in llm.c:
//! - tensors are row-major slices; shapes are given as `(T, C)` in each doc comment;
//! - every kernel is generic over [`Float`] (`f32` for the model, `f64` for gradient checks);
//! - what a backward needs (rstd, log-sum-exp) is cached explicitly by its forward;
//! - backward kernels ACCUMULATE into their gradient outputs (`+=`), so gradients flowing into
//!   the residual stream from several branches need no temporary; zero them before the first use.
//!   The one exception is [`rope_backward`], which transforms its buffer in place;
//! - work is split over rayon's global pool only when it is big enough to pay for waking it, so
//!   decode-sized calls (T = 1) run on the calling thread.

pub mod activation;
pub mod adamw;
pub mod attention;
pub mod bf16;
mod cpu;
pub mod cross_entropy;
pub mod float;
pub mod limits;
pub mod matmul;
pub mod norm;
pub mod rope;
mod simd;

#[cfg(test)]
mod test_util;

pub use activation::{
    geglu_backward, geglu_forward, gelu_tanh, silu, swiglu_backward, swiglu_forward,
};
pub use adamw::{adamw_step, AdamWHyper};
pub use attention::{attention_backward, attention_forward, attention_forward_f16kv};
pub use cross_entropy::{
    exp_shifted_sum, linear_cross_entropy, linear_cross_entropy_with, ChunkProducts,
};
pub use float::Float;
pub use matmul::{matmul_nn, matmul_nt, matmul_tn};
pub use norm::{rms_norm_backward, rms_norm_forward};
pub use rope::{rope_backward, rope_forward, Rope, RopeStyle};
