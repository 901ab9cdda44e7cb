//! What this CPU can run, in one place: the instruction-set levels the dot-product tables are
//! written for ([`SimdPath`]), the one this process uses (chosen once: the best available, or
//! `SMOLT_SIMD=scalar|avx2|avx512`), and the extra features single kernels check (AVX-512
//! VBMI for the one-row AVX-512 kernels, AMX for the opt-in tile path).

use std::sync::OnceLock;

/// An instruction-set level a kernel table is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdPath {
    Scalar,
    Avx2,
    Avx512,
}

impl SimdPath {
    pub const ALL: [SimdPath; 3] = [SimdPath::Scalar, SimdPath::Avx2, SimdPath::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Scalar => "scalar",
            SimdPath::Avx2 => "avx2",
            SimdPath::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        supports(self)
    }
}

/// Whether this CPU has every feature the kernels of `path` are compiled for: AVX2, FMA and
/// F16C for the AVX2 table; AVX-512F/BW/VL/DQ/VNNI and those three for the AVX-512 one.
pub(crate) fn supports(path: SimdPath) -> bool {
    match path {
        SimdPath::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2 => {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        }
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

static ACTIVE: OnceLock<SimdPath> = OnceLock::new();

/// The path in use: `SMOLT_SIMD` if set and runnable, else the best this CPU has.
pub(crate) fn active() -> SimdPath {
    *ACTIVE.get_or_init(|| {
        let forced = std::env::var("SMOLT_SIMD").ok().and_then(|v| {
            SimdPath::ALL
                .into_iter()
                .find(|p| p.name().eq_ignore_ascii_case(v.trim()))
        });
        if let Some(p) = forced.filter(|&p| supports(p)) {
            return p;
        }
        [SimdPath::Avx512, SimdPath::Avx2]
            .into_iter()
            .find(|&p| supports(p))
            .unwrap_or(SimdPath::Scalar)
    })
}

/// Name of the dot-product path in use ("scalar", "avx2" or "avx512").
pub fn simd_path() -> &'static str {
    active().name()
}

/// AVX-512 VBMI, which the AVX-512 one-row kernels use beyond their table's features.
pub(crate) fn avx512vbmi() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the AMX int8 panel path may run (read once): opted in with `SMOLT_AMX=1`, AMX-INT8
/// in CPUID and the tile state granted ([`amx_tiles_granted`]).
pub(crate) fn amx_int8() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        std::env::var("SMOLT_AMX").is_ok_and(|v| v.trim() == "1")
            && amx_cpuid(AMX_INT8_BIT)
            && amx_tiles_granted()
    })
}

/// CPUID leaf 7's EDX bit of AMX-BF16.
pub const AMX_BF16_BIT: u32 = 22;
/// CPUID leaf 7's EDX bit of AMX-INT8.
pub const AMX_INT8_BIT: u32 = 25;

/// Whether CPUID (leaf 7, EDX) reports the AMX feature `bit` ([`AMX_BF16_BIT`],
/// [`AMX_INT8_BIT`]) together with AMX-TILE.
pub fn amx_cpuid(bit: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        if __cpuid_count(0, 0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 24) != 0 && edx & (1 << bit) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = bit;
        false
    }
}

/// Whether this process may use the AMX tile registers (asked once, for every AMX path of
/// every crate): AMX-TILE and OSXSAVE in CPUID, the 8 KB tile state granted by the kernel on
/// request (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, Linux ≥ 5.16: without it
/// the first tile instruction faults) and then enabled in XCR0.
pub fn amx_tiles_granted() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(request_tiles)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tiles() -> bool {
    use std::arch::x86_64::__cpuid_count;
    use std::arch::{asm, x86_64::_xgetbv};
    if !amx_cpuid(24) {
        return false;
    }
    if __cpuid_count(1, 0).ecx & (1 << 27) == 0 {
        return false; // no OSXSAVE: xgetbv would fault
    }
    let ret: i64;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18), a plain
    // syscall with integer arguments; it only changes this process's permitted xsave features
    // (clobbers rcx and r11 as syscalls do).
    unsafe {
        asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64,
             in("rsi") 18i64, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    if ret != 0 {
        return false;
    }
    // SAFETY: OSXSAVE was checked above, so xgetbv is available; it reads XCR0.
    let xcr0 = unsafe { _xgetbv(0) };
    xcr0 & (3 << 17) == (3 << 17)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tiles() -> bool {
    false
}
