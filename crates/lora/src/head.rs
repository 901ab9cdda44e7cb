//! The LM head fused with the cross-entropy and its gradient, over vocabulary chunks.
//!
//! Gemma's tied head is 262,144 × 640: the `[n × V]` logits of even 128 positions would be
//! 134 MB and their gradient as much again. Instead the vocabulary is walked in chunks of
//! [`CHUNK`] rows (dequantized on the fly into one scratch buffer), keeping per position only a
//! running max `m`, a running sum `s = Σ exp(z − m)` and — for the gradient — a running
//! `acc = Σ exp(z − m)·e_v` (`d` floats), all rescaled whenever `m` grows, exactly as an online
//! softmax rescales its output in FlashAttention. At the end
//!
//! ```text
//! loss_i = lse_i − z_i[y_i]                     lse_i = m_i + ln s_i
//! dL/dh_i = Σ_v softmax_v·e_v − e_{y_i} = acc_i / s_i − e_{y_i}
//! ```
//!
//! so one pass over the head gives the loss and its gradient (two gemms per chunk: logits and
//! the probability-weighted rows), as Cut Cross-Entropy and Liger do.

use crate::base::FrozenLinear;
use rayon::prelude::*;
use smolt_kernels::{matmul_nn, matmul_nt, Float};

/// Vocabulary rows per chunk: the decoded chunk (`CHUNK × d` = 10 MB at d = 640) and the chunk's
/// logits (`n × CHUNK`) stay small, while each gemm is still big enough to run near peak.
pub const CHUNK: usize = 4096;

/// One position's online log-sum-exp: running max `m`, `s = Σ exp(z − m)`, the target's
/// logit `z`, and the factor `corr` by which the last chunk rescaled the running sums.
#[derive(Clone, Copy)]
struct Online<F> {
    m: F,
    s: f64,
    z: F,
    corr: F,
}

/// `Σ_i CE(h_i · headᵀ, targets_i)` (natural log), `h` is `(n, d)`, `targets` `(n)`.
/// If `dh` `(n, d)` is given, `grad_scale · d(Σ CE)/dh` is ADDED to it.
pub fn linear_cross_entropy<F: Float>(
    head: &dyn FrozenLinear<F>,
    h: &[F],
    targets: &[u32],
    grad_scale: F,
    dh: Option<&mut [F]>,
) -> f64 {
    let (vocab, d) = head.shape();
    let n = targets.len();
    assert_eq!(h.len(), n * d, "h is not (n, d)");
    assert!(
        targets.iter().all(|&y| (y as usize) < vocab),
        "target outside the vocabulary"
    );
    if n == 0 {
        return 0.0;
    }
    let want_grad = dh.is_some();
    // Per position: running max, running Σ exp(z − m) (f64: 262k terms), the target's logit.
    let mut rows = vec![
        Online {
            m: F::NEG_INFINITY,
            s: 0.0,
            z: F::ZERO,
            corr: F::ZERO
        };
        n
    ];
    // acc (n, d) = Σ_v exp(z_v − m)·e_v
    let mut acc = if want_grad {
        vec![F::ZERO; n * d]
    } else {
        Vec::new()
    };
    let mut logits = vec![F::ZERO; n * CHUNK.min(vocab)];
    let mut scratch = Vec::new();

    for v0 in (0..vocab).step_by(CHUNK) {
        let v1 = (v0 + CHUNK).min(vocab);
        let c = v1 - v0;
        // e (c, d): head rows v0..v1
        let e = head.rows(v0, v1, &mut scratch);
        // logits (n, c) = h (n, d) · eᵀ
        let lg = &mut logits[..n * c];
        matmul_nt(h, e, n, d, c, lg, false);
        // p (n, c) = exp(logits − m_new), in place; fold the chunk into m and s.
        lg.par_chunks_mut(c)
            .zip(rows.par_iter_mut())
            .zip(targets)
            .for_each(|((lr, st), &y)| {
                let y = y as usize;
                if (v0..v1).contains(&y) {
                    st.z = lr[y - v0];
                }
                let m_new = lr.iter().fold(st.m, |a, &b| a.max(b));
                let mut sum = 0f64;
                for x in lr.iter_mut() {
                    *x = (*x - m_new).exp();
                    sum += x.to_f64();
                }
                // exp(−∞) = 0 on the first chunk, which leaves s and acc at zero.
                st.corr = (st.m - m_new).exp();
                st.s = st.s * st.corr.to_f64() + sum;
                st.m = m_new;
            });
        if want_grad {
            // acc (n, d) = corr ⊙ acc + p (n, c) · e (c, d)
            acc.par_chunks_mut(d)
                .zip(&rows)
                .for_each(|(a, st)| a.iter_mut().for_each(|v| *v *= st.corr));
            matmul_nn(lg, e, n, c, d, &mut acc, true);
        }
    }

    let mut loss = 0f64;
    for st in &rows {
        loss += (st.m.to_f64() + st.s.ln()) - st.z.to_f64();
    }
    if let Some(dh) = dh {
        assert_eq!(dh.len(), n * d, "dh is not (n, d)");
        // dh_i += g·(acc_i / s_i − e_{y_i})
        for i in 0..n {
            let y = targets[i] as usize;
            let ey = head.rows(y, y + 1, &mut scratch);
            let inv = F::from_f64(1.0 / rows[i].s);
            let (dr, ar) = (&mut dh[i * d..][..d], &acc[i * d..][..d]);
            for ((g, &a), &e) in dr.iter_mut().zip(ar).zip(ey) {
                *g += grad_scale * (a * inv - e);
            }
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Dense;

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

    /// The obvious way: full logits, log-softmax.
    fn reference(w: &[f64], h: &[f64], y: &[u32], d: usize) -> f64 {
        let v = w.len() / d;
        h.chunks(d)
            .zip(y)
            .map(|(hr, &yi)| {
                let z: Vec<f64> = w
                    .chunks(d)
                    .map(|wr| wr.iter().zip(hr).map(|(a, b)| a * b).sum())
                    .collect();
                let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = mx + z.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
                assert_eq!(z.len(), v);
                lse - z[yi as usize]
            })
            .sum()
    }

    #[test]
    fn loss_and_gradient_match_reference_across_chunks() {
        // vocab spans three chunks, the last one partial; targets in each chunk.
        let (v, d, n) = (2 * CHUNK + 37, 8, 3);
        let w: Vec<f64> = rand(v * d, 1).iter().map(|x| 3.0 * x).collect();
        let h = rand(n * d, 2);
        let y = [5u32, CHUNK as u32 + 3, (2 * CHUNK + 36) as u32];
        let head = Dense {
            w: w.clone(),
            out: v,
            inp: d,
        };
        let mut dh = vec![0.5; n * d];
        let loss = linear_cross_entropy(&head, &h, &y, 2.0, Some(&mut dh));
        let want = reference(&w, &h, &y, d);
        assert!((loss - want).abs() < 1e-10 * want.abs(), "{loss} vs {want}");
        for k in 0..n * d {
            let eps = 1e-5;
            let (mut hp, mut hm) = (h.clone(), h.clone());
            hp[k] += eps;
            hm[k] -= eps;
            let fd = (reference(&w, &hp, &y, d) - reference(&w, &hm, &y, d)) / (2.0 * eps);
            let got = (dh[k] - 0.5) / 2.0;
            assert!(
                (got - fd).abs() < 1e-7 * (1.0 + fd.abs()),
                "dh[{k}] = {got}, fd {fd}"
            );
        }
        let loss_only = linear_cross_entropy(&head, &h, &y, 1.0, None);
        assert_eq!(loss_only, loss);
    }
}
