//! The LM head fused with the cross-entropy, at the answer positions only.
//!
//! Gemma's tied head is 262,144 × 640: the `[n × V]` logits of even 128 positions would be
//! 134 MB and their gradient as much again. smolt-kernels' `linear_cross_entropy` walks the
//! vocabulary in chunks with an online log-sum-exp and carries the gradient in the same pass;
//! this adapter feeds it the head's rows, decoded chunk by chunk from the file (Q8_0 for Gemma)
//! so no dequantized copy of the table ever exists.

use crate::base::FrozenLinear;
use smolt_kernels::Float;

/// Vocabulary rows per chunk: the decoded chunk (`CHUNK × d`, 5 MB at d = 640) and the chunk's
/// logits (`n × CHUNK`) stay small, while each gemm is still big enough to run near peak.
pub const CHUNK: usize = 2048;

/// `Σ_i CE(h_i · headᵀ, targets_i)` (natural log), `h` is `(n, d)`, `targets` `(n)`.
/// If `dh` `(n, d)` is given, `grad_scale · d(Σ CE)/dh` is ADDED to it.
pub fn linear_cross_entropy<F: Float>(
    head: &dyn FrozenLinear<F>,
    h: &[F],
    targets: &[u32],
    grad_scale: F,
    mut dh: Option<&mut [F]>,
) -> f64 {
    if let Some(loss) = head.cross_entropy(h, targets, grad_scale, dh.as_deref_mut()) {
        return loss;
    }
    let (vocab, d) = head.shape();
    let n = targets.len();
    if n == 0 {
        return 0.0;
    }
    // The kernel differentiates the MEAN over the n rows: scale by n for the sum's gradient.
    let scale = grad_scale * F::from_usize(n);
    let rows = |v0: usize, v1: usize, out: &mut [F]| head.rows_into(v0, v1, out);
    let mean = smolt_kernels::linear_cross_entropy(h, targets, d, vocab, CHUNK, rows, dh, scale);
    mean.to_f64() * n as f64
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
        h.chunks(d)
            .zip(y)
            .map(|(hr, &yi)| {
                let z: Vec<f64> = w
                    .chunks(d)
                    .map(|wr| wr.iter().zip(hr).map(|(a, b)| a * b).sum())
                    .collect();
                let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = mx + z.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
                lse - z[yi as usize]
            })
            .sum()
    }

    #[test]
    fn sum_loss_and_scaled_gradient_match_reference_across_chunks() {
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
