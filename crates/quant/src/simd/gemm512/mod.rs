//! AVX-512 VNNI matmul for the weight types Gemma-class GGUFs are made of (Q8_0, Q5_0,
//! Q4_K, Q6_K): the same quantized arithmetic as `vec_dot` (activations quantized to
//! `vec_dot_type`, exact integer block sums, float scales), laid out for throughput.
//!
//! * Activations are quantized once per matmul and kept as plain i8 rows with one f32
//!   scale per weight sub-block (`XQ`), so no kernel converts an f16 scale in its loop.
//! * Many x rows (prefill): 16 W rows are unpacked into a *panel* of unsigned 8-bit
//!   quants, interleaved so that one 64-byte vector holds four consecutive quants of each
//!   of the 16 rows. One `vpdpbusd` against four broadcast activation bytes then gives 16
//!   (row, x-row) partial sums at once: a block's dot products need no horizontal sum, the
//!   panel (≤ 40 KB) stays in L1 while every x row streams past, and the output is 16
//!   contiguous floats per x row. The unsigned offset (`zero`: 128, 16, 32) is removed
//!   exactly in integers with the activation block sums; Q4_K's mins use them in float.
//! * One x row (decode): four W rows at a time; the legacy types two 32-element blocks per
//!   vector, the K-quants a super-block through `vpmaddubsw` + `vpdpwssd` with its scales.
//! * AVX2 CPUs (no VNNI) run the same panels as two halves of 8 rows through `vpmaddubsw`
//!   (Q8_0 with its signs moved onto the activations) and `vpmaddwd`: the integer block sums
//!   are as exact, so prefill gives the same bits on both x86 paths.
//!
//! The files, by concern: `activations` quantizes x into the `Xq` form; `packing` unpacks 16
//! W rows into a panel; `tiles` runs the panels (prefill), with `amx` for the opt-in tile
//! unit and `tiles_avx2` for AVX2 CPUs; `dot` holds the one-row kernels (R W rows against one
//! x row, in the file's layout and in the decode layout of `crate::packed`) and `matvec`
//! drives them over a matrix. This module holds the entry points the rest of the crate calls.

mod activations;
mod amx;
mod dot;
mod matvec;
mod packing;
mod tiles;
mod tiles_avx2;

use activations::{fmt, Fmt, Xq};
use matvec::matvec;
use packing::{Isa, Panel, PR};
use tiles::{matmul_panels, panel_from_row};

use crate::qmatrix::QMatrix;
use crate::GgmlType;

pub(crate) use matvec::matvec_packed;

/// Whether `matmul` handles `ty`.
pub(crate) fn supports(ty: GgmlType) -> bool {
    fmt(ty).is_some()
}

/// Below this many x rows, unpacking panels costs more than it saves.
const PANEL_MIN_M: usize = crate::decode_layout::ONE_ROW_BELOW;

/// `y[m×n] = x[m×k] · Wᵀ` for a type `supports` admits; `None` if this path declines
/// (the caller then uses the generic per-row kernels).
///
/// # Safety
/// The CPU must have AVX-512F/BW/VL/DQ/VNNI and F16C; shapes checked by the caller. The
/// one-row kernels also need VBMI, checked here.
pub(crate) unsafe fn matmul(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Option<()> {
    let f = fmt(w.ty)?;
    let one_row = crate::cpu::avx512vbmi();
    if m < PANEL_MIN_M && !one_row {
        return None;
    }
    let xq = Xq::new(w.ty, f, x, m, w.cols);
    if m < PANEL_MIN_M {
        matvec(w, &xq, m, y);
    } else {
        matmul_panels(w, f, &xq, m, None, y);
    }
    Some(())
}

/// [`matmul`]'s panels on AVX2 CPUs (the same numbers bit for bit) for `m ≥ 4` x rows of a
/// type [`supports`] admits; `None` otherwise (the caller then uses the per-row kernels).
///
/// # Safety
/// The CPU must have AVX2 and FMA; shapes checked by the caller.
pub(crate) unsafe fn matmul_avx2(w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) -> Option<()> {
    let f = fmt(w.ty)?;
    if m < PANEL_MIN_M {
        return None;
    }
    panels_avx2(w, f, x, m, None, y);
    Some(())
}

/// The AVX2 panels from `x` (f32): quantize it, then the tiles, packing each panel unless
/// `packed` holds them.
///
/// # Safety
/// As for [`matmul_avx2`]; `packed`, if any, made by [`prepack`] for `w`.
unsafe fn panels_avx2(
    w: &QMatrix,
    f: Fmt,
    x: &[f32],
    m: usize,
    packed: Option<&[Panel]>,
    y: &mut [f32],
) {
    // SAFETY: the caller promises AVX2 and FMA.
    let xq = Xq::from_blocks(w.ty, f, x, m, w.cols, true);
    tiles_avx2::matmul_panels(w, f, &xq, m, packed, y);
}

/// A weight's panels packed once, for [`matmul_prepacked`]: the quants interleaved (1 byte
/// per weight) and the sub-block scales and mins (4 or 8 bytes per sub-block and row).
pub(crate) struct Prepacked {
    isa: Isa,
    f: Fmt,
    panels: Vec<Panel>,
}

/// `w`'s panels for this CPU, or `None` where `matmul`/`matmul_avx2` would not run panels
/// (another type, or a CPU with neither path).
pub(crate) fn prepack(w: &QMatrix) -> Option<Prepacked> {
    use rayon::prelude::*;
    let f = fmt(w.ty)?;
    let isa = match crate::cpu::active() {
        crate::cpu::SimdPath::Avx512 => Isa::Avx512,
        crate::cpu::SimdPath::Avx2 => Isa::Avx2,
        _ => return None,
    };
    let nblk = w.cols / f.bs;
    let panels = (0..w.rows.div_ceil(PR))
        .into_par_iter()
        .map(|t| {
            let mut p = Panel::new(w.cols, nblk);
            let j0 = t * PR;
            p.pack(w, j0, (w.rows - j0).min(PR), isa);
            // Scratch for the interleave only: the tiles read `q`, `d` and `mn`.
            p.u = Vec::new();
            p
        })
        .collect();
    Some(Prepacked { isa, f, panels })
}

/// `y[m×n] = x[m×k] · Wᵀ` for `w`, whose panels `pre` holds: the numbers [`matmul`] and
/// [`matmul_avx2`] give where they run panels, bit for bit, without packing. `w` supplies only the
/// shape (its bytes are not read).
///
/// # Safety
/// Shapes checked by the caller; `pre` made by [`prepack`] for `w` on this CPU.
pub(crate) unsafe fn matmul_prepacked(
    w: &QMatrix,
    pre: &Prepacked,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    let f = pre.f;
    match pre.isa {
        Isa::Avx512 => {
            let xq = Xq::new(w.ty, f, x, m, w.cols);
            matmul_panels(w, f, &xq, m, Some(&pre.panels), y);
        }
        Isa::Avx2 => panels_avx2(w, f, x, m, Some(&pre.panels), y),
    }
}

/// Activations quantized once for many [`matmul_rows`] calls against one weight type.
pub(crate) struct RowsX {
    f: Fmt,
    pub(crate) ty: GgmlType,
    pub(crate) m: usize,
    x: Xq,
}

/// Quantizes `x (m × k)` for `ty`'s panels; `None` for a type the panels do not take.
///
/// # Safety
/// As for [`matmul`]: the CPU must have the features of the AVX-512 table.
pub(crate) unsafe fn rows_x(ty: GgmlType, x: &[f32], m: usize, k: usize) -> Option<RowsX> {
    let f = fmt(ty)?;
    Some(RowsX {
        f,
        ty,
        m,
        x: Xq::new(ty, f, x, m, k),
    })
}

/// Scratch for [`matmul_rows`]: one unpacked panel.
pub(crate) struct RowsScratch(Option<Panel>);

impl RowsScratch {
    pub(crate) fn new() -> RowsScratch {
        RowsScratch(None)
    }
}

/// `y[i·ldy + (j − r0)] = x_i · W_j` for the rows `j` in `r0..r1` of `w`, on the calling
/// thread: the panels of [`matmul`] (the same tile, so the same numbers bit for bit),
/// for a caller that is itself parallel over slices of `w`.
///
/// # Safety
/// As for [`matmul`]; `x` was made for `w.ty` and `w.cols`, `r0 ≤ r1 ≤ w.rows`,
/// `r1 − r0 ≤ ldy` and `y.len() ≥ (x.m − 1)·ldy + (r1 − r0)` (checked by the caller).
pub(crate) unsafe fn matmul_rows(
    w: &QMatrix,
    r0: usize,
    r1: usize,
    x: &RowsX,
    y: &mut [f32],
    ldy: usize,
    scratch: &mut RowsScratch,
) {
    let (f, xq, m) = (x.f, &x.x, x.m);
    let p = scratch.0.get_or_insert_with(|| Panel::new(w.cols, xq.nblk));
    if p.u.len() != PR * w.cols || p.d.len() != xq.nblk * PR {
        *p = Panel::new(w.cols, xq.nblk);
    }
    let yp = y.as_mut_ptr();
    for j0 in (r0..r1).step_by(PR) {
        let rows = (r1 - j0).min(PR);
        p.pack(w, j0, rows, Isa::Avx512);
        panel_from_row(p, f, xq, 0, m, yp, ldy, j0 - r0, rows, None);
    }
}
