//! The bf16 products on AVX-512 BF16 (`vdpbf16ps`: 16 lanes, each adding two bf16 products
//! to an f32 sum) for CPUs that have it without a usable tile unit: AMD Zen 4 and 5, Intel
//! Cooper Lake, and AMX machines whose kernel or hypervisor does not grant the tile state.
//! There it doubles the f32 FMA rate that the fallback (f32 gemm over the widened values)
//! is bound by.
//!
//! Same operands as the tile path, read in place: `b`'s panels hold, per pair of `k`, the
//! 32 columns' element pairs (two 64-byte vectors, one `vdpbf16ps` operand each), and an
//! element pair of an `a` row is one 32-bit word, broadcast to the 16 lanes. A micro-kernel
//! keeps an `MR × (16·NV)` block of `c` in registers over the whole of `k`: per pair of `k`,
//! `NV` vector loads of `b`, `MR` broadcasts of `a`, `MR·NV` products.
//!
//! Each product of two bf16 is exact in f32, so every step adds an exact value to the running
//! f32 sum with one rounding: the f32 arithmetic of the fallback up to summation order (and
//! bf16 subnormals, which the instruction reads as zero; the weights and rounded activations
//! of a trained model do not come near 1e-38).

use super::operands::{BfRows, PackedB, NB};
#[cfg(target_arch = "x86_64")]
use super::operands::{A_GROUP_BYTES, KB};
use super::split::{split_columns, Ptr};

/// Whether the CPU has AVX-512 BF16 (and `SMOLT_SIMD` does not cap the SIMD level below
/// AVX-512; `SMOLT_BF16_DOT=0` turns this path off, to compare it with the fallback).
pub(super) fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| smolt_quant::cpu::cpu().bf16_dot && crate::cpu::bf16_available())
}

/// Rows of `c` a micro-kernel holds.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MR: usize = 6;
/// Panels of 32 columns a micro-kernel holds (`NV = 2·NP` vectors per row).
const NP: usize = 2;

/// `c (m, n) (+)= a · b` with `c`'s rows `ldc ≥ n` apart. Caller: [`available`] holds, and
/// `a.k == b.k`, `c.len() ≥ (m − 1)·ldc + n`, `m, n > 0`.
pub(super) fn gemm(
    a: &BfRows,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(available(), "no AVX-512 BF16 here");
    assert_eq!(a.kp, b.kp);
    assert!(a.m > 0 && b.n > 0 && ldc >= b.n && c.len() >= (a.m - 1) * ldc + b.n);
    let panels = b.n.div_ceil(NB);
    let ptr = Ptr(c.as_mut_ptr());
    let run = |p0: usize, p1: usize| {
        // SAFETY: `available()` (asserted above) means AVX-512F and AVX-512 BF16 exist;
        // the shapes were asserted above; this task writes only panels p0..p1 of `c`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::panels(a, b, ptr.get(), ldc, accumulate, p0, p1)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no AVX-512 off x86-64 {p0} {p1} {:?} {accumulate}",
            ptr.get()
        )
    };
    // Units of two panels, the micro-kernel's width.
    split_columns(panels.div_ceil(NP), parallel, a.m * b.n * a.k, |q0, q1| {
        run(q0 * NP, (q1 * NP).min(panels))
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Panels `p0..p1` (of 32 columns) of `c`, all rows: row groups whose `a` rows stay in
    /// L2 while the panels pass over them, then `NP` panels at a time (the last one alone if
    /// it is odd), `MR` rows at a time.
    ///
    /// # Safety
    /// AVX-512F and AVX-512 BF16 on this CPU; `a`, `b` as built by their constructors with
    /// `a.kp == b.kp`; `c` points at `m` rows of `n ≤ ldc` writable f32, `ldc` apart, that
    /// nothing else touches in these panels.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn panels(
        a: &BfRows,
        b: &PackedB,
        c: *mut f32,
        ldc: usize,
        acc: bool,
        p0: usize,
        p1: usize,
    ) {
        let (m, n, kp) = (a.m, b.n, a.kp);
        let steps = kp / KB;
        // u32 (element pairs) per 32-column panel of b.
        let panel_words = kp / 2 * NB;
        let group = ((A_GROUP_BYTES / (kp * 2)).max(MR) / MR) * MR;
        let a_words = a.data.as_ptr() as *const u32;
        let b_words = b.data.as_ptr() as *const u32;
        for g0 in (0..m).step_by(group) {
            let g1 = (g0 + group).min(m);
            let mut p = p0;
            while p < p1 {
                let np = if p + NP <= p1 { NP } else { 1 };
                let col = p * NB;
                let cols = (n - col).min(np * NB);
                let bp = b_words.add(p * panel_words);
                for r in (g0..g1).step_by(MR) {
                    let rows = (g1 - r).min(MR);
                    // Row r + i's first pair: 16-row block (r+i)/16, row (r+i)%16 of its
                    // first tile. Rows past m (within or past a's padding) repeat row r,
                    // whose sums are computed and not stored.
                    let mut ap = [a_words; MR];
                    for (i, p) in ap.iter_mut().enumerate() {
                        let row = if i < rows { r + i } else { r };
                        *p = a_words.add((row / 16) * steps * 256 + (row % 16) * 16);
                    }
                    let cp = c.add(r * ldc + col);
                    if np == NP {
                        micro::<{ 2 * NP }>(ap, bp, panel_words, steps, cp, ldc, rows, cols, acc);
                    } else {
                        micro::<2>(ap, bp, panel_words, steps, cp, ldc, rows, cols, acc);
                    }
                }
                p += np;
            }
        }
    }

    /// One `MR × 16·NV` block: `c[i][j] (+)= Σ_q a_i[q] · b[q][j]` over all `steps · 16`
    /// pairs `q`, kept in `MR · NV` registers.
    ///
    /// # Safety
    /// AVX-512F and AVX-512 BF16; `a[i]` points at a row's first element pair in a
    /// `BfRows` tile layout with `steps` tiles per 16-row block (pair `q` of that row at
    /// `+ (q/16)·256 + q%16` words); `b` at a panel's first pair row, with `NV/2` panels
    /// `panel_words` apart, each `steps·16` pair rows of 32 words; `c` at `rows ≤ MR` rows of
    /// `cols ≤ 16·NV` writable f32, `ldc` apart.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro<const NV: usize>(
        a: [*const u32; MR],
        b: *const u32,
        panel_words: usize,
        steps: usize,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        acc: bool,
    ) {
        // Lanes of vector v that hold real columns of c.
        let mask = |v: usize| -> __mmask16 {
            let live = cols.saturating_sub(v * 16).min(16);
            ((1u32 << live) - 1) as __mmask16
        };
        let mut sum = [[_mm512_setzero_ps(); NV]; MR];
        if acc {
            for (i, row) in sum.iter_mut().enumerate().take(rows) {
                for (v, s) in row.iter_mut().enumerate() {
                    *s = _mm512_maskz_loadu_ps(mask(v), c.wrapping_add(i * ldc + v * 16));
                }
            }
        }
        for s in 0..steps {
            for p in 0..16 {
                let q = s * 16 + p;
                let mut bv = [_mm512_setzero_si512(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_loadu_si512(
                        b.add((v / 2) * panel_words + q * 32 + (v % 2) * 16) as *const __m512i
                    );
                }
                for i in 0..MR {
                    let pair = a[i].add(s * 256 + p).read_unaligned();
                    let av = _mm512_set1_epi32(pair as i32);
                    for v in 0..NV {
                        // SAFETY (transmutes): __m512i and __m512bh are both 64 bytes of
                        // plain lanes; the reinterpretation is the bf16 pairs they hold.
                        sum[i][v] = _mm512_dpbf16_ps(
                            sum[i][v],
                            std::mem::transmute::<__m512i, __m512bh>(av),
                            std::mem::transmute::<__m512i, __m512bh>(bv[v]),
                        );
                    }
                }
            }
        }
        for (i, row) in sum.iter().enumerate().take(rows) {
            for (v, s) in row.iter().enumerate() {
                // A vector past `cols` has an empty mask: no access, so its address may
                // lie past c (hence `wrapping_add`).
                _mm512_mask_storeu_ps(c.wrapping_add(i * ldc + v * 16), mask(v), *s);
            }
        }
    }
}
