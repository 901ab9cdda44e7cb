//! aarch64 NEON dot-product kernels for the formats the default models decode with (Q8_0,
//! Q4_0, Q5_0 against Q8_0 activations; Q4_K, Q6_K against Q8_K), in two builds: plain NEON
//! (16 signed 8-bit products widened by `smull`, pair-summed into 32 bits by `sadalp`) and,
//! where the CPU has the dot-product extension, `sdot` (four 8-bit products per 32-bit lane in
//! one instruction).
//!
//! Every kernel forms each block's (or super-block's) integer sum exactly — integer addition
//! does not depend on order — and then applies the float scales in the scalar kernels' order,
//! one block after another, so both builds agree with the scalar table bit for bit, for the
//! 32-element formats too (the x86 tables keep a float accumulator per lane for those and
//! agree only to rounding).

use std::arch::aarch64::*;

use super::table::{Kernels, SCALAR};
use crate::cpu::{self, SimdPath};
use crate::kquants::{scale_min_k4, Q4_K_BYTES, Q6_K_BYTES, Q8_K_BYTES};
use crate::legacy::{Q4_0_BYTES, Q5_0_BYTES, Q8_0_BYTES};

/// The NEON table where the CPU has NEON ([`cpu::supports`]): the `sdot` build where it also
/// has the dot-product extension.
pub(super) fn table() -> Option<&'static Kernels> {
    let c = cpu::cpu();
    c.features
        .supports(SimdPath::Neon)
        .then_some(if c.features.dotprod { &NEON_DOT } else { &NEON })
}

static NEON: Kernels = Kernels {
    path: SimdPath::Neon,
    q4_0: plain::dot_q4_0,
    q5_0: plain::dot_q5_0,
    q8_0: plain::dot_q8_0,
    q4_k: plain::dot_q4_k,
    q6_k: plain::dot_q6_k,
    ..SCALAR
};

static NEON_DOT: Kernels = Kernels {
    path: SimdPath::Neon,
    q4_0: sdot::dot_q4_0,
    q5_0: sdot::dot_q5_0,
    q8_0: sdot::dot_q8_0,
    q4_k: sdot::dot_q4_k,
    q6_k: sdot::dot_q6_k,
    ..SCALAR
};

/// Wraps each generic kernel body in a `DotFn` compiled for `$features`, with `DOT` telling
/// the body whether it may use `sdot`. The functions are only reachable through `table()`.
macro_rules! build {
    ($module:ident, $features:literal, $dot:literal, $doc:literal) => {
        #[doc = $doc]
        pub(super) mod $module {
            use super::*;

            macro_rules! checked {
                ($name:ident, $body:ident, $wb:expr, $ab:expr) => {
                    pub(crate) fn $name(nb: usize, w: &[u8], a: &[u8]) -> f32 {
                        assert!(
                            w.len() >= nb * $wb && a.len() >= nb * $ab,
                            "dot kernel: short buffer"
                        );
                        #[target_feature(enable = $features)]
                        unsafe fn inner(nb: usize, w: *const u8, a: *const u8) -> f32 {
                            $body::<$dot>(nb, w, a)
                        }
                        // SAFETY: reachable only through `table()`, which checked that the
                        // CPU has every feature `inner` is compiled for; the assert above
                        // keeps every block load of the body inside `w` and `a`.
                        unsafe { inner(nb, w.as_ptr(), a.as_ptr()) }
                    }
                };
            }

            checked!(dot_q8_0, q8_0_q8_0, Q8_0_BYTES, Q8_0_BYTES);
            checked!(dot_q4_0, q4_0_q8_0, Q4_0_BYTES, Q8_0_BYTES);
            checked!(dot_q5_0, q5_0_q8_0, Q5_0_BYTES, Q8_0_BYTES);
            checked!(dot_q4_k, q4_k_q8_k, Q4_K_BYTES, Q8_K_BYTES);
            checked!(dot_q6_k, q6_k_q8_k, Q6_K_BYTES, Q8_K_BYTES);
        }
    };
}

build!(plain, "neon", false, "Plain NEON (`smull` + `sadalp`).");
build!(
    sdot,
    "neon,dotprod",
    true,
    "NEON with the dot-product extension (`sdot`)."
);

/// `acc` + the 16 products `a·b`, summed in groups of four into the four lanes (exact).
#[inline(always)]
unsafe fn dot16<const DOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if DOT {
        let mut r = acc;
        // SAFETY (of the caller's contract): only inlined into the `sdot` build, whose
        // functions are compiled with `dotprod` and reached only where the CPU has it.
        // `sdot` reads two vector registers and accumulates into a third; no memory.
        std::arch::asm!(
            "sdot {r:v}.4s, {a:v}.16b, {b:v}.16b",
            r = inout(vreg) r,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        r
    } else {
        // Each i8·i8 product fits i16 (|·| ≤ 2¹⁴); pairs of them are added into i32 lanes.
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// Four f16 values widened to f32 by `fcvtl` (base Advanced SIMD: every aarch64 CPU has it,
/// the half-precision arithmetic extension is not needed). Exact, as every f16 is an f32, so
/// equal to [`crate::float::f16_to_f32`] bit for bit except that a signalling NaN comes out quiet; block
/// scales are never NaN. Replaces a dozen integer instructions per scale: measured under
/// qemu, the per-block scale conversions were half of a Q8_0 block's instructions.
#[inline(always)]
unsafe fn widen_f16x4(h: uint16x4_t) -> float32x4_t {
    let r: float32x4_t;
    // SAFETY: a register-to-register conversion of the baseline ISA; no memory, no flags.
    std::arch::asm!(
        "fcvtl {r:v}.4s, {h:v}.4h",
        r = lateout(vreg) r,
        h = in(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    r
}

/// The little-endian f16 at `p`, as f32 ([`widen_f16x4`] on one lane).
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = u16::from_le_bytes(*(p as *const [u8; 2]));
    vgetq_lane_f32::<0>(widen_f16x4(vdup_n_u16(h)))
}

/// The f16 scales at the start of four blocks, as f32.
#[inline(always)]
unsafe fn f16_at4(p: [*const u8; 4]) -> float32x4_t {
    let h = p.map(|p| u16::from_le_bytes(*(p as *const [u8; 2])));
    widen_f16x4(vld1_u16(h.as_ptr()))
}

/// Σ over `nb` blocks of `isum(w block, a block)` (an exact integer sum, spread over four
/// lanes) × (w's f16 scale × a's f16 scale), with each block's term formed and added in block
/// order exactly as the scalar kernels do. Four blocks at a time share one lane reduction
/// (`addp`) and one scale conversion; `w` blocks are `wb` bytes, `a` blocks Q8_0.
#[inline(always)]
unsafe fn sum_32_blocks(
    nb: usize,
    w: *const u8,
    wb: usize,
    a: *const u8,
    isum: impl Fn(*const u8, *const u8) -> int32x4_t,
) -> f32 {
    let mut sumf = 0.0f32;
    let mut i = 0;
    while i + 4 <= nb {
        let bw: [*const u8; 4] = std::array::from_fn(|j| w.add((i + j) * wb));
        let ba: [*const u8; 4] = std::array::from_fn(|j| a.add((i + j) * Q8_0_BYTES));
        let s = vpaddq_s32(
            vpaddq_s32(isum(bw[0], ba[0]), isum(bw[1], ba[1])),
            vpaddq_s32(isum(bw[2], ba[2]), isum(bw[3], ba[3])),
        );
        // Lane j: block i+j's sum as f32 times (its w scale × its a scale), the scalar order.
        let t = vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(f16_at4(bw), f16_at4(ba)));
        sumf += vgetq_lane_f32::<0>(t);
        sumf += vgetq_lane_f32::<1>(t);
        sumf += vgetq_lane_f32::<2>(t);
        sumf += vgetq_lane_f32::<3>(t);
        i += 4;
    }
    for i in i..nb {
        let (bw, ba) = (w.add(i * wb), a.add(i * Q8_0_BYTES));
        sumf += vaddvq_s32(isum(bw, ba)) as f32 * (f16_at(bw) * f16_at(ba));
    }
    sumf
}

#[inline(always)]
unsafe fn load_i8(p: *const u8) -> int8x16_t {
    vld1q_s8(p as *const i8)
}

/// The 32 quants of a 16-byte nibble block in GGML order: low nibbles (elements 0..16), then
/// high nibbles (16..32).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let b = vld1q_u8(p);
    (vandq_u8(b, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(b))
}

/// The 32 quants of weight block `bw` of format `BITS` (0 = Q8_0) as signed bytes:
/// elements 0..16, then 16..32, as the one-row kernels and the i8mm kernel feed them.
#[inline(always)]
unsafe fn quants<const BITS: u8>(bw: *const u8) -> (int8x16_t, int8x16_t) {
    match BITS {
        0 => (load_i8(bw.add(2)), load_i8(bw.add(18))),
        4 => {
            let (lo, hi) = nibbles(bw.add(2));
            let eight = vdupq_n_s8(8);
            (
                vsubq_s8(vreinterpretq_s8_u8(lo), eight),
                vsubq_s8(vreinterpretq_s8_u8(hi), eight),
            )
        }
        _ => {
            let qh = u32::from_le_bytes(*(bw.add(2) as *const [u8; 4]));
            let (lo, hi) = nibbles(bw.add(6));
            let lo = vorrq_u8(lo, fifth_bits(qh as u16));
            let hi = vorrq_u8(hi, fifth_bits((qh >> 16) as u16));
            let sixteen = vdupq_n_s8(16);
            (
                vsubq_s8(vreinterpretq_s8_u8(lo), sixteen),
                vsubq_s8(vreinterpretq_s8_u8(hi), sixteen),
            )
        }
    }
}

/// 16 bits of `bits` (lane j ← bit j) as 0x10 where set, else 0.
#[inline(always)]
unsafe fn fifth_bits(bits: u16) -> uint8x16_t {
    const MASKS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bytes = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    let set = vtstq_u8(bytes, vld1q_u8(MASKS.as_ptr()));
    vandq_u8(set, vdupq_n_u8(0x10))
}

/// One-row kernel of the 32-element formats: `BITS` as in [`quants`].
#[inline(always)]
unsafe fn legacy_q8_0<const DOT: bool, const BITS: u8>(
    nb: usize,
    w: *const u8,
    wb: usize,
    a: *const u8,
) -> f32 {
    sum_32_blocks(nb, w, wb, a, |bw, ba| {
        let (lo, hi) = quants::<BITS>(bw);
        let s = dot16::<DOT>(vdupq_n_s32(0), lo, load_i8(ba.add(2)));
        dot16::<DOT>(s, hi, load_i8(ba.add(18)))
    })
}

#[inline(always)]
unsafe fn q8_0_q8_0<const DOT: bool>(nb: usize, w: *const u8, a: *const u8) -> f32 {
    legacy_q8_0::<DOT, 0>(nb, w, Q8_0_BYTES, a)
}

#[inline(always)]
unsafe fn q4_0_q8_0<const DOT: bool>(nb: usize, w: *const u8, a: *const u8) -> f32 {
    legacy_q8_0::<DOT, 4>(nb, w, Q4_0_BYTES, a)
}

#[inline(always)]
unsafe fn q5_0_q8_0<const DOT: bool>(nb: usize, w: *const u8, a: *const u8) -> f32 {
    legacy_q8_0::<DOT, 5>(nb, w, Q5_0_BYTES, a)
}

#[inline(always)]
unsafe fn q4_k_q8_k<const DOT: bool>(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let (bw, ba) = (w.add(i * Q4_K_BYTES), a.add(i * Q8_K_BYTES));
        let scales = &*(bw.add(4) as *const [u8; 12]);
        let bs = |k: usize| i16::from_le_bytes(*(ba.add(260 + 2 * k) as *const [u8; 2])) as i32;
        let mut summs = 0i32;
        let mut isum = vdupq_n_s32(0);
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            summs += m1 as i32 * (bs(4 * j) + bs(4 * j + 1))
                + m2 as i32 * (bs(4 * j + 2) + bs(4 * j + 3));
            let q = bw.add(16 + 32 * j);
            let qa = ba.add(4 + 64 * j);
            let (l0, h0) = nibbles(q);
            let (l1, h1) = nibbles(q.add(16));
            let z = vdupq_n_s32(0);
            let s1 = dot16::<DOT>(z, vreinterpretq_s8_u8(l0), load_i8(qa));
            let s1 = dot16::<DOT>(s1, vreinterpretq_s8_u8(l1), load_i8(qa.add(16)));
            let s2 = dot16::<DOT>(z, vreinterpretq_s8_u8(h0), load_i8(qa.add(32)));
            let s2 = dot16::<DOT>(s2, vreinterpretq_s8_u8(h1), load_i8(qa.add(48)));
            isum = vmlaq_n_s32(isum, s1, sc1 as i32);
            isum = vmlaq_n_s32(isum, s2, sc2 as i32);
        }
        let da = f32::from_le_bytes(*(ba as *const [u8; 4]));
        let d = f16_at(bw) * da;
        let dmin = f16_at(bw.add(2)) * da;
        sumf += d * vaddvq_s32(isum) as f32 - dmin * summs as f32;
    }
    sumf
}

#[inline(always)]
unsafe fn q6_k_q8_k<const DOT: bool>(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let m4 = vdupq_n_u8(0x0f);
    let m2 = vdupq_n_u8(0x03);
    let off = vdupq_n_s8(32);
    let mut sumf = 0.0f32;
    for i in 0..nb {
        let (bw, ba) = (w.add(i * Q6_K_BYTES), a.add(i * Q8_K_BYTES));
        let sc = bw.add(192) as *const i8;
        let mut isum = vdupq_n_s32(0);
        for n in 0..2 {
            // 16 columns at a time: element c of group g (32 wide) of this half.
            for h in 0..2 {
                let ql0 = vld1q_u8(bw.add(64 * n + 16 * h));
                let ql1 = vld1q_u8(bw.add(64 * n + 32 + 16 * h));
                let qh = vld1q_u8(bw.add(128 + 32 * n + 16 * h));
                let q = [
                    vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8::<4>(vandq_u8(qh, m2))),
                    vorrq_u8(
                        vandq_u8(ql1, m4),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh), m2)),
                    ),
                    vorrq_u8(
                        vshrq_n_u8::<4>(ql0),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh), m2)),
                    ),
                    vorrq_u8(vshrq_n_u8::<4>(ql1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh))),
                ];
                for (g, &qg) in q.iter().enumerate() {
                    let qw = vsubq_s8(vreinterpretq_s8_u8(qg), off);
                    let qa = load_i8(ba.add(4 + 128 * n + 32 * g + 16 * h));
                    let s = dot16::<DOT>(vdupq_n_s32(0), qw, qa);
                    isum = vmlaq_n_s32(isum, s, *sc.add(8 * n + 2 * g + h) as i32);
                }
            }
        }
        let da = f32::from_le_bytes(*(ba as *const [u8; 4]));
        sumf += (f16_at(bw.add(208)) * da) * vaddvq_s32(isum) as f32;
    }
    sumf
}

/// Two weight rows × two activation rows at once for the 32-element formats (Q8_0, Q4_0,
/// Q5_0 against Q8_0), with `smmla` from the 8-bit matrix-multiply extension (i8mm): one
/// instruction multiplies a 2×8 slice of the weight pair by an 8×2 slice of the activation
/// pair, so a block takes four for four outputs where `sdot` takes two for one, and a weight
/// block is unpacked once for up to eight activation rows. The outputs' block sums are exact and each is scaled and added in block order as the scalar
/// kernels do, so every output equals the one-row kernels' bit for bit (and so `matmul_q`'s
/// results do not depend on which runs). Used by `matmul_q` for prefill and training where
/// the CPU has i8mm ([`crate::cpu::Cpu::neon_i8mm`]).
pub(crate) mod mmla {
    use super::*;
    use crate::GgmlType;

    /// Whether [`dot_2x2`] runs here for weights of `ty`.
    pub(crate) fn supports(ty: GgmlType) -> bool {
        cpu::cpu().neon_i8mm() && matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0)
    }

    /// For each pair `p` of activation rows `a[p] = [a0, a1]`: `[w0·a0, w0·a1, w1·a0, w1·a1]`
    /// over `nb` blocks of weights of `ty` (the rows `w0`, `w1`) and Q8_0 activations. Up to
    /// four pairs share each weight block's unpacking. Panics unless [`supports`]`(ty)`,
    /// `a` holds 1 to 4 pairs, and every slice holds `nb` blocks.
    pub(crate) fn dot_2x2(
        ty: GgmlType,
        nb: usize,
        w: [&[u8]; 2],
        a: &[[&[u8]; 2]],
        out: &mut [[f32; 4]],
    ) {
        assert!(supports(ty), "dot_2x2: {ty:?} or i8mm unavailable");
        assert!(
            (1..=4).contains(&a.len()) && out.len() == a.len(),
            "dot_2x2: 1 to 4 activation pairs, one output each"
        );
        let wb = match ty {
            GgmlType::Q8_0 => Q8_0_BYTES,
            GgmlType::Q4_0 => Q4_0_BYTES,
            _ => Q5_0_BYTES,
        };
        assert!(
            w.iter().all(|r| r.len() >= nb * wb)
                && a.iter().flatten().all(|r| r.len() >= nb * Q8_0_BYTES),
            "dot_2x2: short buffer"
        );
        let w = w.map(<[u8]>::as_ptr);
        let mut ap = [[std::ptr::null::<u8>(); 2]; 4];
        for (d, s) in ap.iter_mut().zip(a) {
            *d = s.map(<[u8]>::as_ptr);
        }
        macro_rules! run {
            ($bits:literal) => {
                // SAFETY: `supports` checked that the CPU has NEON and i8mm, the features
                // `inner` is compiled for; the asserts keep every block load inside the
                // slices, and `inner` reads only the first `P` pairs, all of them set.
                unsafe {
                    match a.len() {
                        1 => out.copy_from_slice(&inner::<$bits, 1>(nb, w, &ap, wb)),
                        2 => out.copy_from_slice(&inner::<$bits, 2>(nb, w, &ap, wb)),
                        3 => out.copy_from_slice(&inner::<$bits, 3>(nb, w, &ap, wb)),
                        _ => out.copy_from_slice(&inner::<$bits, 4>(nb, w, &ap, wb)),
                    }
                }
            };
        }
        match ty {
            GgmlType::Q8_0 => run!(0),
            GgmlType::Q4_0 => run!(4),
            _ => run!(5),
        }
    }

    /// `acc` (a 2×2 i32 matrix, row-major) + the 2×8 matrix `n` times the transpose of the
    /// 2×8 matrix `m` (exact).
    #[inline(always)]
    unsafe fn smmla(acc: int32x4_t, n: int8x16_t, m: int8x16_t) -> int32x4_t {
        let mut r = acc;
        // SAFETY (of the caller's contract): only inlined into `inner`, compiled with i8mm
        // and reached only where the CPU has it. Registers only, no memory.
        std::arch::asm!(
            "smmla {r:v}.4s, {n:v}.16b, {m:v}.16b",
            r = inout(vreg) r,
            n = in(vreg) n,
            m = in(vreg) m,
            options(pure, nomem, nostack, preserves_flags)
        );
        r
    }

    /// Rows `p` and `q` interleaved by 8 bytes: `(p[0..8] q[0..8], p[8..16] q[8..16])`, the
    /// 2×8 operands of two `smmla`s.
    #[inline(always)]
    unsafe fn pair(p: int8x16_t, q: int8x16_t) -> (int8x16_t, int8x16_t) {
        let (p, q) = (vreinterpretq_s64_s8(p), vreinterpretq_s64_s8(q));
        (
            vreinterpretq_s8_s64(vzip1q_s64(p, q)),
            vreinterpretq_s8_s64(vzip2q_s64(p, q)),
        )
    }

    #[target_feature(enable = "neon,i8mm")]
    unsafe fn inner<const BITS: u8, const P: usize>(
        nb: usize,
        w: [*const u8; 2],
        a: &[[*const u8; 2]; 4],
        wb: usize,
    ) -> [[f32; 4]; P] {
        let f16 = |p: *const u8| u16::from_le_bytes(*(p as *const [u8; 2]));
        let mut sum = [vdupq_n_f32(0.0); P];
        for i in 0..nb {
            let (bw0, bw1) = (w[0].add(i * wb), w[1].add(i * wb));
            let (w0l, w0h) = quants::<BITS>(bw0);
            let (w1l, w1h) = quants::<BITS>(bw1);
            let (nl, nh) = (pair(w0l, w1l), pair(w0h, w1h));
            let (hw0, hw1) = (f16(bw0), f16(bw1));
            let dw = widen_f16x4(vld1_u16([hw0, hw0, hw1, hw1].as_ptr()));
            for (p, sum) in sum.iter_mut().enumerate() {
                let (ba0, ba1) = (a[p][0].add(i * Q8_0_BYTES), a[p][1].add(i * Q8_0_BYTES));
                let ml = pair(load_i8(ba0.add(2)), load_i8(ba1.add(2)));
                let mh = pair(load_i8(ba0.add(18)), load_i8(ba1.add(18)));
                let mut acc = smmla(vdupq_n_s32(0), nl.0, ml.0);
                acc = smmla(acc, nl.1, ml.1);
                acc = smmla(acc, nh.0, mh.0);
                acc = smmla(acc, nh.1, mh.1);
                // Lane 2i+j pairs weight row i with activation row j: scale d_wi · d_aj.
                let (ha0, ha1) = (f16(ba0), f16(ba1));
                let da = widen_f16x4(vld1_u16([ha0, ha1, ha0, ha1].as_ptr()));
                *sum = vaddq_f32(*sum, vmulq_f32(vcvtq_f32_s32(acc), vmulq_f32(dw, da)));
            }
        }
        sum.map(|v| {
            let mut out = [0f32; 4];
            vst1q_f32(out.as_mut_ptr(), v);
            out
        })
    }
}

/// Q8_0 activation quantization ([`crate::legacy::quantize_q8_0_scalar`]) with NEON, bit for bit: the
/// block maximum is order-free (`fmaxnm` ignores NaN as `f32::max` does), `fcvtas` rounds half
/// away from zero as `f32::round` does, and `sqxtn` saturates as `as i8` does.
pub(crate) fn quantize_q8_0(src: &[f32], out: &mut [u8]) {
    use crate::float::write_f16;
    use crate::legacy::QK;
    for (x, b) in src.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        // SAFETY: NEON is part of the aarch64 baseline this module is compiled for; `x`
        // holds 32 floats (8 loads of 4) and `b` 34 bytes (2 stores of 16 from offset 2).
        let d = unsafe {
            let p = x.as_ptr();
            let v: [float32x4_t; 8] = std::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
            let mut m = vabsq_f32(v[0]);
            for vk in &v[1..] {
                m = vmaxnmq_f32(m, vabsq_f32(*vk));
            }
            let amax = vmaxnmvq_f32(m);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q = |k: usize| vqmovn_s32(vcvtaq_s32_f32(vmulq_n_f32(v[k], id)));
            for h in 0..2 {
                let lo = vcombine_s16(q(4 * h), q(4 * h + 1));
                let hi = vcombine_s16(q(4 * h + 2), q(4 * h + 3));
                let bytes = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
                vst1q_s8(b.as_mut_ptr().add(2 + 16 * h) as *mut i8, bytes);
            }
            d
        };
        write_f16(b, 0, d);
    }
}

/// Q8_K activation quantization ([`crate::kquantize::quantize_q8_k_scalar`]) with NEON, bit for bit:
/// the signed value of largest magnitude is the first one found (as the scalar scan finds it),
/// `fcvtns` rounds half to even as the scalar `nearest_int` does for these magnitudes (≤ 127),
/// and the sums of 16 quants are exact.
pub(crate) fn quantize_q8_k(src: &[f32], out: &mut [u8]) {
    use crate::kquants::QK_K;
    for (x, y) in src.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8_K_BYTES)) {
        // SAFETY: NEON is baseline here; every load reads `x` (256 floats) in 4-float steps.
        let amax = unsafe {
            let mut m = vdupq_n_f32(0.0);
            for k in 0..QK_K / 4 {
                m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x.as_ptr().add(4 * k))));
            }
            vmaxnmvq_f32(m)
        };
        // The scalar scan keeps the first strictly larger |v|, skipping NaN.
        let max = match x.iter().find(|v| v.abs() == amax) {
            Some(&max) if amax > 0.0 => max,
            _ => {
                y.fill(0);
                continue;
            }
        };
        let iscale = -127.0 / max;
        // SAFETY: NEON is baseline here; the loads read `x` in 4-float steps up to 256, the
        // stores write `y[4..260]` in 16-byte steps and the sums `y[260..292]` are plain.
        unsafe {
            for g in 0..16 {
                let p = x.as_ptr().add(16 * g);
                let q = |k: usize| {
                    vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(p.add(4 * k)), iscale)))
                };
                let lo = vcombine_s16(q(0), q(1));
                let hi = vcombine_s16(q(2), q(3));
                // Every quant is ≥ −127 (|iscale·v| ≤ 127), so only 127 needs the clamp.
                let bytes = vminq_s8(vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)), vdupq_n_s8(127));
                vst1q_s8(y.as_mut_ptr().add(4 + 16 * g) as *mut i8, bytes);
                let sum = vaddlvq_s8(bytes);
                y[260 + 2 * g..262 + 2 * g].copy_from_slice(&sum.to_le_bytes());
            }
        }
        y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: random bytes without a dependency.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// Random bytes with every f16 scale field made a finite value, so sums are comparable.
    fn blocks(seed: u64, nb: usize, size: usize, scale_at: &[usize]) -> Vec<u8> {
        let mut b = bytes(seed, nb * size);
        for blk in b.chunks_exact_mut(size) {
            for &o in scale_at {
                blk[o + 1] &= 0x3b; // exponent < 15: |scale| < 1, never inf or NaN
            }
        }
        b
    }

    /// Q8_K activations: a finite f32 scale in front.
    fn q8k(seed: u64, nb: usize) -> Vec<u8> {
        let mut b = bytes(seed, nb * Q8_K_BYTES);
        for blk in b.chunks_exact_mut(Q8_K_BYTES) {
            blk[..4].copy_from_slice(&0.013f32.to_le_bytes());
        }
        b
    }

    /// Both builds (plain and `sdot`, where the CPU has it) against the scalar table, bit for
    /// bit, for every format they cover (the integration tests cover the active table).
    #[test]
    fn both_builds_equal_scalar_bit_for_bit() {
        if !cpu::cpu().features.neon {
            return;
        }
        let mut tables = vec![&NEON];
        if cpu::cpu().features.dotprod {
            tables.push(&NEON_DOT);
        }
        for seed in 1..30u64 {
            let nb = 1 + (seed as usize % 9);
            // 32-element formats: 8 to 75 blocks, so the four-block loop meets every tail.
            let n32 = nb * 8 + seed as usize % 4;
            let a8 = blocks(seed + 100, n32, Q8_0_BYTES, &[0]);
            let ak = q8k(seed + 200, nb);
            let cases: [(DotFn, Vec<u8>, &[u8], usize); 5] = [
                (SCALAR.q8_0, blocks(seed, n32, Q8_0_BYTES, &[0]), &a8, n32),
                (SCALAR.q4_0, blocks(seed, n32, Q4_0_BYTES, &[0]), &a8, n32),
                (SCALAR.q5_0, blocks(seed, n32, Q5_0_BYTES, &[0]), &a8, n32),
                (SCALAR.q4_k, blocks(seed, nb, Q4_K_BYTES, &[0, 2]), &ak, nb),
                (SCALAR.q6_k, blocks(seed, nb, Q6_K_BYTES, &[208]), &ak, nb),
            ];
            for (c, (scalar, w, a, n)) in cases.iter().enumerate() {
                let want = scalar(*n, w, a);
                for t in &tables {
                    let f = [t.q8_0, t.q4_0, t.q5_0, t.q4_k, t.q6_k][c];
                    let got = f(*n, w, a);
                    assert_eq!(got.to_bits(), want.to_bits(), "case {c} seed {seed}");
                }
            }
        }
    }

    /// The i8mm 2×2 kernel against the scalar one-row kernels, bit for bit, each of its four
    /// outputs, for every 32-element format, block counts 1 to 40 and 1 to 4 activation pairs.
    #[test]
    fn two_by_two_equals_scalar_bit_for_bit() {
        use crate::GgmlType;
        if !cpu::cpu().neon_i8mm() {
            eprintln!("no i8mm on this CPU: nothing to check");
            return;
        }
        for seed in 1..41u64 {
            let nb = seed as usize;
            let a = [
                blocks(seed + 300, nb, Q8_0_BYTES, &[0]),
                blocks(seed + 400, nb, Q8_0_BYTES, &[0]),
                blocks(seed + 600, nb, Q8_0_BYTES, &[0]),
            ];
            for (ty, size, scalar) in [
                (GgmlType::Q8_0, Q8_0_BYTES, SCALAR.q8_0),
                (GgmlType::Q4_0, Q4_0_BYTES, SCALAR.q4_0),
                (GgmlType::Q5_0, Q5_0_BYTES, SCALAR.q5_0),
            ] {
                let w = [
                    blocks(seed, nb, size, &[0]),
                    blocks(seed + 500, nb, size, &[0]),
                ];
                // 1 to 4 activation pairs: rows (p, p+1) of `a`, cycling.
                let pairs = 1 + seed as usize % 4;
                let act: Vec<[&[u8]; 2]> = (0..pairs)
                    .map(|p| [&a[p % 3][..], &a[(p + 1) % 3][..]])
                    .collect();
                let mut got = vec![[0f32; 4]; pairs];
                mmla::dot_2x2(ty, nb, [&w[0], &w[1]], &act, &mut got);
                for (p, got) in got.iter().enumerate() {
                    for (lane, (i, j)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                        let want = scalar(nb, &w[i], act[p][j]);
                        assert_eq!(
                            got[lane].to_bits(),
                            want.to_bits(),
                            "{ty:?} nb {nb} pair {p}: w{i}·a{j} {} vs {want}",
                            got[lane]
                        );
                    }
                }
            }
        }
    }

    /// `fcvtl` widening against the scalar conversion for all 65,536 f16 patterns: the same
    /// bits for every number (subnormals, zeros and infinities included), a NaN for a NaN.
    #[test]
    fn widened_f16_equals_the_scalar_conversion() {
        use crate::float::f16_to_f32;
        for h in 0..=u16::MAX {
            let want = f16_to_f32(h);
            // SAFETY: NEON is part of the aarch64 baseline; the array holds the two bytes read.
            let got = unsafe { f16_at(h.to_le_bytes().as_ptr()) };
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    /// The NEON activation quantizers against the scalar ones, bit for bit, on values of
    /// many magnitudes, ties (±x.5 after scaling), zeros, NaN and a ± maximum pair.
    #[test]
    fn quantizers_equal_scalar_bit_for_bit() {
        for seed in 1..40u64 {
            let raw = bytes(seed, 4 * 512);
            let mut x: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| {
                    let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let unit = (u >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                    unit * 10f32.powi((u % 7) as i32 - 3)
                })
                .collect();
            match seed % 5 {
                0 => x[..256].fill(0.0),
                1 => x[3] = f32::NAN,
                2 => {
                    // Both signs of the largest magnitude, and exact halves after scaling.
                    x[10] = 100.0;
                    x[20] = -100.0;
                    for (i, v) in x[32..64].iter_mut().enumerate() {
                        *v = (i as f32 - 16.0) * 0.5 * 100.0 / 127.0;
                    }
                }
                _ => {}
            }
            let (mut a, mut b) = (vec![0u8; 16 * Q8_0_BYTES], vec![1u8; 16 * Q8_0_BYTES]);
            crate::legacy::quantize_q8_0_scalar(&x, &mut a);
            quantize_q8_0(&x, &mut b);
            assert_eq!(a, b, "q8_0 seed {seed}");
            let (mut a, mut b) = (vec![0u8; 2 * Q8_K_BYTES], vec![1u8; 2 * Q8_K_BYTES]);
            crate::kquantize::quantize_q8_k_scalar(&x, &mut a);
            quantize_q8_k(&x, &mut b);
            assert_eq!(a, b, "q8_k seed {seed}");
        }
    }

    use super::super::table::DotFn;
}
