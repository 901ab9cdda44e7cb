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

/// AMX-TILE and AMX-BF16 in CPUID, the tile state granted by the kernel
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) and enabled in XCR0; `SMOLT_AMX=0` turns it off.
#[cfg(target_arch = "x86_64")]
pub(crate) fn amx_bf16() -> bool {
    use std::arch::x86_64::__cpuid_count;
    use std::sync::OnceLock;

    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if std::env::var("SMOLT_AMX").is_ok_and(|v| v.trim() == "0") {
            return false;
        }
        if __cpuid_count(0, 0).eax < 7 {
            return false;
        }
        let l7 = __cpuid_count(7, 0);
        let (bf16, tile) = (l7.edx & (1 << 22) != 0, l7.edx & (1 << 24) != 0);
        let osxsave = __cpuid_count(1, 0).ecx & (1 << 27) != 0;
        if !(bf16 && tile && osxsave) {
            return false;
        }
        #[cfg(target_os = "linux")]
        {
            use std::arch::{asm, x86_64::_xgetbv};
            let ret: i64;
            // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18),
            // a plain syscall with integer arguments; it only changes this process's
            // permitted xsave features (clobbers rcx and r11 as syscalls do).
            unsafe {
                asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64,
                     in("rsi") 18i64, lateout("rcx") _, lateout("r11") _,
                     options(nostack));
            }
            if ret != 0 {
                return false;
            }
            // SAFETY: OSXSAVE was checked above, so xgetbv is available; reads XCR0.
            let xcr0 = unsafe { _xgetbv(0) };
            xcr0 & (3 << 17) == (3 << 17)
        }
        #[cfg(not(target_os = "linux"))]
        false
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn amx_bf16() -> bool {
    false
}
