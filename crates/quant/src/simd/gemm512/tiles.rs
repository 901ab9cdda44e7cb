//! The prefill path: many x rows against 16-row panels. A tile is `C` x rows times one
//! panel, 16 (row, x-row) sums per `vpdpbusd`; the panel stays in L1 while every x row
//! streams past it. Panels are split over the thread pool, each task packing its own.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::activations::{Fmt, Xq};
use super::amx::{self, AMX_ROWS};
use super::packing::{Isa, Panel, PR};
use crate::qmatrix::QMatrix;

/// x rows per micro-kernel call; `2·XR` where there are that many (one pass fewer over the
/// panel: 10% on 16-row products of panels coming from memory).
const XR: usize = 4;

/// `C` x rows against one panel: returns the 16 outputs of each x row.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VNNI; `pq` holds `nblk·G·16` u32, `pd`/`pm` `nblk·16`
/// f32, each `xq[c]` `nblk·4G` bytes and `xd`/`xz`/`xs[c]` `nblk` values.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const C: usize, const G: usize, const MIN: bool>(
    nblk: usize,
    pq: *const u32,
    pd: *const f32,
    pm: *const f32,
    xq: [*const i8; C],
    xd: [*const f32; C],
    xz: [*const i32; C],
    xs: [*const f32; C],
    next: Option<(*const u32, *const f32, *const f32)>,
) -> [__m512; C] {
    let mut acc = [_mm512_setzero_ps(); C];
    for b in 0..nblk {
        if let Some((nq, nd, nm)) = next {
            // The next panel's block b, into L2 while this one computes: spread over the
            // blocks, the requests overlap the arithmetic instead of queueing in one burst.
            for g in 0..G {
                _mm_prefetch::<_MM_HINT_T1>(nq.add((b * G + g) * PR) as *const i8);
            }
            _mm_prefetch::<_MM_HINT_T1>(nd.add(b * PR) as *const i8);
            if MIN {
                _mm_prefetch::<_MM_HINT_T1>(nm.add(b * PR) as *const i8);
            }
        }
        let mut wv = [_mm512_setzero_si512(); G];
        for (g, v) in wv.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(pq.add((b * G + g) * PR) as *const __m512i);
        }
        let dv = _mm512_loadu_ps(pd.add(b * PR));
        for c in 0..C {
            let xb = xq[c].add(b * 4 * G);
            // The chain starts at −zero·Σq: the unsigned offset leaves exactly, with no
            // subtraction of its own.
            let mut i = _mm512_set1_epi32(-*xz[c].add(b));
            for (g, w) in wv.iter().enumerate() {
                let a = _mm512_set1_epi32((xb.add(4 * g) as *const i32).read_unaligned());
                i = _mm512_dpbusd_epi32(i, *w, a);
            }
            let s = _mm512_mul_ps(dv, _mm512_set1_ps(*xd[c].add(b)));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[c]);
            if MIN {
                let mv = _mm512_loadu_ps(pm.add(b * PR));
                acc[c] = _mm512_fmadd_ps(mv, _mm512_set1_ps(*xs[c].add(b)), acc[c]);
            }
        }
    }
    acc
}

/// `y` rows `r..r+C`, columns `j0..j0+rows` from one panel.
///
/// # Safety
/// As for `tile`; `y` points at an `m × n` buffer with `r + C ≤ m`, `j0 + rows ≤ n`,
/// and no other thread writes these columns.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_rows<const C: usize, const G: usize, const MIN: bool>(
    p: &Panel,
    x: &Xq,
    r: usize,
    y: *mut f32,
    n: usize,
    j0: usize,
    rows: usize,
    next: Option<&Panel>,
) {
    let nb = x.nblk;
    let xq: [*const i8; C] = std::array::from_fn(|c| x.q.as_ptr().add((r + c) * x.k));
    let xd: [*const f32; C] = std::array::from_fn(|c| x.d.as_ptr().add((r + c) * nb));
    let xz: [*const i32; C] = std::array::from_fn(|c| x.zs.as_ptr().add((r + c) * nb));
    let xs: [*const f32; C] = std::array::from_fn(|c| x.ds.as_ptr().add((r + c) * nb));
    let acc = tile::<C, G, MIN>(
        nb,
        p.q.as_ptr(),
        p.d.as_ptr(),
        p.mn.as_ptr(),
        xq,
        xd,
        xz,
        xs,
        next.map(|q| (q.q.as_ptr(), q.d.as_ptr(), q.mn.as_ptr())),
    );
    let mask: __mmask16 = if rows >= PR { !0 } else { (1u16 << rows) - 1 };
    for (c, v) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(y.add((r + c) * n + j0), mask, *v);
    }
}

#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: used only to let tasks write disjoint parts of one output buffer.
unsafe impl Send for SyncPtr {}
// SAFETY: as above; no two tasks write the same element.
unsafe impl Sync for SyncPtr {}

/// The prefill driver of both x86 tiles: for every 16-row panel of `w` (split over the thread
/// pool, each task packing its own with `isa`, or taking it from `packed`, `w`'s panels packed
/// beforehand), `run(p, y, j0, rows)` writes columns `j0..j0+rows` of `y` (`m × w.rows`,
/// passed as a pointer so that tasks share it).
///
/// # Safety
/// `isa` as `Panel::pack` requires; `run` writes only those columns of `y`'s rows.
pub(super) unsafe fn for_each_panel(
    w: &QMatrix,
    nblk: usize,
    isa: Isa,
    packed: Option<&[Panel]>,
    y: &mut [f32],
    run: impl Fn(&Panel, Option<&Panel>, *mut f32, usize, usize) + Send + Sync,
) {
    let n = w.rows;
    let yp = SyncPtr(y.as_mut_ptr());
    if let Some(panels) = packed {
        assert_eq!(
            panels.len(),
            n.div_ceil(PR),
            "packed panels of another matrix"
        );
        return panels.par_iter().enumerate().for_each(move |(t, p)| {
            let yp = yp;
            let j0 = t * PR;
            run(p, panels.get(t + 1), yp.0, j0, (n - j0).min(PR));
        });
    }
    (0..n.div_ceil(PR)).into_par_iter().for_each_init(
        || Panel::new(w.cols, nblk),
        move |p, t| {
            let yp = yp;
            let j0 = t * PR;
            let rows = (n - j0).min(PR);
            p.pack(w, j0, rows, isa);
            run(p, None, yp.0, j0, rows);
        },
    );
}

/// Prefill path: `y[m×n] = x[m×k] · Wᵀ` over 16-row panels.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VL/VNNI; shapes were checked by the caller.
pub(super) unsafe fn matmul_panels(
    w: &QMatrix,
    f: Fmt,
    x: &Xq,
    m: usize,
    packed: Option<&[Panel]>,
    y: &mut [f32],
) {
    let n = w.rows;
    for_each_panel(w, x.nblk, Isa::Avx512, packed, y, |p, next, y, j0, rows| {
        let mut r = 0;
        // SAFETY: the features were checked by the caller; this task alone writes
        // columns j0..j0+rows of y, and every pointer stays inside p, x and y.
        unsafe {
            // Q6_K's 16-element sub-blocks halve the work per tile op: AVX-512 is as fast.
            if m >= AMX_ROWS && f.bs == 32 && crate::cpu::amx_int8() {
                r = amx::panel(p, x, f, m, y, n, j0, rows);
            }
            panel_from_row(p, f, x, r, m, y, n, j0, rows, next);
        }
    });
}

/// `y` rows `r..m`, columns `j0..j0+rows` (row stride `ldy`) from one panel: `2·XR` then `XR`
/// x rows per tile, then one at a time; the first tile fetches `next` (the panel this task
/// runs after, when panels are kept) into L2 as it goes.
///
/// # Safety
/// As for `panel_rows`, for every row in `r..m`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn panel_from_row(
    p: &Panel,
    f: Fmt,
    x: &Xq,
    mut r: usize,
    m: usize,
    y: *mut f32,
    ldy: usize,
    j0: usize,
    rows: usize,
    mut next: Option<&Panel>,
) {
    macro_rules! run {
        ($c:expr) => {
            match (f.bs, f.has_min) {
                (32, false) => panel_rows::<$c, 8, false>(p, x, r, y, ldy, j0, rows, next.take()),
                (32, true) => panel_rows::<$c, 8, true>(p, x, r, y, ldy, j0, rows, next.take()),
                (16, false) => panel_rows::<$c, 4, false>(p, x, r, y, ldy, j0, rows, next.take()),
                _ => unreachable!("no such format"),
            }
        };
    }
    while r + 2 * XR <= m {
        run!(8);
        r += 2 * XR;
    }
    while r + XR <= m {
        run!(XR);
        r += XR;
    }
    while r < m {
        run!(1);
        r += 1;
    }
}
