//! The bf16 products on Intel AMX tiles (`tdpbf16ps`): 32 × 32 blocks of `c` held in four
//! 16 × 16 f32 tiles while `k` passes 32 at a time through two A and two B tiles, straight from
//! the operands' layouts. Runs where `crate::cpu::amx_bf16` says the CPU, the kernel and
//! `SMOLT_AMX` allow it.

#[cfg(test)]
use super::aligned::LineVec;
use super::operands::{BfRows, PackedB, A_GROUP_BYTES, KB, MB, NB};
use super::split::{split_columns, Ptr};
use std::arch::asm;

/// Whether the tiles may run here ([`crate::cpu::amx_bf16`]: CPU, kernel and `SMOLT_AMX`).
pub(super) fn available() -> bool {
    crate::cpu::amx_bf16()
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

#[repr(C, align(64))]
struct Tile([u32; 256]);

/// See `amx_peak_loop`.
///
/// # Safety
/// AMX-BF16 usable in this process (`available()`).
pub(super) unsafe fn peak_loop(iters: u64) -> f32 {
    let cfg = config();
    asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    // Two bf16 ones per u32: every A and B tile holds 1.0 everywhere.
    let ones = Tile([0x3f80_3f80; 256]);
    // SAFETY: each load reads 16 rows of 64 bytes at stride 64: the 1 KB of `ones`.
    asm!(
        "tileloadd tmm4, [{p} + {s}*1]",
        "tileloadd tmm5, [{p} + {s}*1]",
        "tileloadd tmm6, [{p} + {s}*1]",
        "tileloadd tmm7, [{p} + {s}*1]",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        p = in(reg) ones.0.as_ptr(), s = in(reg) 64usize, options(nostack, readonly),
    );
    for _ in 0..iters {
        asm!(
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            options(nostack, nomem)
        );
    }
    let mut c = [
        Tile([0; 256]),
        Tile([0; 256]),
        Tile([0; 256]),
        Tile([0; 256]),
    ];
    // SAFETY: each store writes 16 rows of 64 bytes at stride 64: one 1 KB `Tile`.
    asm!(
        "tilestored [{c0} + {s}*1], tmm0",
        "tilestored [{c1} + {s}*1], tmm1",
        "tilestored [{c2} + {s}*1], tmm2",
        "tilestored [{c3} + {s}*1], tmm3",
        "tilerelease",
        c0 = in(reg) c[0].0.as_mut_ptr(), c1 = in(reg) c[1].0.as_mut_ptr(),
        c2 = in(reg) c[2].0.as_mut_ptr(), c3 = in(reg) c[3].0.as_mut_ptr(),
        s = in(reg) 64usize, options(nostack),
    );
    c.iter()
        .flat_map(|t| t.0.iter())
        .map(|&bits| f32::from_bits(bits))
        .sum()
}

pub(super) fn gemm(
    a: &BfRows,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let n_blocks = b.n.div_ceil(NB);
    let ptr = Ptr(c.as_mut_ptr());
    let run = |j0: usize, j1: usize| {
        // SAFETY: `available()` (checked by the caller) means the tile state is granted
        // and AMX-BF16 exists; shapes: k % 32 == 0 and n % 32 == 0 (checked by the
        // caller), `a` holds m rounded up to 32 rows of k, `b` holds k/2 rows of 2n, and
        // `c` holds m rows of n at stride ldc ≥ n (checked by the caller); this task
        // writes only its column blocks j0..j1.
        unsafe { blocks(a, b, ptr.get(), ldc, accumulate, j0, j1) }
    };
    split_columns(n_blocks, parallel, a.m * b.n * a.k, run);
}

#[repr(C, align(64))]
struct Tail([f32; MB * NB]);

/// Bytes of B's panel a k-block keeps in L1 (of 48 KB) while the row blocks pass over it:
/// without the k-blocking a whole panel (40 KB at k = 640) and the A rows streaming past it did
/// not fit together. Of 8, 16, 24 and 32 KB and none (`bf16_speed`, one thread, 2026-12-07),
/// 24 KB was best or near it on the k = 640 shapes: (340, 640, 256) 1254 → 1555 GFLOP/s,
/// (336, 640, 1024) 966 → 1203 (k = 2048 is not blocked: see `k_block_steps`).
const B_L1_BYTES: usize = 24 << 10;

/// Steps (of 32 `k`) per k-block for `steps` in all: as even as possible, each B sub-panel
/// within [`B_L1_BYTES`], but no blocking where it would take more than two k-blocks: each
/// k-block loads and stores all of C once more, and at k = 2048 (six blocks) that cost more
/// than the panel's L1 hits gave ((450, 2048, 640): 1060 GFLOP/s whole against 826 blocked;
/// (450, 640, 1024): 862 whole against 1048 in two blocks).
fn k_block_steps(steps: usize) -> usize {
    let most = (B_L1_BYTES / (KB * NB * 2)).max(1);
    let blocks = steps.div_ceil(most).max(1);
    if blocks > 2 {
        steps.max(1)
    } else {
        steps.div_ceil(blocks).max(1)
    }
}

/// Column blocks `j0..j1` (of 32) of `c (m, n)` (rows `ldc` apart), all rows.
///
/// # Safety
/// AMX-BF16 usable in this process (`available()`); `a` and `b` as built by their
/// constructors with `a.k == b.k` (so both hold `kp` padded columns/rows, `a` whole
/// 32-row blocks, `b` whole 32-column panels); `c` points at `m` rows of `n ≤ ldc`
/// writable f32, `ldc` apart, that nothing else touches in these column blocks.
unsafe fn blocks(
    a: &BfRows,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    j0: usize,
    j1: usize,
) {
    let (m, n, kp) = (a.m, b.n, a.kp);
    let steps = kp / KB;
    let cfg = config();
    asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    let sc = ldc * 4;
    // Row groups whose A rows stay in L2 while every column block of this task passes
    // over them (A is re-read once per column block; B once per group).
    let group = (A_GROUP_BYTES / (kp * 2)).max(MB) / MB * MB;
    let kb = k_block_steps(steps);
    for g0 in (0..m).step_by(group) {
        let g1 = (g0 + group).min(m);
        for jb in j0..j1 {
            let col = jb * NB;
            let bp = b.data.as_ptr().add(jb * kp * NB);
            // Whole blocks in place, k-block by k-block: the B sub-panel stays in L1 while
            // every row block of the group passes over it; C goes back to `c` between
            // k-blocks (exact: f32 stores and loads, the steps in the same order).
            if col + NB <= n {
                for s0 in (0..steps).step_by(kb) {
                    let s1 = (s0 + kb).min(steps);
                    let load = acc || s0 > 0;
                    for r in (g0..g1).step_by(MB).filter(|r| r + MB <= m) {
                        // SAFETY: rows r..r+32 < m and columns col..col+32 ≤ n lie in c;
                        // A's row blocks r/16, r/16 + 1 and B's panel jb hold steps s0..s1.
                        let ap0 = a.data.as_ptr().add((r / 16) * steps * 512);
                        let cp = c.add(r * ldc + col);
                        block(ap0, steps, bp, cp, sc, load, s0, s1, false);
                    }
                }
            }
            // Blocks that reach past m or n: whole k at once through `tail`.
            for r in (g0..g1).step_by(MB) {
                if !(r + MB <= m && col + NB <= n) {
                    edge_block(a, b, c, ldc, acc, r, jb);
                }
            }
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

/// One 32 × 32 block of C at `cp` (rows `sc` bytes apart), steps `s0..s1` of k: C is loaded
/// first if `load`, else starts at zero. With `half`, only its upper 16 rows are computed (the
/// lower C tiles are stored back as they were loaded).
///
/// # Safety
/// Tiles configured by `blocks`; `ap0` is A's row block pair (`2 · steps · 512` elements),
/// `bp` B's panel (`steps · 16` pair rows of 2 · 32 elements); `cp` points at 32 rows of 32
/// writable f32, `sc` bytes apart.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block(
    ap0: *const u16,
    steps: usize,
    bp: *const u16,
    cp: *mut f32,
    sc: usize,
    load: bool,
    s0: usize,
    s1: usize,
    half: bool,
) {
    if load {
        asm!(
            "tileloadd tmm0, [{c} + {s}*1]",
            "tileloadd tmm1, [{c1} + {s}*1]",
            "tileloadd tmm2, [{c2} + {s}*1]",
            "tileloadd tmm3, [{c3} + {s}*1]",
            c = in(reg) cp, c1 = in(reg) cp.add(16),
            c2 = in(reg) (cp as *mut u8).add(16 * sc),
            c3 = in(reg) (cp as *mut u8).add(16 * sc + 64),
            s = in(reg) sc, options(nostack, readonly),
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
    let ap1 = ap0.add(steps * 512);
    for s in (s0..s1).filter(|_| half) {
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
    for s in (s0..s1).filter(|_| !half) {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) ap0.add(s * 512), a1 = in(reg) ap1.add(s * 512),
            b0 = in(reg) bp.add(s * 16 * 2 * NB),
            b1 = in(reg) bp.add(s * 16 * 2 * NB + 32),
            sa = in(reg) 64usize, sb = in(reg) 128usize, options(nostack, readonly),
        );
    }
    asm!(
        "tilestored [{c} + {s}*1], tmm0",
        "tilestored [{c1} + {s}*1], tmm1",
        "tilestored [{c2} + {s}*1], tmm2",
        "tilestored [{c3} + {s}*1], tmm3",
        c = in(reg) cp, c1 = in(reg) cp.add(16),
        c2 = in(reg) (cp as *mut u8).add(16 * sc),
        c3 = in(reg) (cp as *mut u8).add(16 * sc + 64),
        s = in(reg) sc, options(nostack),
    );
}

/// The 32 × 32 block at rows `r..`, column block `jb`, that reaches past `m` or `n`: computed
/// over all of k in `tail` and copied into the part of it inside c.
///
/// # Safety
/// As for `blocks`, with `r < m` and `jb` a panel of `b`.
unsafe fn edge_block(
    a: &BfRows,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    r: usize,
    jb: usize,
) {
    let (m, n, kp) = (a.m, b.n, a.kp);
    let steps = kp / KB;
    let col = jb * NB;
    let mut tail = Tail([0.0; MB * NB]);
    for i in 0..(m - r).min(MB) {
        for j in 0..NB.min(n - col) {
            if acc {
                tail.0[i * NB + j] = *c.add((r + i) * ldc + col + j);
            }
        }
    }
    // A: row blocks r/16 and r/16 + 1; B: panel jb. At most 16 rows left: the lower half of
    // the block (C2, C3, A1) is all padding, so only C0 and C1 are computed.
    let ap0 = a.data.as_ptr().add((r / 16) * steps * 512);
    let bp = b.data.as_ptr().add(jb * kp * NB);
    // SAFETY: `tail` is 32 rows of 32 f32 (128 bytes apart); A's row blocks (padded to 32
    // rows) and B's panel hold all `steps`.
    block(
        ap0,
        steps,
        bp,
        tail.0.as_mut_ptr(),
        NB * 4,
        true,
        0,
        steps,
        m - r <= 16,
    );
    for i in 0..(m - r).min(MB) {
        for j in 0..NB.min(n - col) {
            *c.add((r + i) * ldc + col + j) = tail.0[i * NB + j];
        }
    }
}

#[cfg(test)]
mod probe {
    use super::*;

    /// `steps` kernel steps (four tile loads, four `tdpbf16ps`) cycling over `span` steps of
    /// A (two row blocks) at `a` and of B (one panel) at `b`.
    ///
    /// # Safety
    /// AMX-BF16 usable (`available()`); `a` holds `2 · span · 512` and `b` `span · 1024`
    /// readable `u16`.
    unsafe fn run(steps: usize, span: usize, a: *const u16, b: *const u16) {
        let cfg = config();
        asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let a1 = a.add(span * 512);
        for i in 0..steps {
            let s = i % span;
            // SAFETY: A tiles at s·512 in both row blocks, B rows of 128 bytes at s·1024:
            // inside the buffers the caller vouches for.
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(s * 512), a1 = in(reg) a1.add(s * 512),
                b0 = in(reg) b.add(s * 1024), b1 = in(reg) b.add(s * 1024 + 32),
                sa = in(reg) 64usize, sb = in(reg) 128usize, options(nostack, readonly),
            );
        }
        asm!("tilerelease", options(nostack, nomem));
    }

    /// What the operands' 64-byte alignment (`bf16::aligned`) is worth: the
    /// kernel's step from L1 (span 8) and from L2 (span 128), buffers on a cache line or
    /// 16 / 32 bytes off it.
    /// `cargo test --release -p smolt-kernels tile_row_alignment -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn tile_row_alignment() {
        if !available() {
            return;
        }
        let steps = 1 << 20;
        for span in [8, 128] {
            let a = LineVec::filled(span * 1024 + 64, 0u16);
            let b = LineVec::filled(span * 1024 + 64, 0u16);
            for off in [0, 16, 32] {
                let best = (0..5)
                    .map(|_| {
                        let t0 = std::time::Instant::now();
                        // SAFETY: available(); 64 spare u16 cover the offset of ≤ 32 u16.
                        unsafe {
                            run(
                                steps,
                                span,
                                a.as_ptr().add(off / 2),
                                b.as_ptr().add(off / 2),
                            )
                        };
                        t0.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min);
                let flops = steps as f64 * 4.0 * (16 * 16 * 32 * 2) as f64;
                eprintln!(
                    "span {span:3} steps ({:4} KB), {off:2} bytes off a line: {:5.1} ns/step, {:4.0} GFLOP/s",
                    span * 4,
                    best / steps as f64 * 1e9,
                    flops / best * 1e-9
                );
            }
        }
    }
}
