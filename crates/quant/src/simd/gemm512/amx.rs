//! Intel AMX (TMUL) for the panel product: one `tdpbsud` multiplies a 16 × bs tile of
//! activations (i8) by the panel's bs × 16 block (u8, already in the VNNI-interleaved
//! layout AMX expects) into 16 × 16 exact i32 block sums, which AVX-512 then scales and
//! accumulates exactly as `tile` does. Used only when CPUID reports AMX-TILE/AMX-INT8,
//! the kernel grants this process the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) and
//! XCR0 then enables it. Opt-in (`SMOLT_AMX=1`): in the whole model it measured within
//! noise of the AVX-512 panels here (the 16 per-row scale passes after each tile op, not
//! the tile unit, bound it), so the default keeps to plain AVX-512. `crate::cpu::amx_int8`
//! says whether it may run.

use std::arch::asm;
use std::arch::x86_64::*;

use super::activations::{Fmt, Xq};
use super::packing::{Panel, PR};

/// x rows per AMX tile.
pub(super) const AMX_ROWS: usize = 16;

/// The 64-byte tile configuration: tmm0 = C (16 × 16 i32), tmm1 = A (16 × bs i8),
/// tmm2 = B (bs/4 rows of 64 bytes); tmm3..tmm5 the same, for the next block.
fn config(bs: usize) -> [u8; 64] {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut set = |t: usize, rows: u8, colsb: u16| {
        c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
        c[48 + t] = rows;
    };
    for base in [0, 3] {
        set(base, 16, 64);
        set(base + 1, 16, bs as u16);
        set(base + 2, (bs / 4) as u8, 64);
    }
    c
}

/// Rows `0..m - m % 16` of the panel's columns; returns the first row not done.
///
/// # Safety
/// `crate::cpu::amx_int8()` is true, AVX-512F/BW/VL; as for `panel_rows` otherwise.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn panel(
    p: &Panel,
    x: &Xq,
    f: Fmt,
    m: usize,
    y: *mut f32,
    n: usize,
    j0: usize,
    rows: usize,
) -> usize {
    let cfg = config(f.bs);
    asm!("ldtilecfg [{0}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
    let mut r = 0;
    while r + AMX_ROWS <= m {
        if f.has_min {
            rows16::<true>(p, x, f.bs, r, y, n, j0, rows);
        } else {
            rows16::<false>(p, x, f.bs, r, y, n, j0, rows);
        }
        r += AMX_ROWS;
    }
    asm!("tilerelease", options(nostack, nomem));
    r
}

#[repr(C, align(64))]
struct CBuf([i32; 256]);

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn rows16<const MIN: bool>(
    p: &Panel,
    x: &Xq,
    bs: usize,
    r: usize,
    y: *mut f32,
    n: usize,
    j0: usize,
    rows: usize,
) {
    let (k, nb) = (x.k, x.nblk);
    let mut acc = [_mm512_setzero_ps(); AMX_ROWS];
    let mut c = [CBuf([0; 256]), CBuf([0; 256])];
    let pq = p.q.as_ptr() as *const u8;
    // Block b's sums go through tile set b % 2 into buffer b % 2; block b + 1 is
    // issued before block b's sums are scaled, so the tile unit and the vector
    // units overlap.
    let issue = |b: usize, c: &mut CBuf| {
        let a = x.q.as_ptr().add(r * k + b * bs);
        let bt = pq.add(b * bs * PR);
        // SAFETY (of the tile ops): A reads 16 rows of bs bytes at stride k inside
        // x.q (rows r..r+16 exist); B reads bs/4 × 64 contiguous bytes of this
        // block inside p.q; C is stored into the 1 KB buffer.
        if b.is_multiple_of(2) {
            asm!(
                "tilezero tmm0",
                "tileloadd tmm1, [{a} + {sa}*1]",
                "tileloadd tmm2, [{b} + {sb}*1]",
                "tdpbsud tmm0, tmm1, tmm2",
                "tilestored [{c} + {sc}*1], tmm0",
                a = in(reg) a, sa = in(reg) k, b = in(reg) bt, sb = in(reg) 64usize,
                c = in(reg) c.0.as_mut_ptr(), sc = in(reg) 64usize,
                options(nostack),
            );
        } else {
            asm!(
                "tilezero tmm3",
                "tileloadd tmm4, [{a} + {sa}*1]",
                "tileloadd tmm5, [{b} + {sb}*1]",
                "tdpbsud tmm3, tmm4, tmm5",
                "tilestored [{c} + {sc}*1], tmm3",
                a = in(reg) a, sa = in(reg) k, b = in(reg) bt, sb = in(reg) 64usize,
                c = in(reg) c.0.as_mut_ptr(), sc = in(reg) 64usize,
                options(nostack),
            );
        }
    };
    if nb > 0 {
        issue(0, &mut c[0]);
    }
    for b in 0..nb {
        if b + 1 < nb {
            issue(b + 1, &mut c[(b + 1) % 2]);
        }
        let c = &c[b % 2];
        let dv = _mm512_loadu_ps(p.d.as_ptr().add(b * PR));
        let mv = if MIN {
            _mm512_loadu_ps(p.mn.as_ptr().add(b * PR))
        } else {
            dv
        };
        for (i, a) in acc.iter_mut().enumerate() {
            let xi = (r + i) * nb + b;
            let ci = _mm512_load_si512(c.0.as_ptr().add(16 * i) as *const __m512i);
            let ci = _mm512_sub_epi32(ci, _mm512_set1_epi32(*x.zs.get_unchecked(xi)));
            let s = _mm512_mul_ps(dv, _mm512_set1_ps(*x.d.get_unchecked(xi)));
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci), s, *a);
            if MIN {
                *a = _mm512_fmadd_ps(mv, _mm512_set1_ps(*x.ds.get_unchecked(xi)), *a);
            }
        }
    }
    let mask: __mmask16 = if rows >= PR { !0 } else { (1u16 << rows) - 1 };
    for (i, v) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(y.add((r + i) * n + j0), mask, *v);
    }
}
