//! Fused LM head + cross-entropy over a huge tied vocabulary (Gemma: 262,144 × 640), in
//! vocabulary chunks with an online log-sum-exp: the `N × V` logits never exist, and the
//! embedding is visited (dequantized) once.
//!
//! For a row `h` with target `t`, `loss = lse(L) − L_t` with logits `L_v = h·E_v`, and
//! `dloss/dh = Σ_v softmax(L)_v·E_v − E_t`. Both sums run over the vocabulary, so one pass can
//! carry, per row, the running max `m`, the running `s = Σ exp(L_v − m)` and the running
//! `acc = Σ exp(L_v − m)·E_v`, rescaling `s` and `acc` by `exp(m_old − m_new)` when the max grows;
//! at the end `dloss/dh = acc / s − E_t`. This is one pass where the usual scheme (pass 1: lse,
//! pass 2: recompute logits for the gradient) takes two: it saves a third of the head's FLOPs
//! and half of its dequantization, for one `N × C` accumulator per group.

use crate::bf16::LineVec;
use crate::matmul::gemm_strided;
use crate::simd::multiversion;
use crate::Float;
use rayon::prelude::*;

/// Vocabulary chunks are split into at most this many contiguous groups, processed in parallel
/// and merged in group order. A fixed count, not the thread count, so the loss and gradient are
/// bit-identical whatever the pool size.
const GROUPS: usize = 16;

/// Online softmax state of one group of vocabulary chunks, for all `N` rows.
struct Partial<F> {
    /// Running max of the logits, per row.
    m: Vec<F>,
    /// Σ exp(L − m), per row.
    s: Vec<F>,
    /// The target's logit if the target fell in this group, else 0 (exactly one group has it).
    target_logit: Vec<F>,
    /// Σ exp(L − m)·E_v, `(N, C)`; empty when no gradient is wanted.
    acc: LineVec<F>,
}

multiversion! {
    /// `x ← exp(x − m)` in place; returns `Σ x` (16 running sums, added in lane order).
    fn exp_shift_sum<F: Float>(x: &mut [F], m: F) -> F {
        let mut acc = [F::ZERO; 16];
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
                *v = (*v - m).exp_approx();
                *a += *v;
            }
        }
        let mut sum = F::ZERO;
        for v in chunks.into_remainder() {
            *v = (*v - m).exp_approx();
            sum += *v;
        }
        acc.iter().fold(F::ZERO, |s, &a| s + a) + sum
    }
}

multiversion! {
    /// `Σ exp(x − m)` without writing `x`, in 16 running sums: a softmax's denominator once its
    /// max `m` is known (a decoder's chosen-token probability over 262,144 logits per token).
    /// Entries of −∞ (masked tokens) add nothing measurable: [`Float::exp_approx`] of anything
    /// below −87.3 is at most 1.2e-38.
    pub fn exp_shifted_sum<F: Float>(x: &[F], m: F) -> F {
        let mut acc = [F::ZERO; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += (v - m).exp_approx();
            }
        }
        let tail = chunks.remainder().iter().fold(F::ZERO, |s, &v| s + (v - m).exp_approx());
        acc.iter().fold(F::ZERO, |s, &a| s + a) + tail
    }
}

multiversion! {
    /// `x.iter().fold(init, max)`, in 16 lanes: the serial fold is one dependent compare per
    /// element. The same value bit for bit: `max` picks among equal values by position, which
    /// only matters for ±0 (the scores are finite or −∞), so a zero result is recomputed
    /// serially.
    fn running_max<F: Float>(x: &[F], init: F) -> F {
        let mut lanes = [init; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = l.max(v);
            }
        }
        let m = chunks.remainder().iter().fold(lanes.iter().fold(init, |a, &b| a.max(b)), |a, &b| a.max(b));
        if m == F::ZERO {
            x.iter().fold(init, |a, &b| a.max(b))
        } else {
            m
        }
    }
}

/// The two products of one vocabulary chunk, however the output embedding `E (vocab, C)` is
/// stored: [`linear_cross_entropy_with`] runs the online softmax around them.
pub trait ChunkProducts<F>: Sync {
    /// Per-group scratch (a decoded chunk, say), made once per group.
    type Scratch: Send;
    fn scratch(&self) -> Self::Scratch;
    /// `l (N, v1 − v0) = h · E[v0..v1]ᵀ` for the `h` this value was built over.
    fn logits(&self, s: &mut Self::Scratch, v0: usize, v1: usize, l: &mut [F]);
    /// `acc (N, C) += p (N, v1 − v0) · E[v0..v1]`, called right after `logits` of that chunk.
    fn accumulate(&self, s: &mut Self::Scratch, v0: usize, v1: usize, p: &[F], acc: &mut [F]);
    /// `out (C) = E[t]`, the same values the products use.
    fn row(&self, t: usize, out: &mut [F]);
    /// Whether the softmax may use [`Float::exp_approx`] (vectorised, within 2 ulp) instead
    /// of libm's `exp` with a serial sum: the dense (reference) path keeps the latter, so its
    /// numbers stay those the PEFT fixture was matched with.
    fn approx_exp(&self) -> bool {
        false
    }
}

/// The embedding as dense rows fetched chunk by chunk, products by f32/f64 gemm.
struct DenseChunks<'a, F, E> {
    h: &'a [F],
    n: usize,
    cols: usize,
    chunk_rows: usize,
    embed_rows: E,
}

impl<F: Float, E: Fn(usize, usize, &mut [F]) + Sync> ChunkProducts<F> for DenseChunks<'_, F, E> {
    type Scratch = Vec<F>;
    fn scratch(&self) -> Vec<F> {
        vec![F::ZERO; self.chunk_rows * self.cols]
    }
    fn logits(&self, e: &mut Vec<F>, v0: usize, v1: usize, l: &mut [F]) {
        let (n, cols, len) = (self.n, self.cols, v1 - v0);
        let e = &mut e[..len * cols];
        (self.embed_rows)(v0, v1, e);
        // L (N, len) = h (N, C) · E_chunk (len, C)^T. Serial gemm: the groups are the
        // parallelism.
        gemm_strided(
            false,
            n,
            len,
            cols,
            l,
            false,
            self.h,
            (cols, 1),
            e,
            (1, cols),
        );
    }
    fn accumulate(&self, e: &mut Vec<F>, v0: usize, v1: usize, p: &[F], acc: &mut [F]) {
        let (n, cols, len) = (self.n, self.cols, v1 - v0);
        // acc (N, C) += exp(L − m) (N, len) · E_chunk (len, C)
        gemm_strided(
            false,
            n,
            cols,
            len,
            acc,
            true,
            p,
            (len, 1),
            &e[..len * cols],
            (cols, 1),
        );
    }
    fn row(&self, t: usize, out: &mut [F]) {
        (self.embed_rows)(t, t + 1, out);
    }
}

/// Mean cross-entropy of the logits `h · E^T` against `targets`, and its gradient with respect
/// to `h`, without materialising the logits.
///
/// - `h` is `(N, C)`: the final hidden states (after the final norm) at the `N` positions that
///   have a target; `targets` is `(N)`, each `< vocab`.
/// - `embed_rows(v0, v1, out)` must fill `out` (`(v1 − v0, C)`) with rows `[v0, v1)` of the
///   `(vocab, C)` output embedding; it is called once per chunk of `chunk_rows` rows (from
///   several threads at once, hence `Sync`) and once per target row.
/// - `dh`, if given, is `(N, C)` and ACCUMULATES `grad_scale · d(mean loss)/dh`; `grad_scale`
///   lets a micro-batch weight its rows by its share of the batch's target tokens.
///
/// Returns the mean loss over the `N` rows (0 if `N = 0`).
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy<F: Float, E>(
    h: &[F],
    targets: &[u32],
    cols: usize,
    vocab: usize,
    chunk_rows: usize,
    embed_rows: E,
    dh: Option<&mut [F]>,
    grad_scale: F,
) -> F
where
    E: Fn(usize, usize, &mut [F]) + Sync,
{
    let n = targets.len();
    assert_eq!(h.len(), n * cols, "h is not (N, C)");
    let products = DenseChunks {
        h,
        n,
        cols,
        chunk_rows,
        embed_rows,
    };
    linear_cross_entropy_with(
        &products, n, targets, cols, vocab, chunk_rows, dh, grad_scale,
    )
}

/// [`linear_cross_entropy`] over any storage of the embedding: `products` computes each
/// chunk's two products for the `N` rows it was built over.
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy_with<F: Float, P: ChunkProducts<F>>(
    products: &P,
    n: usize,
    targets: &[u32],
    cols: usize,
    vocab: usize,
    chunk_rows: usize,
    dh: Option<&mut [F]>,
    grad_scale: F,
) -> F {
    assert_eq!(targets.len(), n, "targets is not (N)");
    assert!(
        chunk_rows > 0 && vocab > 0 && cols > 0,
        "empty vocabulary, chunk or row"
    );
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        panic!("target {t} is outside the vocabulary of {vocab}");
    }
    if n == 0 {
        return F::ZERO;
    }
    let want_grad = dh.is_some();
    let n_chunks = vocab.div_ceil(chunk_rows);
    let n_groups = n_chunks.min(GROUPS);

    let run_group = |gi: usize| -> Partial<F> {
        let (c0, c1) = (gi * n_chunks / n_groups, (gi + 1) * n_chunks / n_groups);
        let mut p = Partial {
            m: vec![F::NEG_INFINITY; n],
            s: vec![F::ZERO; n],
            target_logit: vec![F::ZERO; n],
            // On cache lines, as the logits: the products write both in tiles.
            acc: LineVec::filled(if want_grad { n * cols } else { 0 }, F::ZERO),
        };
        let mut scratch = products.scratch();
        let mut logits = LineVec::filled(n * chunk_rows, F::ZERO);
        for c in c0..c1 {
            let (v0, v1) = (c * chunk_rows, ((c + 1) * chunk_rows).min(vocab));
            let len = v1 - v0;
            let l = &mut logits[..n * len];
            products.logits(&mut scratch, v0, v1, l);
            for r in 0..n {
                let lr = &mut l[r * len..][..len];
                let t = targets[r] as usize;
                if (v0..v1).contains(&t) {
                    p.target_logit[r] = lr[t - v0];
                }
                let m_new = running_max::<F>(lr, p.m[r]);
                let sum = if products.approx_exp() {
                    exp_shift_sum::<F>(lr, m_new)
                } else {
                    let mut sum = F::ZERO;
                    for x in lr.iter_mut() {
                        *x = (*x - m_new).exp();
                        sum += *x;
                    }
                    sum
                };
                if m_new != p.m[r] {
                    let corr = (p.m[r] - m_new).exp();
                    p.s[r] *= corr;
                    if want_grad {
                        crate::float::scale_in_place(corr, &mut p.acc[r * cols..][..cols]);
                    }
                    p.m[r] = m_new;
                }
                p.s[r] += sum;
            }
            if want_grad {
                products.accumulate(&mut scratch, v0, v1, l, &mut p.acc);
            }
        }
        p
    };
    let parts: Vec<Partial<F>> = if n * vocab * cols >= 1 << 20 {
        (0..n_groups).into_par_iter().map(run_group).collect()
    } else {
        (0..n_groups).map(run_group).collect()
    };

    // Merge the groups in order (fixed order: deterministic).
    let mut parts = parts.into_iter();
    let mut tot = parts.next().expect("at least one group");
    for p in parts {
        for r in 0..n {
            let m = tot.m[r].max(p.m[r]);
            let (ca, cb) = ((tot.m[r] - m).exp(), (p.m[r] - m).exp());
            tot.s[r] = tot.s[r] * ca + p.s[r] * cb;
            tot.target_logit[r] += p.target_logit[r];
            if want_grad {
                let (a, b) = (&mut tot.acc[r * cols..][..cols], &p.acc[r * cols..][..cols]);
                for (a, &b) in a.iter_mut().zip(b) {
                    *a = *a * ca + b * cb;
                }
            }
            tot.m[r] = m;
        }
    }

    let mut loss = 0.0f64;
    for r in 0..n {
        // loss_r = lse − L_t
        loss += (tot.m[r] + tot.s[r].ln() - tot.target_logit[r]).to_f64();
    }
    if let Some(dh) = dh {
        assert_eq!(dh.len(), n * cols, "dh is not (N, C)");
        let k = grad_scale / F::from_usize(n);
        let mut et = vec![F::ZERO; cols];
        for r in 0..n {
            let t = targets[r] as usize;
            products.row(t, &mut et);
            let inv_s = F::ONE / tot.s[r];
            let (dr, ar) = (&mut dh[r * cols..][..cols], &tot.acc[r * cols..][..cols]);
            // d loss_r / dh_r = softmax·E − E_t = acc / s − E_t
            for ((d, &a), &e) in dr.iter_mut().zip(ar).zip(&et) {
                *d += k * (a * inv_s - e);
            }
        }
    }
    F::from_f64(loss / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    fn reference(h: &[f64], e: &[f64], targets: &[u32], cols: usize) -> f64 {
        let n = targets.len();
        let v = e.len() / cols;
        let mut loss = 0.0;
        for r in 0..n {
            let l: Vec<f64> = (0..v)
                .map(|j| (0..cols).map(|c| h[r * cols + c] * e[j * cols + c]).sum())
                .collect();
            let mx = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + l.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
            loss += lse - l[targets[r] as usize];
        }
        loss / n as f64
    }

    fn rows_of(e: &[f64], cols: usize) -> impl Fn(usize, usize, &mut [f64]) + Sync + '_ {
        move |v0, v1, out| out.copy_from_slice(&e[v0 * cols..v1 * cols])
    }

    /// The 16-lane max is the serial fold bit for bit, signed zeros and −∞ included.
    #[test]
    fn running_max_is_the_serial_fold() {
        // The kernel's fold: `Float::max` (not f32's own, which may pick either zero).
        let serial = |x: &[f32], init: f32| x.iter().fold(init, |a, &b| Float::max(a, b));
        let mut x = randn(1000, 7);
        for n in [0, 1, 15, 16, 17, 100, 1000] {
            for init in [f32::NEG_INFINITY, 0.5, 9.0] {
                let (got, want) = (running_max::<f32>(&x[..n], init), serial(&x[..n], init));
                assert_eq!(got.to_bits(), want.to_bits(), "n {n} init {init}");
            }
        }
        // A zero maximum, both signs, in different lanes and orders.
        x.iter_mut().for_each(|v| *v = -v.abs() - 1.0);
        for (i, j) in [(3, 40), (40, 3), (5, 21), (900, 899)] {
            let mut y = x.clone();
            (y[i], y[j]) = (-0.0, 0.0);
            for init in [f32::NEG_INFINITY, -0.0, 0.0] {
                let (got, want) = (running_max::<f32>(&y, init), serial(&y, init));
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "zeros at {i}, {j}, init {init}"
                );
            }
        }
        let inf = vec![f32::NEG_INFINITY; 40];
        assert_eq!(
            running_max::<f32>(&inf, f32::NEG_INFINITY),
            f32::NEG_INFINITY
        );
    }

    #[test]
    fn loss_and_grad_match_reference_and_finite_differences() {
        let (n, cols, vocab) = (5, 6, 37);
        let h = randn64(n * cols, 1);
        let mut e = randn64(vocab * cols, 2);
        e.iter_mut().for_each(|x| *x *= 2.0); // peaked softmaxes too
        let targets = [0u32, 36, 17, 17, 5];
        let want = reference(&h, &e, &targets, cols);
        // Chunk sizes: one row, uneven, more than 16 chunks, one chunk, bigger than V.
        for chunk in [1, 4, 10, 37, 64] {
            let dh0 = randn64(n * cols, 3);
            let mut dh = dh0.clone();
            let loss = linear_cross_entropy(
                &h,
                &targets,
                cols,
                vocab,
                chunk,
                rows_of(&e, cols),
                Some(&mut dh),
                0.5,
            );
            assert!(
                (loss - want).abs() < 1e-12,
                "chunk {chunk}: loss {loss} vs {want}"
            );
            let fd = fd_grad(&h, 1e-5, |hs| reference(hs, &e, &targets, cols));
            let got: Vec<f64> = dh.iter().zip(&dh0).map(|(a, b)| (a - b) / 0.5).collect();
            assert_close(&got, &fd, 1e-8, &format!("dh chunk {chunk}"));
            let no_grad = linear_cross_entropy(
                &h,
                &targets,
                cols,
                vocab,
                chunk,
                rows_of(&e, cols),
                None,
                1.0,
            );
            assert_eq!(no_grad, loss);
        }
    }

    #[test]
    fn f32_large_vocab_matches_f64_and_is_deterministic() {
        let (n, cols, vocab) = (8, 64, 5000);
        let h = randn(n * cols, 4);
        let e = randn(vocab * cols, 5);
        let targets: Vec<u32> = (0..n as u32).map(|i| i * 611 % vocab as u32).collect();
        let rows32 =
            |v0: usize, v1: usize, out: &mut [f32]| out.copy_from_slice(&e[v0 * cols..v1 * cols]);
        let mut dh = vec![0.0f32; n * cols];
        let loss = linear_cross_entropy(&h, &targets, cols, vocab, 256, rows32, Some(&mut dh), 1.0);
        let (h6, e6) = (to64(&h), to64(&e));
        let mut dh6 = vec![0.0f64; n * cols];
        let loss6 = linear_cross_entropy(
            &h6,
            &targets,
            cols,
            vocab,
            256,
            rows_of(&e6, cols),
            Some(&mut dh6),
            1.0,
        );
        assert!(
            (loss as f64 - loss6).abs() < 1e-4 * loss6.abs().max(1.0),
            "{loss} vs {loss6}"
        );
        assert!((loss6 - reference(&h6, &e6, &targets, cols)).abs() < 1e-10);
        assert_close(&dh, &dh6, 1e-4, "dh f32");
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let mut serial = vec![0.0f32; n * cols];
        let l1 = one.install(|| {
            linear_cross_entropy(
                &h,
                &targets,
                cols,
                vocab,
                256,
                rows32,
                Some(&mut serial),
                1.0,
            )
        });
        assert_eq!(
            l1.to_bits(),
            loss.to_bits(),
            "thread count changed the loss"
        );
        assert!(serial
            .iter()
            .zip(&dh)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        for _ in 0..3 {
            let mut again = vec![0.0f32; n * cols];
            let l2 = linear_cross_entropy(
                &h,
                &targets,
                cols,
                vocab,
                256,
                rows32,
                Some(&mut again),
                1.0,
            );
            assert_eq!(l2.to_bits(), loss.to_bits());
            assert!(again
                .iter()
                .zip(&dh)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
