//! What this CPU can do, in one place: the SIMD level the `multiversion!` kernels dispatch on
//! and the extra instruction families single kernels and probes check (AVX-512 VNNI and BF16,
//! AVX-512 BW, AMX tiles), each read once.

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

/// AVX-512 VNNI (`vpdpbusd`), on top of SIMD level 2.
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level() >= 2 && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX512-BF16 (`vdpbf16ps`), on top of SIMD level 2.
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level() >= 2 && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 BW (the Q8_0 packing's byte permutes, beyond AVX-512F).
pub(crate) fn avx512bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AMX-BF16 in CPUID and the tile state granted to this process (smolt-quant asks the kernel
/// once for every crate: `smolt_quant::cpu::amx_tiles_granted`); `SMOLT_AMX=0` turns it off.
pub(crate) fn amx_bf16() -> bool {
    use smolt_quant::cpu;
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        !std::env::var("SMOLT_AMX").is_ok_and(|v| v.trim() == "0")
            && cpu::amx_cpuid(cpu::AMX_BF16_BIT)
            && cpu::amx_tiles_granted()
    })
}
