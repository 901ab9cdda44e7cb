//! Run-time selection of the instruction set for the hot loops.
//!
//! The workspace builds for baseline x86-64 (SSE2, no FMA), where a dot product runs 4 lanes
//! wide. [`multiversion!`] compiles a kernel body three times (AVX-512, AVX2+FMA, baseline) and
//! picks one per call from the CPU's features (`crate::cpu::level`), so the same binary runs 16
//! lanes wide on the Zen 5 development machine and still runs everywhere. The bodies stay plain
//! Rust; only the compiler's vectoriser sees the difference, so results can differ between CPUs
//! in the last bits (summation order does not change, but FMA contraction is never enabled
//! either way).
//!
//! On aarch64 the baseline already includes NEON (128-bit, 4 f32 lanes), the only vector unit
//! every aarch64 CPU has, so the body is compiled once and vectorised for it; nothing is
//! dispatched. (SVE would need a second body; it only widens vectors on a few cores, such as
//! Graviton 3: Apple silicon, Graviton 2 and 4 have 128-bit vectors either way.)

/// Wraps `fn name<F: Float>(args) -> ret { body }` so that `body` is compiled for AVX-512,
/// AVX2+FMA and baseline x86-64 and dispatched at run time. Arguments must be plain identifiers.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<F: Float>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<F: Float>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body<F: Float>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,bmi2")]
                #[allow(clippy::too_many_arguments)]
                fn v4<F: Float>($($arg: $ty),*) $(-> $ret)? {
                    body::<F>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,bmi2")]
                #[allow(clippy::too_many_arguments)]
                fn v3<F: Float>($($arg: $ty),*) $(-> $ret)? {
                    body::<F>($($arg),*)
                }
                if $crate::cpu::level() >= 2 {
                    // SAFETY: `level()` found AVX-512F/VL, AVX2, FMA and BMI2 on this CPU,
                    // the features `v4` is compiled for; nothing else is unsafe about it.
                    return unsafe { v4::<F>($($arg),*) };
                }
                if $crate::cpu::level() == 1 {
                    // SAFETY: `level()` found AVX2, FMA and BMI2 on this CPU.
                    return unsafe { v3::<F>($($arg),*) };
                }
            }
            body::<F>($($arg),*)
        }
    };
}
pub(crate) use multiversion;
