//! bf16 products with f32 accumulation, for the frozen-weight products of training: Intel AMX
//! (`tdpbf16ps`) where the CPU and kernel allow it, else AVX-512 BF16 (`vdpbf16ps`, module
//! `dot`) where the CPU has it, else f32 gemm over the same bf16 values.
//!
//! A product is `c (m, n) (+)= a (m, k) · b (k, n)` with `a` the activations, rounded to bf16
//! per call ([`BfRows`]), and `b` a frozen matrix packed once ([`PackedB`]) in the layout the
//! tile unit reads: element pairs along `k`, `[k/2][n][2]`. A linear layer `W (out, in)` needs
//! two packings, one per direction:
//!
//! ```text
//! forward:   y (T, out) = x (T, in) · Wᵀ      b = PackedB::from_rows_transposed(W)   (k = in)
//! backward:  dx (T, in) += dy (T, out) · W    b = PackedB::from_rows(W)              (k = out)
//! ```
//!
//! Every element is rounded once to bf16 (8 significant bits) and the products are summed in
//! f32, so a product is the f32 product of the rounded operands up to summation order; the
//! fallback computes exactly that with the `gemm` crate, and the tests hold both hardware
//! paths to it.
//!
//! The files, by concern: `operands` holds the two operands' layouts ([`BfRows`], [`PackedB`])
//! and their constructors; `packing` the scratch refills of a `PackedB` from decoded rows (with
//! their AVX2 shuffles) and `pack_q8_0` the one straight from Q8_0 bytes (AVX-512 BF16);
//! `product` the entry points that pick a path; `amx` and `dot` the two hardware kernels, which
//! share the column split of `split`.

/// bf16 conversions: smolt-quant's, the ones the GGUF BF16 format already uses (round to
/// nearest even, NaN kept quiet; widening exact).
pub use smolt_quant::{bf16_to_f32, f32_to_bf16};

mod aligned;
#[cfg(target_arch = "x86_64")]
mod amx;
mod dot;
mod operands;
mod pack_q8_0;
mod packing;
mod product;
mod split;

pub use aligned::LineVec;
pub use operands::{BfRows, PackedB};
pub use pack_q8_0::pack_w_q8_0_into;
pub use packing::{pack_rows_into, pack_w_into, PackScratch};
pub use product::{
    accelerated, amx_enabled, amx_peak_loop, gemm_bf16, gemm_bf16_strided, gemm_fallback,
};

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    use super::operands::{BfRows, PackedB};
    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn gemm(_: &BfRows, _: &PackedB, _: &mut [f32], _: usize, _: bool, _: bool) {
        unreachable!("no AMX off x86-64")
    }
    pub(super) unsafe fn peak_loop(_: u64) -> f32 {
        unreachable!("no AMX off x86-64")
    }
}
