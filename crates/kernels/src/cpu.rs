//! The CPU as this crate's dispatch sees it: views of the one description every crate reads
//! (`smolt_quant::cpu::cpu`: features and the `SMOLT_SIMD` / `SMOLT_AMX` / `SMOLT_BF16_DOT`
//! switches, read once).

use smolt_quant::cpu::cpu;

/// The vector level the `multiversion!` kernels run at on x86-64 (`Cpu::x86_level`): 2 for
/// AVX-512 (F, VL) + AVX2 + FMA + BMI2, 1 for AVX2 + FMA + BMI2, 0 for baseline; capped by
/// `SMOLT_SIMD`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn level() -> u8 {
    // Cached apart from the description: every `multiversion!` call reads it.
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| cpu().x86_level())
}

/// AVX-512 VNNI (`vpdpbusd`), on top of SIMD level 2.
pub fn vnni_available() -> bool {
    cpu().vnni()
}

/// AVX512-BF16 (`vdpbf16ps`), on top of SIMD level 2.
pub fn bf16_available() -> bool {
    cpu().avx512bf16()
}

/// AVX-512 BW (the Q8_0 packing's byte permutes, beyond AVX-512F).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512bw() -> bool {
    cpu().features.avx512bw
}

/// AMX-BF16 in CPUID, the tile state granted to this process and not turned off with
/// `SMOLT_AMX=0` (`smolt_quant::cpu::amx_bf16`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn amx_bf16() -> bool {
    smolt_quant::cpu::amx_bf16()
}
