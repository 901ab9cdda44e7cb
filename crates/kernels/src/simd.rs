//! Run-time selection of the instruction set for the hot loops.
//!
//! The workspace builds for baseline x86-64 (SSE2, no FMA), where a dot product runs 4 lanes
//! wide. [`multiversion!`] compiles a kernel body three times (AVX-512, AVX2+FMA, baseline) and
//! picks one per call from the CPU's features, so the same binary runs 16 lanes wide on the
//! Zen 5 development machine and still runs everywhere. The bodies stay plain Rust; only the
//! compiler's vectoriser sees the difference, so results can differ between CPUs in the last
//! bits (summation order does not change, but FMA contraction is never enabled either way).

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
                if $crate::simd::level() >= 2 {
                    // SAFETY: `level()` found AVX-512F/VL, AVX2, FMA and BMI2 on this CPU,
                    // the features `v4` is compiled for; nothing else is unsafe about it.
                    return unsafe { v4::<F>($($arg),*) };
                }
                if $crate::simd::level() == 1 {
                    // SAFETY: `level()` found AVX2, FMA and BMI2 on this CPU.
                    return unsafe { v3::<F>($($arg),*) };
                }
            }
            body::<F>($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// 2: AVX-512 (F, VL) + AVX2 + FMA + BMI2; 1: AVX2 + FMA + BMI2; 0: baseline. Can be capped
/// with `SMOLT_SIMD=0|1|2` (read once) to compare paths or to dodge a suspected miscompile.
#[cfg(target_arch = "x86_64")]
pub(crate) fn level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let v3 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("bmi2");
        let v4 = v3
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl");
        let found = if v4 { 2 } else { u8::from(v3) };
        let cap = std::env::var("SMOLT_SIMD")
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
            .unwrap_or(2);
        found.min(cap)
    })
}

#[cfg(test)]
mod tests {
    use crate::Float;

    multiversion! {
        fn sum_of_squares<F: Float>(x: &[F]) -> F {
            crate::float::dot(x, x)
        }
    }

    #[test]
    fn dispatched_kernel_runs_and_agrees_with_the_baseline() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
        let want = crate::float::dot(&x, &x);
        // Same summation order on every path, and no FMA contraction: bit-identical.
        assert_eq!(sum_of_squares(&x).to_bits(), want.to_bits());
    }
}
