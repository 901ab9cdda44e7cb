//! The column split the two hardware kernels (`amx`, `dot`) share: `c`'s pointer across the
//! tasks of one call, and the division of column units over rayon's pool.

use rayon::prelude::*;

/// `c`'s pointer, shared by the tasks of one hardware `gemm` call (AMX or AVX-512 BF16).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Ptr(pub(super) *mut f32);
// SAFETY: the pointer is only used to write disjoint column blocks of `c` from the
// tasks of one `gemm` call, which `c`'s exclusive borrow outlives.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Ptr {
    /// A method, so closures capture the whole `Ptr` (Send) and not its raw field.
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `run(u0, u1)` over `units` units of columns (a hardware kernel's column blocks),
/// split into up to two tasks per thread when `parallel` allows and the product (`mnk`
/// multiply-adds) is worth the split.
pub(super) fn split_columns(
    units: usize,
    parallel: bool,
    mnk: usize,
    run: impl Fn(usize, usize) + Sync,
) {
    let tasks = if parallel && rayon::current_num_threads() > 1 && mnk >= 1 << 20 {
        (2 * rayon::current_num_threads()).min(units)
    } else {
        1
    };
    if tasks <= 1 {
        run(0, units);
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each(|t| run(t * units / tasks, (t + 1) * units / tasks));
    }
}
