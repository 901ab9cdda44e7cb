//! bf16 products with f32 accumulation, for the frozen-weight products of training: Intel AMX
//! (`tdpbf16ps`) where the CPU and kernel allow it, f32 gemm over the same bf16 values
//! elsewhere.
//!
//! A product is `c (m, n) (+)= a (m, k) · b (k, n)` with `a` the activations, rounded to bf16
//! per call ([`BfRows`]), and `b` a frozen matrix packed once ([`PackedB`]) in the layout the
//! tile unit reads: element pairs along `k`, `[k/2][n][2]`. A linear layer `W (out, in)` needs
//! two packings, one per direction:
//!
//! ```text
//! forward:   y (T, out) = x (T, in) · Wᵀ      b = PackedB::from_rows_transposed(W)   (k = in)
//! backward:  dx (T, in) += dy (T, out) · W    b = PackedB::from_rows(W)              (k = out)
//! ```
//!
//! Every element is rounded once to bf16 (8 significant bits) and the products are summed in
//! f32, so a product is the f32 product of the rounded operands up to summation order; the
//! fallback computes exactly that with the `gemm` crate, and the tests hold the AMX path to it.

use crate::matmul::gemm_strided;
use crate::simd::multiversion;
use crate::Float;
use rayon::prelude::*;

/// bf16 conversions: smolt-quant's, the ones the GGUF BF16 format already uses (round to
/// nearest even, NaN kept quiet; widening exact).
pub use smolt_quant::{bf16_to_f32, f32_to_bf16};

multiversion! {
    /// `dst = bf16(src · scale)`, branch-free so that it vectorises (called with `F = f32`).
    fn round_into<F: Float>(src: &[F], dst: &mut [u16], scale: F) {
        for (d, &v) in dst.iter_mut().zip(src) {
            let u = ((v * scale).to_f64() as f32).to_bits();
            let rounded = (u + (0x7fff + ((u >> 16) & 1))) >> 16;
            let nan = (u & 0x7fff_ffff) > 0x7f80_0000;
            *d = if nan { (u >> 16) | 64 } else { rounded } as u16;
        }
    }
}

/// Rows of the AMX blocks: `m` is processed 32 rows at a time.
const MB: usize = 32;
/// Columns of the AMX blocks.
const NB: usize = 32;
/// `k` per tile step (32 bf16 = one 64-byte tile row).
const KB: usize = 32;

/// Activations `(m, k)` rounded to bf16, in the tile unit's order: blocks of 16 rows × 32
/// columns (one 1 KB tile, rows contiguous), row blocks outermost. Rows are padded with zeros
/// to a multiple of 32 and columns to a multiple of 32.
pub struct BfRows {
    pub m: usize,
    pub k: usize,
    /// `k` rounded up to 32.
    kp: usize,
    data: Vec<u16>,
}

impl BfRows {
    /// `x (m, k)` rounded to bf16, each element times `scale`.
    pub fn from_f32(x: &[f32], m: usize, k: usize, scale: f32) -> BfRows {
        assert_eq!(x.len(), m * k, "x is not (m, k)");
        let kp = k.next_multiple_of(KB);
        let mut data = vec![0u16; m.next_multiple_of(MB) * kp];
        // One 16-row block per task: 16·kp contiguous elements.
        let work = |(rb, d): (usize, &mut [u16])| {
            for i in 0..16 {
                let r = rb * 16 + i;
                if r >= m {
                    break;
                }
                let xr = &x[r * k..][..k];
                for (s, xs) in xr.chunks(KB).enumerate() {
                    round_into::<f32>(xs, &mut d[s * 512 + i * 32..][..xs.len()], scale);
                }
            }
        };
        if m * k >= 1 << 16 {
            data.par_chunks_mut(16 * kp).enumerate().for_each(work);
        } else {
            data.chunks_mut(16 * kp).enumerate().for_each(work);
        }
        BfRows { m, k, kp, data }
    }

    fn at(&self, r: usize, c: usize) -> u16 {
        self.data[((r / 16) * (self.kp / KB) + c / KB) * 512 + (r % 16) * 32 + c % KB]
    }

    /// Row `i` as f32 (exact).
    pub fn row_f32(&self, i: usize) -> Vec<f32> {
        (0..self.k).map(|c| bf16_to_f32(self.at(i, c))).collect()
    }
}

/// A frozen `(k, n)` matrix in bf16, packed for the tile unit: pairs along `k`, 32 columns
/// per panel, panels outermost (`[n/32][k/2][32][2]`), so one panel's tiles are contiguous.
/// `k` and `n` are padded with zeros to multiples of 32.
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    /// `k` rounded up to 32.
    kp: usize,
    data: Vec<u16>,
}

impl PackedB {
    fn zeroed(k: usize, n: usize) -> PackedB {
        let kp = k.next_multiple_of(KB);
        PackedB {
            k,
            n,
            kp,
            data: vec![0u16; n.next_multiple_of(NB) * kp],
        }
    }

    #[inline(always)]
    fn idx(kp: usize, i: usize, j: usize) -> usize {
        ((j / NB) * (kp / 2) + i / 2) * 2 * NB + (j % NB) * 2 + i % 2
    }

    /// `b = W` for `W (rows, cols)` given row by row (`k = rows`, `n = cols`): the backward
    /// product `dy · W`. `row(i, out)` fills `out` (`cols`) with row `i` of `W`.
    pub fn from_rows(rows: usize, cols: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> PackedB {
        let mut b = PackedB::zeroed(rows, cols);
        let kp = b.kp;
        // A task per panel of 32 columns: it decodes all rows, so decode 32 rows at a time
        // once and scatter them into every panel instead, serially per 32-row slab.
        let mut slab = vec![0f32; KB * cols];
        for i0 in (0..rows).step_by(KB) {
            let i1 = (i0 + KB).min(rows);
            slab[..(i1 - i0) * cols]
                .par_chunks_mut(cols)
                .enumerate()
                .for_each(|(di, out)| row(i0 + di, out));
            let slab = &slab;
            b.data
                .par_chunks_mut(kp * NB)
                .enumerate()
                .for_each(|(jb, panel)| {
                    for i in i0..i1 {
                        for j in jb * NB..((jb + 1) * NB).min(cols) {
                            panel[PackedB::idx(kp, i, j - jb * NB)] =
                                f32_to_bf16(slab[(i - i0) * cols + j]);
                        }
                    }
                });
        }
        b
    }

    /// `b = Wᵀ` for `W (rows, cols)` given as a dense f32 slice (`k = cols`, `n = rows`): the
    /// forward product `x · Wᵀ`.
    pub fn from_rows_transposed(w: &[f32], rows: usize, cols: usize) -> PackedB {
        assert_eq!(w.len(), rows * cols, "w is not (rows, cols)");
        let mut b = PackedB::zeroed(cols, rows);
        let kp = b.kp;
        b.data
            .par_chunks_mut(kp * NB)
            .enumerate()
            .for_each(|(jb, panel)| {
                for j in jb * NB..((jb + 1) * NB).min(rows) {
                    let wr = &w[j * cols..][..cols];
                    for (i, &v) in wr.iter().enumerate() {
                        panel[PackedB::idx(kp, i, j - jb * NB)] = f32_to_bf16(v);
                    }
                }
            });
        b
    }

    /// Element `(i, j)` as f32 (exact).
    pub fn get(&self, i: usize, j: usize) -> f32 {
        bf16_to_f32(self.data[PackedB::idx(self.kp, i, j)])
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// The whole matrix as f32 `(k, n)` row-major: the fallback's operand.
    fn unpack(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        out.par_chunks_mut(self.n).enumerate().for_each(|(i, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.get(i, j);
            }
        });
        out
    }
}

/// Whether products will run on AMX tiles (CPU, kernel and `SMOLT_AMX` permitting).
pub fn amx_enabled() -> bool {
    amx::available()
}

/// `c (m, n) (+)= a (m, k) · b (k, n)` in bf16 with f32 accumulation; `accumulate` adds to
/// `c` instead of overwriting it. `parallel` lets it split the columns over rayon's pool.
pub fn gemm_bf16(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.m, a.k, b.n);
    assert_eq!(b.k, k, "a is (m, {k}) but b is ({}, n)", b.k);
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    if m == 0 || n == 0 {
        return;
    }
    if amx::available() && k > 0 {
        amx::gemm(a, b, c, accumulate, parallel);
    } else {
        gemm_fallback(a, b, c, accumulate, parallel);
    }
}

/// The reference arithmetic: the bf16 operands widened to f32, f32 gemm.
pub fn gemm_fallback(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.m, a.k, b.n);
    let af: Vec<f32> = (0..m).flat_map(|i| a.row_f32(i)).collect();
    let bf = b.unpack();
    gemm_strided(parallel, m, n, k, c, accumulate, &af, (k, 1), &bf, (n, 1));
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use super::*;
    use std::arch::asm;
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    use std::sync::OnceLock;

    /// AMX-TILE and AMX-BF16 in CPUID, the tile state granted by the kernel
    /// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) and enabled in XCR0; `SMOLT_AMX=0` turns it off.
    pub(super) fn available() -> bool {
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

    /// Palette 1, eight tiles of 16 rows × 64 bytes: tmm0..3 the 2 × 2 C tiles (16 × 16
    /// f32), tmm4/5 the two A tiles (16 rows × 32 bf16), tmm6/7 the two B tiles (16 pair
    /// rows × 16 columns).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    fn config() -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = 16;
        }
        Config(c)
    }

    #[derive(Clone, Copy)]
    struct Ptr(*mut f32);
    // SAFETY: the pointer is only used to write disjoint column blocks of `c` from the
    // tasks of one `gemm` call, which `c`'s exclusive borrow outlives.
    unsafe impl Send for Ptr {}
    unsafe impl Sync for Ptr {}

    impl Ptr {
        /// A method, so closures capture the whole `Ptr` (Send) and not its raw field.
        fn get(self) -> *mut f32 {
            self.0
        }
    }

    pub(super) fn gemm(a: &BfRows, b: &PackedB, c: &mut [f32], accumulate: bool, parallel: bool) {
        let n_blocks = b.n.div_ceil(NB);
        let ptr = Ptr(c.as_mut_ptr());
        let run = |j0: usize, j1: usize| {
            // SAFETY: `available()` (checked by the caller) means the tile state is granted
            // and AMX-BF16 exists; shapes: k % 32 == 0 and n % 32 == 0 (checked by the
            // caller), `a` holds m rounded up to 32 rows of k, `b` holds k/2 rows of 2n, and
            // `c` is (m, n); this task writes only its column blocks j0..j1.
            unsafe { blocks(a, b, ptr.get(), accumulate, j0, j1) }
        };
        let tasks = if parallel && rayon::current_num_threads() > 1 && a.m * b.n * a.k >= 1 << 20 {
            (2 * rayon::current_num_threads()).min(n_blocks)
        } else {
            1
        };
        if tasks <= 1 {
            run(0, n_blocks);
        } else {
            (0..tasks)
                .into_par_iter()
                .for_each(|t| run(t * n_blocks / tasks, (t + 1) * n_blocks / tasks));
        }
    }

    #[repr(C, align(64))]
    struct Tail([f32; MB * NB]);

    /// Column blocks `j0..j1` (of 32) of `c (m, n)`, all rows.
    ///
    /// # Safety
    /// AMX-BF16 usable in this process (`available()`); `a` and `b` as built by their
    /// constructors with `a.k == b.k` (so both hold `kp` padded columns/rows, `a` whole
    /// 32-row blocks, `b` whole 32-column panels); `c` points at `m * n` writable f32 that
    /// nothing else touches in these column blocks.
    unsafe fn blocks(a: &BfRows, b: &PackedB, c: *mut f32, acc: bool, j0: usize, j1: usize) {
        let (m, n, kp) = (a.m, b.n, a.kp);
        let steps = kp / KB;
        let cfg = config();
        asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        let sc = n * 4;
        let mut tail = Tail([0.0; MB * NB]);
        for jb in j0..j1 {
            let col = jb * NB;
            let mut r = 0;
            while r < m {
                // Whole block in place: all 32 rows and 32 columns inside c.
                let full = r + MB <= m && col + NB <= n;
                // Where the C block lives for the tile loads/stores: in place for a full
                // block, else in `tail` (rows ≥ m are scratch).
                let (cp, stride) = if full {
                    (c.add(r * n + col), sc)
                } else {
                    for i in 0..MB {
                        for j in 0..NB {
                            tail.0[i * NB + j] = if acc && r + i < m && col + j < n {
                                *c.add((r + i) * n + col + j)
                            } else {
                                0.0
                            };
                        }
                    }
                    (tail.0.as_mut_ptr(), NB * 4)
                };
                if acc || !full {
                    // SAFETY: rows cp .. cp + 32·stride, 64 bytes each, inside c (full
                    // block: rows r..r+32 < m, columns col..col+32 ≤ n) or inside `tail`.
                    asm!(
                        "tileloadd tmm0, [{c} + {s}*1]",
                        "tileloadd tmm1, [{c1} + {s}*1]",
                        "tileloadd tmm2, [{c2} + {s}*1]",
                        "tileloadd tmm3, [{c3} + {s}*1]",
                        c = in(reg) cp, c1 = in(reg) cp.add(16),
                        c2 = in(reg) (cp as *mut u8).add(16 * stride),
                        c3 = in(reg) (cp as *mut u8).add(16 * stride + 64),
                        s = in(reg) stride, options(nostack, readonly),
                    );
                } else {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                }
                // A: the 1 KB tiles of row blocks r/16 and r/16 + 1, step s at +s·512;
                // B: panel jb, 16 pair rows of 128 bytes per step (B1 is the upper 64 bytes).
                let ap0 = a.data.as_ptr().add((r / 16) * steps * 512);
                let ap1 = ap0.add(steps * 512);
                let bp = b.data.as_ptr().add(jb * kp * NB);
                // At most 16 rows left: the lower half of the block (C2, C3, A1) is all
                // padding, so only C0 and C1 are computed (C2 and C3 stay in `tail`).
                let half = m - r <= 16;
                for s in (0..steps).filter(|_| half) {
                    // SAFETY: as below, row block r/16 only.
                    asm!(
                        "tileloadd tmm4, [{a0} + {sa}*1]",
                        "tileloadd tmm6, [{b0} + {sb}*1]",
                        "tileloadd tmm7, [{b1} + {sb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        a0 = in(reg) ap0.add(s * 512),
                        b0 = in(reg) bp.add(s * 16 * 2 * NB),
                        b1 = in(reg) bp.add(s * 16 * 2 * NB + 32),
                        sa = in(reg) 64usize, sb = in(reg) 128usize, options(nostack, readonly),
                    );
                }
                for s in (0..steps).filter(|_| !half) {
                    // SAFETY: A tiles lie inside row blocks r/16 and r/16 + 1 < m padded
                    // to 32 rows; the B tile rows s·16..s·16+16 lie inside panel jb.
                    asm!(
                        "tileloadd tmm4, [{a0} + {sa}*1]",
                        "tileloadd tmm5, [{a1} + {sa}*1]",
                        "tileloadd tmm6, [{b0} + {sb}*1]",
                        "tileloadd tmm7, [{b1} + {sb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) ap0.add(s * 512), a1 = in(reg) ap1.add(s * 512),
                        b0 = in(reg) bp.add(s * 16 * 2 * NB),
                        b1 = in(reg) bp.add(s * 16 * 2 * NB + 32),
                        sa = in(reg) 64usize, sb = in(reg) 128usize, options(nostack, readonly),
                    );
                }
                // SAFETY: as for the loads above.
                asm!(
                    "tilestored [{c} + {s}*1], tmm0",
                    "tilestored [{c1} + {s}*1], tmm1",
                    "tilestored [{c2} + {s}*1], tmm2",
                    "tilestored [{c3} + {s}*1], tmm3",
                    c = in(reg) cp, c1 = in(reg) cp.add(16),
                    c2 = in(reg) (cp as *mut u8).add(16 * stride),
                    c3 = in(reg) (cp as *mut u8).add(16 * stride + 64),
                    s = in(reg) stride, options(nostack),
                );
                if !full {
                    for i in 0..(m - r).min(MB) {
                        for j in 0..NB.min(n - col) {
                            *c.add((r + i) * n + col + j) = tail.0[i * NB + j];
                        }
                    }
                }
                r += MB;
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    use super::*;
    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn gemm(_: &BfRows, _: &PackedB, _: &mut [f32], _: bool, _: bool) {
        unreachable!("no AMX off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::randn;

    /// The bf16 product summed in f64: what both paths approximate.
    fn reference(a: &BfRows, b: &PackedB) -> Vec<f64> {
        let (m, k, n) = (a.m, a.k, b.n);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            let ar = a.row_f32(i);
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| ar[p] as f64 * b.get(p, j) as f64).sum();
            }
        }
        c
    }

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even below
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, even above
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn packings_hold_the_matrix() {
        let (rows, cols) = (5, 7);
        let w = randn(rows * cols, 4);
        let b = PackedB::from_rows(rows, cols, |i, out| {
            out.copy_from_slice(&w[i * cols..][..cols])
        });
        let bt = PackedB::from_rows_transposed(&w, rows, cols);
        for i in 0..rows {
            for j in 0..cols {
                let want = bf16_to_f32(f32_to_bf16(w[i * cols + j]));
                assert_eq!(b.get(i, j), want);
                assert_eq!(bt.get(j, i), want);
            }
        }
    }

    /// Both paths (AMX where this CPU has it) against the f64 sum of the same bf16 values,
    /// overwrite and accumulate, with row counts that leave partial 32-row blocks.
    #[test]
    fn products_match_the_f64_reference() {
        eprintln!("AMX: {}", amx_enabled());
        for &(m, k, n) in &[
            (1, 32, 32),
            (17, 64, 32),
            (32, 640, 64),
            (77, 256, 96),
            (330, 96, 128),
            (5, 7, 3),
            (40, 50, 45),
        ] {
            let x = randn(m * k, 1);
            let w = randn(n * k, 2);
            let a = BfRows::from_f32(&x, m, k, 0.5);
            let b = PackedB::from_rows_transposed(&w, n, k);
            let want = reference(&a, &b);
            let c0 = randn(m * n, 3);
            for par in [false, true] {
                for (acc, base) in [(false, vec![0.0; m * n]), (true, c0.clone())] {
                    let mut got = if acc { c0.clone() } else { vec![7.0; m * n] };
                    gemm_bf16(&a, &b, &mut got, acc, par);
                    let mut fb = if acc { c0.clone() } else { vec![7.0; m * n] };
                    gemm_fallback(&a, &b, &mut fb, acc, par);
                    for i in 0..m * n {
                        let w = want[i] + base[i] as f64;
                        let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                        assert!(
                            (got[i] as f64 - w).abs() < tol,
                            "({m},{k},{n}) acc {acc} par {par} [{i}]: {} vs {w}",
                            got[i]
                        );
                        assert!((fb[i] as f64 - w).abs() < tol, "fallback [{i}]");
                    }
                }
            }
        }
    }

    /// Speed on the training shapes: `cargo test --release -p smolt-kernels bf16_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bf16_speed() {
        for &(m, k, n) in &[
            (330, 640, 2048),
            (330, 2048, 640),
            (336, 640, 1024),
            (112, 640, 2048),
            (112, 2048, 640),
        ] {
            let a = BfRows::from_f32(&randn(m * k, 1), m, k, 1.0);
            let b = PackedB::from_rows_transposed(&randn(n * k, 2), n, k);
            let mut c = vec![0f32; m * n];
            for par in [true, false] {
                let mut dt = f64::INFINITY;
                for _ in 0..30 {
                    let t0 = std::time::Instant::now();
                    gemm_bf16(&a, &b, &mut c, true, par);
                    dt = dt.min(t0.elapsed().as_secs_f64());
                }
                eprintln!(
                    "({m},{k},{n}) par {par}: {:.3} ms, {:.0} GFLOP/s",
                    dt * 1e3,
                    2.0 * (m * k * n) as f64 / dt * 1e-9
                );
            }
        }
    }
}
