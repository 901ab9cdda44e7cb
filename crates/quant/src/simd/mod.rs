//! Run-time choice among the scalar, NEON, AVX2 and AVX-512 dot-product kernels.
//!
//! Each path is a table of plain function pointers (`table`). The SIMD tables can only be
//! obtained through `kernels_for`, which checks the CPU first (`crate::cpu::supports`), so
//! holding a table is proof that its `#[target_feature]` functions may run. The active path
//! is chosen once by `crate::cpu::active` (best available, capped by `SMOLT_SIMD`)
//! and its table cached.

use std::sync::OnceLock;

use crate::cpu::{self, SimdPath};

/// Wraps an x86 raw-pointer kernel `$inner` in a `DotFn`. Only the ISA file's `table()`, after
/// feature detection, hands the wrapper out.
#[cfg(target_arch = "x86_64")]
macro_rules! checked {
    ($vis:vis $name:ident, $inner:ident, $wb:expr, $ab:expr) => {
        $vis fn $name(nb: usize, w: &[u8], a: &[u8]) -> f32 {
            assert!(
                w.len() >= nb * $wb && a.len() >= nb * $ab,
                "dot kernel: short buffer"
            );
            // SAFETY: reachable only through `table()`, which checked that the CPU has
            // every feature `$inner` is compiled for; the assert above keeps every block
            // load `$inner` makes inside `w` and `a`.
            unsafe { $inner(nb, w.as_ptr(), a.as_ptr()) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
mod table;

use table::SCALAR;

pub(crate) use table::{DotFn, Kernels};

/// The kernel table for `path`, or `None` if this CPU lacks its instructions.
pub(crate) fn kernels_for(path: SimdPath) -> Option<&'static Kernels> {
    match path {
        SimdPath::Scalar => Some(&SCALAR),
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2 => avx2::table(),
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => avx512::table(),
        #[cfg(target_arch = "aarch64")]
        SimdPath::Neon => neon::table(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

static ACTIVE: OnceLock<&'static Kernels> = OnceLock::new();

/// The table of the path in use ([`cpu::active`]).
pub(crate) fn active_kernels() -> &'static Kernels {
    ACTIVE.get_or_init(|| kernels_for(cpu::active()).expect("cpu::active picks a supported path"))
}
