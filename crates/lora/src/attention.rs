//! Attention backward as blocks of gemm. The kernels' `attention_backward` walks (query, key)
//! pairs with dot products, recomputing each probability twice; training runs whole sequences,
//! where the same math as a handful of matrix products per block of queries is several times
//! faster. Same inputs, same accumulate-into-gradients contract, checked against it in f64.
//!
//! Forward (per KV group `g`, query row `r = (t, h)` of the group's `G` heads):
//! `s_rj = scale·q_r·k_j`, `p_rj = exp(s_rj − lse_r)` for allowed `j`, `o_r = Σ_j p_rj·v_j`.
//! Backward: `dv_j += Σ_r p_rj·do_r`, `dp_rj = do_r·v_j`, `ds_rj = p_rj·(dp_rj − δ_r)` with
//! `δ_r = do_r·o_r`, `dq_r += scale·Σ_j ds_rj·k_j`, `dk_j += scale·Σ_r ds_rj·q_r`.

use rayon::prelude::*;
use smolt_kernels::attention::{key_range, keys_in_tile, probs_from_lse, score_grads};
use smolt_kernels::matmul::serial;
use smolt_kernels::Float;

/// Query positions per block: the block's score matrix is `(BLOCK·G, keys)`, 0.5 MB for
/// Gemma's 4 heads over 512 keys; blocks are the unit of parallel work, so a 512-token
/// sequence gives eight of them (of unequal cost: causal blocks see more keys the later they
/// sit) for the pool to balance.
const BLOCK: usize = 64;

/// Backward of causal (windowed, grouped-KV) attention over a sequence whose query `t` sits at
/// position `t` and whose keys are the same `T` positions. `q, dout, out` are `(T, nh, hd)`,
/// `k, v` `(T, nkv, hd)`, `lse` `(T, nh)`; `dq, dk, dv` ACCUMULATE.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Float>(
    dout: &[F],
    q: &[F],
    k: &[F],
    v: &[F],
    out: &[F],
    lse: &[F],
    nh: usize,
    nkv: usize,
    hd: usize,
    window: Option<usize>,
    scale: F,
    dq: &mut [F],
    dk: &mut [F],
    dv: &mut [F],
) {
    let t = lse.len() / nh;
    let g = nh / nkv;
    assert_eq!(q.len(), t * nh * hd, "q is not (T, nh, hd)");
    assert_eq!(k.len(), t * nkv * hd, "k is not (T, nkv, hd)");
    assert!(dout.len() == q.len() && out.len() == q.len() && dq.len() == q.len());
    assert!(v.len() == k.len() && dk.len() == k.len() && dv.len() == k.len());
    // Row r = t·G + i of a group's matrices is query position t, head g·G + i.
    let gather = |x: &[F], width: usize, grp: usize, rows_per_t: usize| -> Vec<F> {
        let mut m = Vec::with_capacity(t * rows_per_t * hd);
        for tt in 0..t {
            let o = (tt * width + grp * rows_per_t) * hd;
            m.extend_from_slice(&x[o..o + rows_per_t * hd]);
        }
        m
    };
    for grp in 0..nkv {
        // (T·G, hd) queries, output gradients, outputs; (T, hd) keys and values.
        let (qg, dog, og) = (
            gather(q, nh, grp, g),
            gather(dout, nh, grp, g),
            gather(out, nh, grp, g),
        );
        let (kg, vg) = (gather(k, nkv, grp, 1), gather(v, nkv, grp, 1));
        let lg: Vec<F> = (0..t * g)
            .map(|r| lse[(r / g) * nh + grp * g + r % g])
            .collect();
        // δ (T·G) = do·o per row
        let delta: Vec<F> = dog
            .chunks(hd)
            .zip(og.chunks(hd))
            .map(|(a, b)| smolt_kernels::float::dot_product(a, b))
            .collect();
        // Blocks of queries run in parallel: each owns its rows of dq and returns its
        // contribution to the keys it sees, summed afterwards in block order (so the result
        // does not depend on the thread count).
        let mut dqg = vec![F::ZERO; t * g * hd];
        let parts: Vec<(usize, Vec<F>, Vec<F>)> = dqg
            .par_chunks_mut(BLOCK * g * hd)
            .enumerate()
            .map(|(b, dq_b)| {
                let (t0, t1) = (b * BLOCK, ((b + 1) * BLOCK).min(t));
                let (klo, khi) = (key_range(t0, window).0, t1);
                let (rows, nk) = ((t1 - t0) * g, khi - klo);
                let (r0, r1) = (t0 * g * hd, t1 * g * hd);
                let (kb, vb) = (&kg[klo * hd..khi * hd], &vg[klo * hd..khi * hd]);
                // s (rows, nk) = q_b · k_bᵀ;  p = exp(scale·s − lse), zero where masked
                let mut p = vec![F::ZERO; rows * nk];
                serial::matmul_nt(&qg[r0..r1], kb, rows, hd, nk, &mut p, false);
                for (ri, pr) in p.chunks_mut(nk).enumerate() {
                    let row = t0 * g + ri;
                    let (a, b) = keys_in_tile(row / g, window, klo, nk);
                    pr[..a].fill(F::ZERO);
                    pr[b..].fill(F::ZERO);
                    probs_from_lse(&mut pr[a..b], scale, lg[row]);
                }
                // dv_b (nk, hd) = pᵀ · do_b
                let mut dv_b = vec![F::ZERO; nk * hd];
                serial::matmul_tn(&p, &dog[r0..r1], nk, rows, hd, &mut dv_b, false);
                // dp (rows, nk) = do_b · v_bᵀ;  ds = scale · p ⊙ (dp − δ)
                let mut ds = vec![F::ZERO; rows * nk];
                serial::matmul_nt(&dog[r0..r1], vb, rows, hd, nk, &mut ds, false);
                for (ri, (dr, pr)) in ds.chunks_mut(nk).zip(p.chunks(nk)).enumerate() {
                    score_grads(dr, pr, scale, delta[t0 * g + ri]);
                }
                // dq_b (rows, hd) = ds · k_b;  dk_b (nk, hd) = dsᵀ · q_b
                serial::matmul_nn(&ds, kb, rows, nk, hd, dq_b, false);
                let mut dk_b = vec![F::ZERO; nk * hd];
                serial::matmul_tn(&ds, &qg[r0..r1], nk, rows, hd, &mut dk_b, false);
                (klo, dk_b, dv_b)
            })
            .collect();
        let mut dkg = vec![F::ZERO; t * hd];
        let mut dvg = vec![F::ZERO; t * hd];
        for (klo, dk_b, dv_b) in parts {
            let n = dk_b.len();
            let add =
                |dst: &mut [F], src: &[F]| dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
            add(&mut dkg[klo * hd..klo * hd + n], &dk_b);
            add(&mut dvg[klo * hd..klo * hd + n], &dv_b);
        }
        // Scatter the group back into the (T, heads, hd) layouts.
        for tt in 0..t {
            let o = (tt * nh + grp * g) * hd;
            let src = &dqg[tt * g * hd..(tt + 1) * g * hd];
            dq[o..o + g * hd]
                .iter_mut()
                .zip(src)
                .for_each(|(a, &b)| *a += b);
            let o = (tt * nkv + grp) * hd;
            dk[o..o + hd]
                .iter_mut()
                .zip(&dkg[tt * hd..(tt + 1) * hd])
                .for_each(|(a, &b)| *a += b);
            dv[o..o + hd]
                .iter_mut()
                .zip(&dvg[tt * hd..(tt + 1) * hd])
                .for_each(|(a, &b)| *a += b);
        }
    }
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
            attention_backward(
                &dout, &q, &k, &v, &out, &lse, nh, nkv, hd, window, scale, &mut dq, &mut dk,
                &mut dv,
            );
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
}
