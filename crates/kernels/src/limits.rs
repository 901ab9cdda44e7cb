//! What this machine can do at most: streaming read bandwidth and the arithmetic peak of each
//! instruction family the engine uses, measured with tight loops on N threads. Benchmarks state
//! their figures as a share of the limit that binds them (decode: bytes per token against the
//! read bandwidth; prefill and training: operations per token against the matching peak), so a
//! reader can tell a slow kernel from a saturated machine.
//!
//! Each loop runs chains of independent accumulators whose final values are known in closed
//! form (the tests check them), so the measured work cannot be optimised away or be wrong.

use std::time::Instant;

pub use crate::cpu::{bf16_available, vnni_available};

/// The measured limits of this machine on `threads` threads; `None` where the CPU lacks the
/// instructions.
#[derive(Clone, Debug)]
pub struct Limits {
    pub threads: usize,
    /// Streaming read of a buffer far larger than the caches, GB/s (10⁹ bytes).
    pub read_gbps: f64,
    /// f32 fused multiply-add, GFLOP/s (one FMA = 2 FLOPs), at the widest vector width.
    pub f32_gflops: f64,
    /// int8 dot products, G multiply-adds·2 per second: AVX-512 VNNI `vpdpbusd` where the CPU
    /// has it, else AVX2's `vpmaddubsw` + `vpmaddwd` + `vpaddd` (the sequence the AVX2 kernels
    /// use, as ggml's do).
    pub int8_gops: Option<f64>,
    /// bf16 pair dot products (AVX512-BF16 `vdpbf16ps`), GFLOP/s.
    pub bf16_gflops: Option<f64>,
    /// bf16 tile products (AMX `tdpbf16ps`), GFLOP/s.
    pub amx_bf16_gflops: Option<f64>,
}

/// Measures every limit on a pool of `threads` threads (best of a few runs each). Takes about a
/// second; allocates `read_mib` MiB for the bandwidth probe.
pub fn measure(threads: usize, read_mib: usize) -> Limits {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("a thread pool for the probes");
    let threads = pool.current_num_threads();
    let best = |f: &dyn Fn() -> f64| (0..3).map(|_| f()).fold(0f64, f64::max);
    // Ops per second of a per-thread loop run on every thread at once.
    let rate = |ops_per_thread: f64, run: &(dyn Fn() + Sync)| {
        best(&|| {
            let t = Instant::now();
            pool.broadcast(|_| run());
            ops_per_thread * threads as f64 / t.elapsed().as_secs_f64() / 1e9
        })
    };
    let words = read_mib * (1 << 20) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let read_gbps = best(&|| {
        let chunk = words.div_ceil(threads);
        let t = Instant::now();
        let sums: Vec<u64> = pool.broadcast(|ctx| {
            let lo = (ctx.index() * chunk).min(words);
            read_sum(&buf[lo..(lo + chunk).min(words)])
        });
        std::hint::black_box(sums);
        (words * 8) as f64 / t.elapsed().as_secs_f64() / 1e9
    });
    const ITERS: u64 = 1 << 22;
    let f32_gflops = rate(
        (ITERS * FMA_CHAINS as u64 * fma_lanes() as u64 * 2) as f64,
        &|| {
            std::hint::black_box(fma_loop(ITERS));
        },
    );
    let int8_gops = int8_lanes().map(|lanes| {
        rate((ITERS * lanes * 4 * 2) as f64, &|| {
            std::hint::black_box(int8_loop(ITERS));
        })
    });
    let bf16_gflops = bf16_available().then(|| {
        rate((ITERS * FMA_CHAINS as u64 * 32 * 2) as f64, &|| {
            std::hint::black_box(bf16_loop(ITERS));
        })
    });
    const AMX_ITERS: u64 = 1 << 18;
    let amx_bf16_gflops = crate::bf16::amx_enabled().then(|| {
        rate((AMX_ITERS * 4 * 16 * 16 * 32 * 2) as f64, &|| {
            std::hint::black_box(crate::bf16::amx_peak_loop(AMX_ITERS));
        })
    });
    Limits {
        threads,
        read_gbps,
        f32_gflops,
        int8_gops,
        bf16_gflops,
        amx_bf16_gflops,
    }
}

/// Independent accumulator chains: enough to cover the FMA latency on two ports.
const FMA_CHAINS: usize = 12;
/// The increment of the float loops: exactly representable, and small enough that 2²² steps
/// stay exact in f32 (the sum stays below 2⁴ with a 2⁻²⁰ step: 24 significant bits).
const STEP: f32 = 1.0 / (1 << 20) as f32;

/// The wrapping sum of `words` (read as fast as the memory system allows).
pub fn read_sum(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() >= 2 {
        // SAFETY: level 2 means AVX-512F was detected; the kernel reads only inside `words`.
        return unsafe { x86::read_sum_512(words) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() >= 1 {
        // SAFETY: level 1 means AVX2 was detected; the kernel reads only inside `words`.
        return unsafe { x86::read_sum_256(words) };
    }
    words.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

/// f32 lanes of one FMA on the path `fma_loop` takes.
fn fma_lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    match crate::cpu::level() {
        2.. => return 16,
        1 => return 8,
        _ => {}
    }
    1
}

/// Accumulator chains of the AVX2 int8 loop: each needs its own operand register too, and
/// 2 × 4 leave room for the constants (more would spill; the loop-carried `vpaddd` has a
/// one-cycle latency, so four chains keep the multiply ports busy).
#[cfg(target_arch = "x86_64")]
const INT8_AVX2_CHAINS: usize = 4;

/// i32 lanes (each summing 4 byte products) of one round of `int8_loop` over all its chains,
/// or `None` where the CPU has no int8 dot-product sequence the kernels use (VNNI or AVX2).
fn int8_lanes() -> Option<u64> {
    if vnni_available() {
        return Some(FMA_CHAINS as u64 * 16);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() >= 1 {
        return Some(INT8_AVX2_CHAINS as u64 * 8);
    }
    None
}

/// `iters` rounds of the int8 dot-product step (all-ones bytes: +4 per i32 lane): `vpdpbusd`
/// on `FMA_CHAINS` accumulators with VNNI, else AVX2's `vpmaddubsw` + `vpmaddwd` + `vpaddd` on
/// `INT8_AVX2_CHAINS`; returns the sum of all lanes (= `int8_lanes()` · 4 · iters). Panics
/// without either.
pub fn int8_loop(iters: u64) -> i64 {
    if vnni_available() {
        return vnni_loop(iters);
    }
    assert!(
        int8_lanes().is_some(),
        "no int8 dot products (VNNI or AVX2) here"
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `int8_lanes` is Some without VNNI only at level ≥ 1, where AVX2 was
        // detected; the loop touches no memory.
        unsafe { x86::maddubs_loop_256(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("{iters} rounds, but the assert above holds only on x86-64")
}

/// `iters` rounds of `acc ← 1·STEP + acc` on every lane of `FMA_CHAINS` accumulators; returns
/// the sum of all lanes (= chains · lanes · iters · STEP exactly, for iters ≤ 2²²).
pub fn fma_loop(iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() >= 2 {
        // SAFETY: level 2 means AVX-512F was detected; the loop touches no memory.
        return unsafe { x86::fma_loop_512(iters) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() >= 1 {
        // SAFETY: level 1 means AVX2 and FMA were detected; the loop touches no memory.
        return unsafe { x86::fma_loop_256(iters) };
    }
    let mut acc = [0f32; FMA_CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = 1f32.mul_add(STEP, *a);
        }
    }
    acc.iter().sum()
}

/// `iters` rounds of `vpdpbusd` (all-ones bytes: +4 per lane) on `FMA_CHAINS` accumulators;
/// returns the sum of all lanes (= chains · 16 · 4 · iters). Panics without VNNI.
pub fn vnni_loop(iters: u64) -> i64 {
    assert!(vnni_available(), "no AVX-512 VNNI here");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX-512F and VNNI were detected just above; the loop touches no memory.
        unsafe { x86::vnni_loop_512(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("{iters} rounds, but the assert above holds only on x86-64")
}

/// `iters` rounds of `vdpbf16ps` (pairs 1·STEP + 1·STEP per lane) on `FMA_CHAINS`
/// accumulators; returns the sum of all lanes (= chains · 16 · 2 · iters · STEP). Panics
/// without AVX512-BF16.
pub fn bf16_loop(iters: u64) -> f32 {
    assert!(bf16_available(), "no AVX512-BF16 here");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX-512F and AVX512-BF16 were detected just above; no memory is touched.
        unsafe { x86::bf16_loop_512(iters) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("{iters} rounds, but the assert above holds only on x86-64")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{FMA_CHAINS, STEP};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn read_sum_512(words: &[u64]) -> u64 {
        let mut acc = [_mm512_setzero_si512(); 4];
        let blocks = words.chunks_exact(32);
        let rest = blocks.remainder();
        for b in blocks {
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY (of the load): b holds 32 words, this reads words 8i..8i+8.
                let v = _mm512_loadu_si512(b.as_ptr().add(8 * i) as *const _);
                *a = _mm512_add_epi64(*a, v);
            }
        }
        let mut sum = 0u64;
        for a in acc {
            let mut lanes = [0u64; 8];
            _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, a);
            sum = lanes.iter().fold(sum, |s, &l| s.wrapping_add(l));
        }
        rest.iter().fold(sum, |s, &w| s.wrapping_add(w))
    }

    fn lanes_f32(v: __m512) -> f32 {
        let mut l = [0f32; 16];
        // SAFETY: stores 16 f32 into a 16-f32 array (AVX-512F is enabled in every caller).
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), v) };
        l.iter().sum()
    }

    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop_512(iters: u64) -> f32 {
        let (one, step) = (_mm512_set1_ps(1.0), _mm512_set1_ps(STEP));
        let mut acc = [_mm512_setzero_ps(); FMA_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(one, step, *a);
            }
        }
        acc.iter().map(|&v| lanes_f32(v)).sum()
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn read_sum_256(words: &[u64]) -> u64 {
        let mut acc = [_mm256_setzero_si256(); 4];
        let blocks = words.chunks_exact(16);
        let rest = blocks.remainder();
        for b in blocks {
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY (of the load): b holds 16 words, this reads words 4i..4i+4.
                let v = _mm256_loadu_si256(b.as_ptr().add(4 * i) as *const _);
                *a = _mm256_add_epi64(*a, v);
            }
        }
        let mut sum = 0u64;
        for a in acc {
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, a);
            sum = lanes.iter().fold(sum, |s, &l| s.wrapping_add(l));
        }
        rest.iter().fold(sum, |s, &w| s.wrapping_add(w))
    }

    /// # Safety
    /// AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_loop_256(iters: u64) -> f32 {
        let (one, step) = (_mm256_set1_ps(1.0), _mm256_set1_ps(STEP));
        let mut acc = [_mm256_setzero_ps(); FMA_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(one, step, *a);
            }
        }
        let mut l = [0f32; 8];
        acc.iter()
            .map(|&v| {
                _mm256_storeu_ps(l.as_mut_ptr(), v);
                l.iter().sum::<f32>()
            })
            .sum()
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn maddubs_loop_256(iters: u64) -> i64 {
        let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
        // An opaque zero XORed into each chain's operand keeps the product inside the loop
        // (a loop-invariant `vpmaddubsw` would be hoisted out of it).
        let zero = std::hint::black_box(_mm256_setzero_si256());
        let mut x = [ones8; super::INT8_AVX2_CHAINS];
        let mut acc = [_mm256_setzero_si256(); super::INT8_AVX2_CHAINS];
        for _ in 0..iters {
            for (a, x) in acc.iter_mut().zip(x.iter_mut()) {
                *x = _mm256_xor_si256(*x, zero);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*x, ones8), ones16);
                *a = _mm256_add_epi32(*a, p);
            }
        }
        let mut sum = 0i64;
        for a in acc {
            let mut l = [0i32; 8];
            _mm256_storeu_si256(l.as_mut_ptr() as *mut _, a);
            sum += l.iter().map(|&v| v as i64).sum::<i64>();
        }
        sum
    }

    /// # Safety
    /// AVX-512F and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn vnni_loop_512(iters: u64) -> i64 {
        let ones = _mm512_set1_epi8(1);
        let mut acc = [_mm512_setzero_si512(); FMA_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpbusd_epi32(*a, ones, ones);
            }
        }
        let mut sum = 0i64;
        for a in acc {
            let mut l = [0i32; 16];
            _mm512_storeu_si512(l.as_mut_ptr() as *mut _, a);
            sum += l.iter().map(|&v| v as i64).sum::<i64>();
        }
        sum
    }

    /// # Safety
    /// AVX-512F and AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn bf16_loop_512(iters: u64) -> f32 {
        // 1.0 and STEP as bf16 (both exact: a power of two).
        let a: __m512bh = std::mem::transmute(_mm512_set1_epi16(0x3f80));
        let b: __m512bh = std::mem::transmute(_mm512_set1_epi16((STEP.to_bits() >> 16) as i16));
        let mut acc = [_mm512_setzero_ps(); FMA_CHAINS];
        for _ in 0..iters {
            for c in acc.iter_mut() {
                *c = _mm512_dpbf16_ps(*c, a, b);
            }
        }
        acc.iter().map(|&v| lanes_f32(v)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loops_compute_what_they_count() {
        let words: Vec<u64> = (0..1003u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let want = words.iter().fold(0u64, |a, &w| a.wrapping_add(w));
        assert_eq!(read_sum(&words), want);
        let iters = 1000u64;
        let lanes = fma_lanes() as f64;
        let f = fma_loop(iters) as f64;
        assert_eq!(f, FMA_CHAINS as f64 * lanes * iters as f64 * STEP as f64);
        if vnni_available() {
            assert_eq!(vnni_loop(iters), FMA_CHAINS as i64 * 16 * 4 * iters as i64);
        }
        if let Some(lanes) = int8_lanes() {
            assert_eq!(int8_loop(iters), lanes as i64 * 4 * iters as i64);
        }
        if bf16_available() {
            let want = FMA_CHAINS as f64 * 16.0 * 2.0 * iters as f64 * STEP as f64;
            assert_eq!(bf16_loop(iters) as f64, want);
        }
        if crate::bf16::amx_enabled() {
            // Every element of the four 16 × 16 C tiles gains 32 per round.
            assert_eq!(
                crate::bf16::amx_peak_loop(iters) as f64,
                4.0 * 256.0 * 32.0 * iters as f64
            );
        }
    }

    #[test]
    fn measure_reports_positive_rates() {
        let l = measure(1, 16);
        assert_eq!(l.threads, 1);
        assert!(l.read_gbps > 0.0 && l.read_gbps.is_finite());
        assert!(l.f32_gflops > 0.0 && l.f32_gflops.is_finite());
        assert_eq!(l.int8_gops.is_some(), int8_lanes().is_some());
        assert_eq!(l.bf16_gflops.is_some(), bf16_available());
    }
}
