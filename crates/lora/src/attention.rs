//! Attention for training: whole sequences, as blocks of matrix products per block of
//! queries. The kernels' `attention_backward` walks (query, key) pairs with dot products,
//! recomputing each probability twice; the same math as a handful of products per block is
//! several times faster.
//!
//! Forward (per KV group `g`, query row `r = (t, h)` of the group's `G` heads):
//! `s_rj = scale·q_r·k_j`, `p_rj = exp(s_rj − lse_r)` for allowed `j`, `o_r = Σ_j p_rj·v_j`.
//! Backward: `dv_j += Σ_r p_rj·do_r`, `dp_rj = do_r·v_j`, `ds_rj = p_rj·(dp_rj − δ_r)` with
//! `δ_r = do_r·o_r`, `dq_r += scale·Σ_j ds_rj·k_j`, `dk_j += scale·Σ_r ds_rj·q_r`.
//!
//! Two arithmetics ([`AttentionMath`]): [`Exact`] in `F` throughout (the reference the f64
//! checks run), and [`Bf16`], the bf16 base's: every product's operands rounded to bf16 and
//! summed in f32 on the bf16 hardware (2× the f32 rate), the softmax and its gradient in f32.

use rayon::prelude::*;
use smolt_kernels::attention::{key_range, keys_in_tile, probs_from_lse, score_grads, softmax_row};
use smolt_kernels::bf16::{gemm_bf16, pack_rows_into, pack_w_into, BfRows, PackScratch, PackedB};
use smolt_kernels::matmul::serial;
use smolt_kernels::Float;

/// Query positions per block: the block's score matrix is `(BLOCK·G, keys)`, 0.5 MB for
/// Gemma's 4 heads over 512 keys; blocks are the unit of parallel work, so a 512-token
/// sequence gives eight of them (of unequal cost: causal blocks see more keys the later they
/// sit) for the pool to balance.
const BLOCK: usize = 64;

/// One layer's attention: `nh` query heads over `nkv` KV heads of `hd` each, an optional
/// sliding window, the score scale. Query `t` sits at position `t`; the keys are the same
/// `T` positions.
#[derive(Clone, Copy, Debug)]
pub struct Heads<F> {
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
    pub window: Option<usize>,
    pub scale: F,
}

/// How a training step computes causal (windowed, grouped-KV) attention. `q, out, dout, dq`
/// are `(T, nh, hd)`, `k, v, dk, dv` `(T, nkv, hd)`, `lse` `(T, nh)`.
pub trait AttentionMath<F: Float>: Send + Sync {
    /// `out` and the log-sum-exps `lse` (overwritten).
    fn forward(&self, q: &[F], k: &[F], v: &[F], h: &Heads<F>, out: &mut [F], lse: &mut [F]);
    /// `grads` ACCUMULATE the gradients for the output gradient `dout (T, nh, hd)`.
    fn backward(&self, dout: &[F], fwd: Forward<F>, h: &Heads<F>, grads: Grads<F>);
}

/// What the backward reads of its forward: the inputs `q`, `k`, `v` and the outputs `out`,
/// `lse`.
#[derive(Clone, Copy)]
pub struct Forward<'a, F> {
    pub q: &'a [F],
    pub k: &'a [F],
    pub v: &'a [F],
    pub out: &'a [F],
    pub lse: &'a [F],
}

/// The gradients the backward accumulates into: `dq (T, nh, hd)`, `dk, dv (T, nkv, hd)`.
pub struct Grads<'a, F> {
    pub dq: &'a mut [F],
    pub dk: &'a mut [F],
    pub dv: &'a mut [F],
}

/// In `F` throughout: the kernels' online-softmax forward, this module's blocked backward
/// with `F` gemm.
pub struct Exact;

/// Products in bf16 with f32 accumulation, as the bf16 base's linear layers: the attention
/// half of [`crate::BaseMatmul::Bf16`].
pub struct Bf16;

impl<F: Float> AttentionMath<F> for Exact {
    fn forward(&self, q: &[F], k: &[F], v: &[F], h: &Heads<F>, out: &mut [F], lse: &mut [F]) {
        let positions: Vec<usize> = (0..lse.len() / h.nh).collect();
        smolt_kernels::attention_forward(
            q,
            k,
            v,
            &positions,
            h.nh,
            h.nkv,
            h.hd,
            h.window,
            h.scale,
            out,
            Some(lse),
        );
    }

    fn backward(&self, dout: &[F], fwd: Forward<F>, h: &Heads<F>, grads: Grads<F>) {
        backward_blocks(dout, fwd, h, grads, exact_block);
    }
}

impl AttentionMath<f32> for Bf16 {
    fn forward(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        h: &Heads<f32>,
        out: &mut [f32],
        lse: &mut [f32],
    ) {
        let (t, g, hd) = shape(q, k, lse, h);
        assert!(
            out.len() == q.len() && v.len() == k.len(),
            "out or v misshapen"
        );
        for grp in 0..h.nkv {
            let qg = gather(q, t, h.nh, grp, g, hd);
            let (kg, vg) = (
                gather(k, t, h.nkv, grp, 1, hd),
                gather(v, t, h.nkv, grp, 1, hd),
            );
            let mut og = vec![0f32; t * g * hd];
            let mut lg = vec![0f32; t * g];
            let blocks = og.chunks_mut(BLOCK * g * hd).zip(lg.chunks_mut(BLOCK * g));
            in_balanced_pairs(blocks.enumerate().collect(), |(b, (o_b, l_b))| {
                let s = Span::of(b, t, g, h.window);
                let mut scratch = PackScratch::default();
                let (mut kt, mut vw) = (PackedB::empty(), PackedB::empty());
                let (kb, vb) = (s.keys(&kg, hd), s.keys(&vg, hd));
                pack_rows_into(s.nk, hd, rows_of(kb, hd), &mut kt, None, &mut scratch);
                pack_w_into(s.nk, hd, rows_of(vb, hd), &mut vw, &mut scratch);
                // p (rows, nk) = softmax(scale · q_b · k_bᵀ) over the allowed keys
                let mut p = vec![0f32; s.rows * s.nk];
                let qa = BfRows::from_f32(s.queries(&qg, hd), s.rows, hd, 1.0);
                gemm_bf16(&qa, &kt, &mut p, false, false);
                s.each_allowed(&mut p, |ri, pr| l_b[ri] = softmax_row(pr, h.scale));
                // o_b (rows, hd) = p · v_b
                let pa = BfRows::from_f32(&p, s.rows, s.nk, 1.0);
                gemm_bf16(&pa, &vw, o_b, false, false);
            });
            scatter(&og, out, t, h.nh, grp, g, hd, false);
            scatter(&lg, lse, t, h.nh, grp, g, 1, false);
        }
    }

    fn backward(&self, dout: &[f32], fwd: Forward<f32>, h: &Heads<f32>, grads: Grads<f32>) {
        backward_blocks(dout, fwd, h, grads, bf16_block);
    }
}

/// `(T, G, hd)` after checking the operands' shapes.
fn shape<F>(q: &[F], k: &[F], lse: &[F], h: &Heads<F>) -> (usize, usize, usize) {
    assert!(
        h.nkv > 0 && h.nh.is_multiple_of(h.nkv),
        "nh is not a multiple of nkv"
    );
    let t = lse.len() / h.nh;
    assert_eq!(q.len(), t * h.nh * h.hd, "q is not (T, nh, hd)");
    assert_eq!(k.len(), t * h.nkv * h.hd, "k is not (T, nkv, hd)");
    (t, h.nh / h.nkv, h.hd)
}

/// Group `grp`'s rows of `x (T, width, hd)`, `rows_per_t` heads per position, as
/// `(T·rows_per_t, hd)`: row `r = t·G + i` is position `t`, head `grp·G + i`.
fn gather<F: Float>(
    x: &[F],
    t: usize,
    width: usize,
    grp: usize,
    rows_per_t: usize,
    hd: usize,
) -> Vec<F> {
    let mut m = Vec::with_capacity(t * rows_per_t * hd);
    for tt in 0..t {
        let o = (tt * width + grp * rows_per_t) * hd;
        m.extend_from_slice(&x[o..o + rows_per_t * hd]);
    }
    m
}

/// The inverse of [`gather`]: `x (T, width, hd)`'s group rows set to (or, with `add`,
/// increased by) `m`'s.
#[allow(clippy::too_many_arguments)]
fn scatter<F: Float>(
    m: &[F],
    x: &mut [F],
    t: usize,
    width: usize,
    grp: usize,
    rows_per_t: usize,
    hd: usize,
    add: bool,
) {
    let n = rows_per_t * hd;
    for tt in 0..t {
        let dst = &mut x[(tt * width + grp * rows_per_t) * hd..][..n];
        let src = &m[tt * n..][..n];
        if add {
            dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// `decode` for the bf16 packers: rows `r0..r1` of a dense `(rows, cols)` slice.
fn rows_of(x: &[f32], cols: usize) -> impl FnMut(usize, usize, &mut [f32]) + '_ {
    move |r0, r1, out| out.copy_from_slice(&x[r0 * cols..r1 * cols])
}

/// `f` over the query blocks in parallel, returning the results in block order. Causal
/// blocks cost in proportion to their index (block `b` sees `b + 1` blocks of keys), so tasks
/// pair the cheapest with the dearest (`b` with `n − 1 − b`): equal tasks, which the pool
/// shares evenly where lone blocks left the last and dearest on one thread.
fn in_balanced_pairs<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let tasks: Vec<Vec<(usize, T)>> = (0..n.div_ceil(2))
        .map(|i| {
            let mut task = vec![(i, slots[i].take().expect("each block once"))];
            if let Some(x) = slots[n - 1 - i].take() {
                task.push((n - 1 - i, x));
            }
            task
        })
        .collect();
    let mut out: Vec<(usize, R)> = tasks
        .into_par_iter()
        .flat_map_iter(|task| task.into_iter().map(|(i, x)| (i, f(x))))
        .collect();
    out.sort_by_key(|&(i, _)| i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Query block `b` of a group: positions `t0..t0 + rows / g` (`rows` rows of the group's
/// matrices), keys `klo..klo + nk`, the union of what its queries may see under `window`.
#[derive(Clone, Copy)]
struct Span {
    t0: usize,
    g: usize,
    klo: usize,
    rows: usize,
    nk: usize,
    window: Option<usize>,
}

impl Span {
    fn of(b: usize, t: usize, g: usize, window: Option<usize>) -> Span {
        let (t0, t1) = (b * BLOCK, ((b + 1) * BLOCK).min(t));
        let klo = key_range(t0, window).0;
        Span {
            t0,
            g,
            klo,
            rows: (t1 - t0) * g,
            nk: t1 - klo,
            window,
        }
    }
    /// The block's rows of a group matrix `(T·G, hd)`.
    fn queries<'x, F>(&self, x: &'x [F], hd: usize) -> &'x [F] {
        &x[self.t0 * self.g * hd..][..self.rows * hd]
    }
    /// The block's keys of a group matrix `(T, hd)`.
    fn keys<'x, F>(&self, x: &'x [F], hd: usize) -> &'x [F] {
        &x[self.klo * hd..][..self.nk * hd]
    }
    /// Zeroes each row of a score matrix `s (rows, nk)` outside the keys it may attend, and
    /// hands `f` the row's index and its allowed part.
    fn each_allowed<F: Float>(&self, s: &mut [F], mut f: impl FnMut(usize, &mut [F])) {
        for (ri, row) in s.chunks_mut(self.nk).enumerate() {
            let (a, b) = keys_in_tile(self.t0 + ri / self.g, self.window, self.klo, self.nk);
            row[..a].fill(F::ZERO);
            row[b..].fill(F::ZERO);
            f(ri, &mut row[a..b]);
        }
    }
}

/// What one query block's backward reads: its rows of the group's queries, output
/// gradients, log-sum-exps and `δ`; its keys and values.
struct Block<'x, F> {
    span: Span,
    hd: usize,
    scale: F,
    q: &'x [F],
    dout: &'x [F],
    lse: &'x [F],
    delta: &'x [F],
    k: &'x [F],
    v: &'x [F],
}

impl<F: Float> Block<'_, F> {
    /// `s (rows, nk)` scores in, probabilities `exp(scale·s − lse)` out, zero where masked.
    fn probs(&self, s: &mut [F]) {
        self.span
            .each_allowed(s, |ri, pr| probs_from_lse(pr, self.scale, self.lse[ri]));
    }
    /// `dp (rows, nk)` in, score gradients `scale · p ⊙ (dp − δ)` out.
    fn score_grads(&self, dp: &mut [F], p: &[F]) {
        let nk = self.span.nk;
        for (ri, (dr, pr)) in dp.chunks_mut(nk).zip(p.chunks(nk)).enumerate() {
            score_grads(dr, pr, self.scale, self.delta[ri]);
        }
    }
}

/// The backward over query blocks in parallel, `block` computing one: it writes its rows of
/// `dq` and returns its contribution `(dk, dv)` to its keys, summed afterwards in block order
/// (so the result does not depend on the thread count).
fn backward_blocks<F: Float>(
    dout: &[F],
    fwd: Forward<F>,
    h: &Heads<F>,
    grads: Grads<F>,
    block: impl Fn(&Block<F>, &mut [F]) -> (Vec<F>, Vec<F>) + Sync,
) {
    let Forward { q, k, v, out, lse } = fwd;
    let Grads { dq, dk, dv } = grads;
    let (t, g, hd) = shape(q, k, lse, h);
    assert!(dout.len() == q.len() && out.len() == q.len() && dq.len() == q.len());
    assert!(v.len() == k.len() && dk.len() == k.len() && dv.len() == k.len());
    for grp in 0..h.nkv {
        let (qg, dog, og) = (
            gather(q, t, h.nh, grp, g, hd),
            gather(dout, t, h.nh, grp, g, hd),
            gather(out, t, h.nh, grp, g, hd),
        );
        let (kg, vg) = (
            gather(k, t, h.nkv, grp, 1, hd),
            gather(v, t, h.nkv, grp, 1, hd),
        );
        let lg = gather(lse, t, h.nh, grp, g, 1);
        // δ (T·G) = do·o per row
        let delta: Vec<F> = dog
            .chunks(hd)
            .zip(og.chunks(hd))
            .map(|(a, b)| smolt_kernels::float::dot_product(a, b))
            .collect();
        let mut dqg = vec![F::ZERO; t * g * hd];
        let blocks = dqg.chunks_mut(BLOCK * g * hd).enumerate().collect();
        let parts: Vec<(usize, Vec<F>, Vec<F>)> = in_balanced_pairs(blocks, |(b, dq_b)| {
            let span = Span::of(b, t, g, h.window);
            let (r0, r1) = (span.t0 * g, span.t0 * g + span.rows);
            let blk = Block {
                span,
                hd,
                scale: h.scale,
                q: span.queries(&qg, hd),
                dout: span.queries(&dog, hd),
                lse: &lg[r0..r1],
                delta: &delta[r0..r1],
                k: span.keys(&kg, hd),
                v: span.keys(&vg, hd),
            };
            let (dk_b, dv_b) = block(&blk, dq_b);
            (span.klo, dk_b, dv_b)
        });
        let mut dkg = vec![F::ZERO; t * hd];
        let mut dvg = vec![F::ZERO; t * hd];
        for (klo, dk_b, dv_b) in parts {
            let n = dk_b.len();
            let add =
                |dst: &mut [F], src: &[F]| dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
            add(&mut dkg[klo * hd..klo * hd + n], &dk_b);
            add(&mut dvg[klo * hd..klo * hd + n], &dv_b);
        }
        scatter(&dqg, dq, t, h.nh, grp, g, hd, true);
        scatter(&dkg, dk, t, h.nkv, grp, 1, hd, true);
        scatter(&dvg, dv, t, h.nkv, grp, 1, hd, true);
    }
}

/// One block's backward in `F`: `dq_b` written, `(dk_b, dv_b)` returned.
fn exact_block<F: Float>(b: &Block<F>, dq_b: &mut [F]) -> (Vec<F>, Vec<F>) {
    let (rows, nk, hd) = (b.span.rows, b.span.nk, b.hd);
    // p (rows, nk) = exp(scale · q_b · k_bᵀ − lse)
    let mut p = vec![F::ZERO; rows * nk];
    serial::matmul_nt(b.q, b.k, rows, hd, nk, &mut p, false);
    b.probs(&mut p);
    // dv_b (nk, hd) = pᵀ · do_b
    let mut dv_b = vec![F::ZERO; nk * hd];
    serial::matmul_tn(&p, b.dout, nk, rows, hd, &mut dv_b, false);
    // dp (rows, nk) = do_b · v_bᵀ;  ds = scale · p ⊙ (dp − δ)
    let mut ds = vec![F::ZERO; rows * nk];
    serial::matmul_nt(b.dout, b.v, rows, hd, nk, &mut ds, false);
    b.score_grads(&mut ds, &p);
    // dq_b (rows, hd) = ds · k_b;  dk_b (nk, hd) = dsᵀ · q_b
    serial::matmul_nn(&ds, b.k, rows, nk, hd, dq_b, false);
    let mut dk_b = vec![F::ZERO; nk * hd];
    serial::matmul_tn(&ds, b.q, nk, rows, hd, &mut dk_b, false);
    (dk_b, dv_b)
}

/// [`exact_block`] with the five products in bf16 (f32 accumulation), on the calling thread.
/// Each operand is rounded once: `k_b` packed both ways (for the scores and for `dq`), `v_b`
/// for `dp`, `q_b` and `do_b` as the `b` of `dk` and `dv`.
fn bf16_block(b: &Block<f32>, dq_b: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let (rows, nk, hd) = (b.span.rows, b.span.nk, b.hd);
    let mut scratch = PackScratch::default();
    let (mut kt, mut kw, mut vt, mut qw, mut dow) = (
        PackedB::empty(),
        PackedB::empty(),
        PackedB::empty(),
        PackedB::empty(),
        PackedB::empty(),
    );
    kw.reshape(nk, hd);
    pack_rows_into(
        nk,
        hd,
        rows_of(b.k, hd),
        &mut kt,
        Some((&mut kw, 0)),
        &mut scratch,
    );
    pack_rows_into(nk, hd, rows_of(b.v, hd), &mut vt, None, &mut scratch);
    pack_w_into(rows, hd, rows_of(b.q, hd), &mut qw, &mut scratch);
    pack_w_into(rows, hd, rows_of(b.dout, hd), &mut dow, &mut scratch);
    // p (rows, nk) = exp(scale · q_b · k_bᵀ − lse)
    let mut p = vec![0f32; rows * nk];
    gemm_bf16(
        &BfRows::from_f32(b.q, rows, hd, 1.0),
        &kt,
        &mut p,
        false,
        false,
    );
    b.probs(&mut p);
    // dv_b (nk, hd) = pᵀ · do_b
    let mut dv_b = vec![0f32; nk * hd];
    let pt = BfRows::from_f32_transposed(&p, rows, nk, 1.0);
    gemm_bf16(&pt, &dow, &mut dv_b, false, false);
    // dp (rows, nk) = do_b · v_bᵀ;  ds = scale · p ⊙ (dp − δ)
    let mut ds = vec![0f32; rows * nk];
    gemm_bf16(
        &BfRows::from_f32(b.dout, rows, hd, 1.0),
        &vt,
        &mut ds,
        false,
        false,
    );
    b.score_grads(&mut ds, &p);
    // dq_b (rows, hd) = ds · k_b;  dk_b (nk, hd) = dsᵀ · q_b
    gemm_bf16(
        &BfRows::from_f32(&ds, rows, nk, 1.0),
        &kw,
        dq_b,
        false,
        false,
    );
    let mut dk_b = vec![0f32; nk * hd];
    let dst = BfRows::from_f32_transposed(&ds, rows, nk, 1.0);
    gemm_bf16(&dst, &qw, &mut dk_b, false, false);
    (dk_b, dv_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_kernels_backward() {
        // Several query blocks, windows shorter and longer than a block, GQA and MHA.
        for &(t, nh, nkv, hd, window) in &[
            (300, 4, 1, 8, Some(50)),
            (300, 4, 2, 8, None),
            (130, 2, 2, 4, Some(200)),
            (5, 2, 1, 4, Some(2)),
        ] {
            let q = rand(t * nh * hd, 1);
            let k = rand(t * nkv * hd, 2);
            let v = rand(t * nkv * hd, 3);
            let dout = rand(t * nh * hd, 4);
            let pos: Vec<usize> = (0..t).collect();
            let scale = 0.7;
            let mut out = vec![0.0; q.len()];
            let mut lse = vec![0.0; t * nh];
            smolt_kernels::attention_forward(
                &q,
                &k,
                &v,
                &pos,
                nh,
                nkv,
                hd,
                window,
                scale,
                &mut out,
                Some(&mut lse),
            );
            let init = |n, s| rand(n, s);
            let (mut dq, mut dk, mut dv) = (init(q.len(), 5), init(k.len(), 6), init(v.len(), 7));
            let (mut eq, mut ek, mut ev) = (dq.clone(), dk.clone(), dv.clone());
            let h = Heads {
                nh,
                nkv,
                hd,
                window,
                scale,
            };
            let grads = (&mut dq[..], &mut dk[..], &mut dv[..]);
            backward(&Exact, &dout, [&q, &k, &v, &out, &lse], &h, grads);
            smolt_kernels::attention_backward(
                &dout, &q, &k, &v, &out, &lse, &pos, nh, nkv, hd, window, scale, &mut eq, &mut ek,
                &mut ev,
            );
            for (name, a, b) in [("dq", &dq, &eq), ("dk", &dk, &ek), ("dv", &dv, &ev)] {
                for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                    assert!(
                        (x - y).abs() < 1e-12 * (1.0 + y.abs()),
                        "{name}[{i}] {x} vs {y} (t {t}, window {window:?})"
                    );
                }
            }
        }
    }

    /// `math`'s backward given `[q, k, v, out, lse]`, into `(dq, dk, dv)`.
    fn backward<F: Float>(
        math: &dyn AttentionMath<F>,
        dout: &[F],
        [q, k, v, out, lse]: [&[F]; 5],
        h: &Heads<F>,
        (dq, dk, dv): (&mut [F], &mut [F], &mut [F]),
    ) {
        math.backward(dout, Forward { q, k, v, out, lse }, h, Grads { dq, dk, dv });
    }

    /// Relative Frobenius distance `|a − b| / |b|`.
    fn rel(a: &[f32], b: &[f64]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
        let n: f64 = b.iter().map(|y| y * y).sum();
        (d / n).sqrt()
    }

    /// The bf16 arithmetic against the exact one in f64, on Gemma's head shape (4 query heads
    /// over one KV head of 256) and on odd ones (GQA with two groups, a window, lengths off
    /// the block and tile sizes). bf16 keeps 8 significant bits, so each product is off by
    /// about 2⁻⁹ relative; a wrong index or a missed mask is off by O(1).
    #[test]
    fn bf16_lands_near_the_exact_arithmetic() {
        for &(t, nh, nkv, hd, window) in &[
            (200, 4, 1, 256, None),
            (150, 4, 2, 40, Some(70)),
            (7, 2, 1, 16, Some(3)),
        ] {
            let q = rand(t * nh * hd, 11);
            let k = rand(t * nkv * hd, 12);
            let v = rand(t * nkv * hd, 13);
            let dout = rand(t * nh * hd, 14);
            let h64 = Heads {
                nh,
                nkv,
                hd,
                window,
                scale: 3.0 / (hd as f64).sqrt(),
            };
            let h32 = Heads {
                nh,
                nkv,
                hd,
                window,
                scale: h64.scale as f32,
            };
            let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let (mut out, mut lse) = (vec![0.0; q.len()], vec![0.0; t * nh]);
            Exact.forward(&q, &k, &v, &h64, &mut out, &mut lse);
            let (mut o32, mut l32) = (vec![0f32; q.len()], vec![0f32; t * nh]);
            Bf16.forward(&f(&q), &f(&k), &f(&v), &h32, &mut o32, &mut l32);
            let (ro, rl) = (rel(&o32, &out), rel(&l32, &lse));
            eprintln!("t {t} hd {hd}: out {ro:.1e}, lse {rl:.1e}");
            assert!(ro < 1e-2 && rl < 1e-2, "out {ro:.1e}, lse {rl:.1e}");

            let (mut dq, mut dk, mut dv) =
                (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; k.len()]);
            let grads = (&mut dq[..], &mut dk[..], &mut dv[..]);
            backward(&Exact, &dout, [&q, &k, &v, &out, &lse], &h64, grads);
            // Accumulating: start from ones, subtract them after.
            let ones = |n| vec![1f32; n];
            let (mut gq, mut gk, mut gv) = (ones(q.len()), ones(k.len()), ones(k.len()));
            let (d32, q32, k32, v32) = (f(&dout), f(&q), f(&k), f(&v));
            let grads = (&mut gq[..], &mut gk[..], &mut gv[..]);
            backward(&Bf16, &d32, [&q32, &k32, &v32, &o32, &l32], &h32, grads);
            for (name, got, want) in [
                ("dq", &mut gq, &dq),
                ("dk", &mut gk, &dk),
                ("dv", &mut gv, &dv),
            ] {
                got.iter_mut().for_each(|x| *x -= 1.0);
                let r = rel(got, want);
                eprintln!("  {name} {r:.1e}");
                assert!(
                    r < 1e-2,
                    "{name} off by {r:.1e} (t {t}, hd {hd}, window {window:?})"
                );
            }
        }
    }
}
