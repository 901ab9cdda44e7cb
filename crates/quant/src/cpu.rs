//! What this CPU can run, in one place for every crate: the features it reports and the
//! environment switches that override the choice ([`Cpu`], read once by [`cpu`]), the
//! instruction-set levels the dot-product tables are written for ([`SimdPath`]) and the one
//! this process uses ([`Cpu::simd_path`], [`simd_path`]), and the AMX tile-state request (made
//! once, [`amx_tiles_granted`]).
//!
//! smolt-quant is the lowest crate with SIMD kernels (smolt-kernels depends on it), so the
//! description lives here and smolt-kernels' `multiversion!` dispatch reads it too.
//!
//! The switches (the README's table lists them with every other `SMOLT_*` variable):
//! - `SMOLT_SIMD=scalar|avx2|avx512|neon`: the highest path any kernel may use (a cap: a path
//!   this CPU lacks falls back to the best below it).
//! - `SMOLT_AMX=0|1`: `0` no AMX tiles at all; `1` the bf16 tiles of training and the int8
//!   tiles of prefill; unset: bf16 tiles only (the int8 panel path measured no faster).
//! - `SMOLT_BF16_DOT=0`: no AVX-512 BF16 products (to compare them with the f32 fallback).

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set level a kernel table is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimdPath {
    Scalar,
    /// aarch64 Advanced SIMD (part of the aarch64 baseline), with `sdot` where the CPU has
    /// the dot-product extension ([`Features::dotprod`]).
    Neon,
    Avx2,
    Avx512,
}

impl SimdPath {
    pub const ALL: [SimdPath; 4] = [
        SimdPath::Scalar,
        SimdPath::Neon,
        SimdPath::Avx2,
        SimdPath::Avx512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Scalar => "scalar",
            SimdPath::Neon => "neon",
            SimdPath::Avx2 => "avx2",
            SimdPath::Avx512 => "avx512",
        }
    }

    /// The path named `s` (the spelling `SMOLT_SIMD` takes), ignoring case and blanks.
    pub fn parse(s: &str) -> Option<SimdPath> {
        SimdPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        supports(self)
    }
}

/// The instruction families smolt's kernels use, as the CPU (and the OS) report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub bmi2: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512dq: bool,
    pub avx512vnni: bool,
    pub avx512vbmi: bool,
    pub avx512bf16: bool,
    /// AMX-TILE with AMX-INT8 / AMX-BF16 in CPUID (whether the OS grants the tile state is
    /// asked separately, only when a tile path may run: [`amx_tiles_granted`]).
    pub amx_int8: bool,
    pub amx_bf16: bool,
    pub neon: bool,
    /// `sdot`/`udot` (Armv8.2 FEAT_DotProd).
    pub dotprod: bool,
    /// `smmla` (Armv8.6 FEAT_I8MM).
    pub i8mm: bool,
    pub sve: bool,
}

impl Features {
    /// What this CPU reports.
    pub fn detect() -> Features {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            Features {
                avx2: has!("avx2"),
                fma: has!("fma"),
                f16c: has!("f16c"),
                bmi2: has!("bmi2"),
                avx512f: has!("avx512f"),
                avx512bw: has!("avx512bw"),
                avx512vl: has!("avx512vl"),
                avx512dq: has!("avx512dq"),
                avx512vnni: has!("avx512vnni"),
                avx512vbmi: has!("avx512vbmi"),
                avx512bf16: has!("avx512bf16"),
                amx_int8: amx_cpuid(AMX_INT8_BIT),
                amx_bf16: amx_cpuid(AMX_BF16_BIT),
                ..Features::default()
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            Features {
                neon: has!("neon"),
                dotprod: has!("dotprod"),
                i8mm: has!("i8mm"),
                sve: has!("sve"),
                ..Features::default()
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        Features::default()
    }

    /// The names of the features present, in declaration order.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.bmi2, "bmi2"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vl, "avx512vl"),
            (self.avx512dq, "avx512dq"),
            (self.avx512vnni, "avx512vnni"),
            (self.avx512vbmi, "avx512vbmi"),
            (self.avx512bf16, "avx512bf16"),
            (self.amx_int8, "amx-int8"),
            (self.amx_bf16, "amx-bf16"),
            (self.neon, "neon"),
            (self.dotprod, "dotprod"),
            (self.i8mm, "i8mm"),
            (self.sve, "sve"),
        ];
        all.into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n)
            .collect()
    }

    /// Whether the kernels of `path` can run: AVX2, FMA and F16C for the AVX2 table;
    /// AVX-512F/BW/VL/DQ/VNNI and those three for the AVX-512 one; NEON for the NEON one.
    pub fn supports(&self, path: SimdPath) -> bool {
        match path {
            SimdPath::Scalar => true,
            SimdPath::Neon => self.neon,
            SimdPath::Avx2 => self.avx2 && self.fma && self.f16c,
            SimdPath::Avx512 => {
                self.supports(SimdPath::Avx2)
                    && self.avx512f
                    && self.avx512bw
                    && self.avx512vl
                    && self.avx512dq
                    && self.avx512vnni
            }
        }
    }
}

/// What `SMOLT_AMX` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmxSwitch {
    /// Unset: bf16 tiles where granted, no int8 tiles.
    Default,
    /// `0`: no tiles.
    Off,
    /// `1`: bf16 and int8 tiles where granted.
    On,
}

/// This CPU and the switches that override what runs on it: read once per process ([`cpu`]).
#[derive(Clone, Debug)]
pub struct Cpu {
    pub features: Features,
    /// `SMOLT_SIMD`: the highest path any kernel may use (`None`: no cap).
    pub simd_cap: Option<SimdPath>,
    /// `SMOLT_AMX`.
    pub amx: AmxSwitch,
    /// `SMOLT_BF16_DOT` (`false` when set to `0`).
    pub bf16_dot: bool,
    /// Switch values that were not understood (each named with what it accepts); they are
    /// ignored and printed once to stderr when the description is first read.
    pub warnings: Vec<String>,
}

impl Cpu {
    /// The description of `features` under the switches `var` returns (the environment for
    /// [`cpu`]; tests pass their own).
    pub fn from_env(features: Features, var: impl Fn(&str) -> Option<String>) -> Cpu {
        let mut warnings = Vec::new();
        let simd_cap = var("SMOLT_SIMD").and_then(|v| {
            let p = SimdPath::parse(&v);
            if p.is_none() {
                warnings.push(format!(
                    "SMOLT_SIMD={v:?} is not one of scalar|neon|avx2|avx512: ignored"
                ));
            }
            p
        });
        let amx = match var("SMOLT_AMX").as_deref().map(str::trim) {
            None | Some("") => AmxSwitch::Default,
            Some("0") => AmxSwitch::Off,
            Some("1") => AmxSwitch::On,
            Some(v) => {
                warnings.push(format!("SMOLT_AMX={v:?} is not 0 or 1: ignored"));
                AmxSwitch::Default
            }
        };
        let bf16_dot = match var("SMOLT_BF16_DOT").as_deref().map(str::trim) {
            None | Some("") | Some("1") => true,
            Some("0") => false,
            Some(v) => {
                warnings.push(format!("SMOLT_BF16_DOT={v:?} is not 0 or 1: ignored"));
                true
            }
        };
        Cpu {
            features,
            simd_cap,
            amx,
            bf16_dot,
            warnings,
        }
    }

    /// Whether `path` is runnable and within `SMOLT_SIMD`'s cap. Paths of the other
    /// architecture are never runnable, so the cap compares levels within one.
    pub fn allows(&self, path: SimdPath) -> bool {
        self.features.supports(path) && self.simd_cap.is_none_or(|cap| path <= cap)
    }

    /// The dot-product path in use: the best one allowed.
    pub fn simd_path(&self) -> SimdPath {
        [SimdPath::Avx512, SimdPath::Avx2, SimdPath::Neon]
            .into_iter()
            .find(|&p| self.allows(p))
            .unwrap_or(SimdPath::Scalar)
    }

    /// The vector level smolt-kernels compiles its plain-Rust loops for on x86-64: 2 with
    /// AVX-512F/VL, AVX2, FMA and BMI2; 1 with AVX2, FMA and BMI2; else 0 (also capped by
    /// `SMOLT_SIMD`). On aarch64 those loops are compiled for NEON, the baseline.
    pub fn x86_level(&self) -> u8 {
        let f = &self.features;
        let v3 = f.avx2 && f.fma && f.bmi2;
        let v4 = v3 && f.avx512f && f.avx512vl;
        let found = if v4 { 2 } else { u8::from(v3) };
        let cap = match self.simd_cap {
            None | Some(SimdPath::Avx512) => 2,
            Some(SimdPath::Avx2) => 1,
            Some(SimdPath::Scalar | SimdPath::Neon) => 0,
        };
        found.min(cap)
    }

    /// Whether the dot-product extension (`sdot`) may be used by the NEON kernels.
    pub fn neon_dotprod(&self) -> bool {
        self.allows(SimdPath::Neon) && self.features.dotprod
    }

    /// Whether the 8-bit matrix-multiply extension (`smmla`, i8mm) may be used by the NEON
    /// kernels.
    pub fn neon_i8mm(&self) -> bool {
        self.allows(SimdPath::Neon) && self.features.i8mm
    }

    /// AVX-512 VNNI (`vpdpbusd`), on top of vector level 2.
    pub fn vnni(&self) -> bool {
        self.x86_level() >= 2 && self.features.avx512vnni
    }

    /// AVX512-BF16 (`vdpbf16ps`), on top of vector level 2 (whether the bf16 products use
    /// it is also up to `SMOLT_BF16_DOT`: [`Cpu::bf16_dot`]).
    pub fn avx512bf16(&self) -> bool {
        self.x86_level() >= 2 && self.features.avx512bf16
    }

    /// Whether `SMOLT_AMX` lets the bf16 tiles run (the CPU and OS are asked separately).
    pub fn amx_bf16_wanted(&self) -> bool {
        self.amx != AmxSwitch::Off && self.features.amx_bf16
    }

    /// Whether `SMOLT_AMX` lets the int8 tiles run.
    pub fn amx_int8_wanted(&self) -> bool {
        self.amx == AmxSwitch::On && self.features.amx_int8
    }
}

impl fmt::Display for Cpu {
    /// One line per item: architecture and features, the path in use, the switches.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.features.names();
        writeln!(
            f,
            "cpu: {} [{}]",
            std::env::consts::ARCH,
            if names.is_empty() {
                "no SIMD features used".to_string()
            } else {
                names.join(" ")
            }
        )?;
        let path = self.simd_path();
        let dot = if self.neon_dotprod() { " + sdot" } else { "" };
        writeln!(
            f,
            "simd: {}{dot} (SMOLT_SIMD {})",
            path.name(),
            self.simd_cap.map_or("unset", |c| c.name())
        )?;
        let amx = match self.amx {
            AmxSwitch::Default => "unset: bf16 tiles only",
            AmxSwitch::Off => "0: off",
            AmxSwitch::On => "1: bf16 and int8 tiles",
        };
        write!(
            f,
            "amx: SMOLT_AMX {amx}; bf16 dot: {}",
            if !self.avx512bf16() {
                "n/a"
            } else if self.bf16_dot {
                "on"
            } else {
                "off (SMOLT_BF16_DOT=0)"
            }
        )?;
        for w in &self.warnings {
            write!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

/// This process's description: the CPU's features and the environment's switches, read on
/// first use (switch values it does not understand are reported once on stderr).
pub fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(|| {
        let c = Cpu::from_env(Features::detect(), |k| std::env::var(k).ok());
        for w in &c.warnings {
            eprintln!("warning: {w}");
        }
        c
    })
}

/// Whether this CPU has every feature the kernels of `path` are compiled for.
pub(crate) fn supports(path: SimdPath) -> bool {
    cpu().features.supports(path)
}

/// The path in use ([`Cpu::simd_path`]).
pub(crate) fn active() -> SimdPath {
    // Cached apart from the description: some kernels ask on every call.
    static ACTIVE: OnceLock<SimdPath> = OnceLock::new();
    *ACTIVE.get_or_init(|| cpu().simd_path())
}

/// Name of the dot-product path in use ("scalar", "neon", "avx2" or "avx512").
pub fn simd_path() -> &'static str {
    active().name()
}

/// AVX-512 VBMI, which the AVX-512 one-row kernels use beyond their table's features.
pub(crate) fn avx512vbmi() -> bool {
    cpu().features.avx512vbmi
}

/// Whether the AMX int8 panel path may run (read once): opted in with `SMOLT_AMX=1`, AMX-INT8
/// in CPUID and the tile state granted ([`amx_tiles_granted`]).
#[cfg(target_arch = "x86_64")]
pub(crate) fn amx_int8() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpu().amx_int8_wanted() && amx_tiles_granted())
}

/// Whether the AMX bf16 tiles may run (read once): not turned off with `SMOLT_AMX=0`,
/// AMX-BF16 in CPUID and the tile state granted ([`amx_tiles_granted`]).
pub fn amx_bf16() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpu().amx_bf16_wanted() && amx_tiles_granted())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn zen5() -> Features {
        Features {
            avx2: true,
            fma: true,
            f16c: true,
            bmi2: true,
            avx512f: true,
            avx512bw: true,
            avx512vl: true,
            avx512dq: true,
            avx512vnni: true,
            avx512vbmi: true,
            avx512bf16: true,
            ..Features::default()
        }
    }

    fn with(f: Features, vars: &[(&str, &str)]) -> Cpu {
        Cpu::from_env(f, |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn simd_switch_caps_every_dispatcher() {
        let c = with(zen5(), &[]);
        assert_eq!((c.simd_path(), c.x86_level()), (SimdPath::Avx512, 2));
        assert!(c.vnni() && c.avx512bf16());
        let c = with(zen5(), &[("SMOLT_SIMD", "AVX2 ")]);
        assert_eq!((c.simd_path(), c.x86_level()), (SimdPath::Avx2, 1));
        assert!(!c.vnni() && !c.avx512bf16());
        let c = with(zen5(), &[("SMOLT_SIMD", "scalar")]);
        assert_eq!((c.simd_path(), c.x86_level()), (SimdPath::Scalar, 0));
        // A path the CPU lacks caps at it: the best below runs.
        let avx2_only = Features {
            avx512f: false,
            ..zen5()
        };
        let c = with(avx2_only, &[("SMOLT_SIMD", "avx512")]);
        assert_eq!((c.simd_path(), c.x86_level()), (SimdPath::Avx2, 1));
    }

    #[test]
    fn neon_is_chosen_on_arm_and_capped_by_scalar() {
        let arm = Features {
            neon: true,
            dotprod: true,
            ..Features::default()
        };
        let c = with(arm, &[]);
        assert_eq!(c.simd_path(), SimdPath::Neon);
        assert!(c.neon_dotprod());
        assert_eq!(c.x86_level(), 0);
        let c = with(arm, &[("SMOLT_SIMD", "scalar")]);
        assert_eq!(c.simd_path(), SimdPath::Scalar);
        assert!(!c.neon_dotprod());
    }

    #[test]
    fn bad_switch_values_are_named_and_ignored() {
        let c = with(
            zen5(),
            &[
                ("SMOLT_SIMD", "2"),
                ("SMOLT_AMX", "yes"),
                ("SMOLT_BF16_DOT", "x"),
            ],
        );
        assert_eq!(c.simd_cap, None);
        assert_eq!(c.amx, AmxSwitch::Default);
        assert!(c.bf16_dot);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("SMOLT_SIMD=\"2\""));
        assert!(c.to_string().contains("warning: SMOLT_AMX"));
    }

    #[test]
    fn amx_switch_has_one_meaning_for_both_tile_paths() {
        let amx = Features {
            amx_int8: true,
            amx_bf16: true,
            ..zen5()
        };
        let c = with(amx, &[]);
        assert!(c.amx_bf16_wanted() && !c.amx_int8_wanted());
        let c = with(amx, &[("SMOLT_AMX", "1")]);
        assert!(c.amx_bf16_wanted() && c.amx_int8_wanted());
        let c = with(amx, &[("SMOLT_AMX", "0")]);
        assert!(!c.amx_bf16_wanted() && !c.amx_int8_wanted());
    }

    #[test]
    fn display_names_features_path_and_switches() {
        let s = with(zen5(), &[("SMOLT_SIMD", "avx2"), ("SMOLT_BF16_DOT", "0")]).to_string();
        assert!(s.contains("avx512vnni"), "{s}");
        assert!(s.contains("simd: avx2 (SMOLT_SIMD avx2)"), "{s}");
        assert!(s.contains("bf16 dot: n/a"), "{s}");
        let s = with(zen5(), &[("SMOLT_BF16_DOT", "0")]).to_string();
        assert!(s.contains("bf16 dot: off (SMOLT_BF16_DOT=0)"), "{s}");
    }
}
