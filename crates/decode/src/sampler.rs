//! Picking the next token from a logit vector.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to turn logits into a token. The default is greedy.
///
/// The order follows HF transformers: divide by `temperature`, keep the `top_k` most likely,
/// then the smallest set whose probability reaches `top_p`, renormalise and draw.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 (or below) is greedy: argmax, lowest id on a tie, no randomness.
    pub temperature: f32,
    /// Keep only the `top_k` highest logits; 0 keeps all.
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens until their probability reaches `top_p`;
    /// 1.0 keeps all.
    pub top_p: f32,
    /// The same seed, parameters and logits always give the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        Self::default()
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// A [`SamplingParams`] with its random stream: one per generated sequence.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Scratch: (token, probability) candidates, reused across calls.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            cand: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The next token for these logits (one vocabulary row). Logits of `-inf` (e.g. masked
    /// by a grammar) are never chosen unless every logit is `-inf`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "no logits to sample from");
        let p = &self.params;
        if p.is_greedy() {
            return argmax(logits);
        }
        // Softmax of logits / T over the candidates, computed relative to the max.
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        if max == f32::NEG_INFINITY {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l > f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp())),
        );
        let by_prob_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(p.top_k - 1, by_prob_desc);
            self.cand.truncate(p.top_k);
        }
        if p.top_p < 1.0 {
            let total: f64 = self.cand.iter().map(|c| c.1 as f64).sum();
            let keep = nucleus(
                &mut self.cand,
                total * p.top_p.max(0.0) as f64,
                by_prob_desc,
            );
            self.cand.truncate(keep);
        }
        let total: f64 = self.cand.iter().map(|c| c.1 as f64).sum();
        let mut r = self.rng.gen::<f64>() * total;
        for &(id, w) in &self.cand {
            r -= w as f64;
            if r < 0.0 {
                return id;
            }
        }
        self.cand.last().expect("at least the max survives").0
    }
}

/// Sorts the head of `cand` by probability and returns how many of them it takes to reach
/// `mass` (at least one). The nucleus is usually a few dozen of 262k tokens, so this sorts
/// growing prefixes found by selection instead of the whole vocabulary.
fn nucleus(
    cand: &mut [(u32, f32)],
    mass: f64,
    cmp: impl Fn(&(u32, f32), &(u32, f32)) -> std::cmp::Ordering + Copy,
) -> usize {
    let mut k = 64.min(cand.len());
    loop {
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, cmp);
        }
        cand[..k].sort_unstable_by(cmp);
        let mut acc = 0.0;
        for (i, c) in cand[..k].iter().enumerate() {
            acc += c.1 as f64;
            if acc >= mass {
                return i + 1;
            }
        }
        if k == cand.len() {
            return k;
        }
        k = (k * 8).min(cand.len());
    }
}

/// Index of the largest logit, the lowest on ties (NaN never wins).
///
/// The maximum over 16 independent lanes first (the compiler vectorises it; a served batch
/// takes one argmax of 262,144 logits per sequence and step, which the one-at-a-time scan
/// with its data-dependent branch made 7% of a 16-sequence server), then the first index
/// holding it.
pub fn argmax(logits: &[f32]) -> u32 {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            // `max` keeps the number where one side is NaN.
            *l = l.max(v);
        }
    }
    let top = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    logits.iter().position(|&v| v == top).unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0]), 1);
        assert_eq!(s.sample(&[f32::NEG_INFINITY, -5.0]), 1);
    }

    /// A plain scan over the numbers (NaN skipped): the first strictly larger one wins; 0
    /// when nothing is a number. (The scan `argmax` replaced returned 0 whenever logit 0
    /// was NaN.)
    fn argmax_reference(logits: &[f32]) -> u32 {
        let mut best: Option<usize> = None;
        for (i, &v) in logits.iter().enumerate() {
            if !v.is_nan() && best.is_none_or(|b| v > logits[b]) {
                best = Some(i);
            }
        }
        best.unwrap_or(0) as u32
    }

    #[test]
    fn argmax_equals_the_first_maximum_scan() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for len in [1usize, 2, 15, 16, 17, 33, 1000, 262_144] {
            for case in 0..7 {
                let mut x: Vec<f32> = (0..len).map(|_| rng.gen_range(-4.0f32..4.0)).collect();
                match case {
                    // Ties: the same maximum at several places, the lowest must win.
                    1 => {
                        for i in (0..len).step_by(7) {
                            x[i] = 9.0;
                        }
                    }
                    // NaN never wins, wherever it is.
                    2 => {
                        for i in (0..len).step_by(5) {
                            x[i] = f32::NAN;
                        }
                    }
                    // A grammar's mask: most logits −∞.
                    3 => {
                        for (i, v) in x.iter_mut().enumerate() {
                            if i % 97 != 3 {
                                *v = f32::NEG_INFINITY;
                            }
                        }
                    }
                    4 => x.iter_mut().for_each(|v| *v = f32::NEG_INFINITY),
                    5 => x.iter_mut().for_each(|v| *v = f32::NAN),
                    // NaN before a masked-out (−∞) row: the number wins.
                    6 => {
                        x.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                        x[0] = f32::NAN;
                    }
                    _ => {}
                }
                assert_eq!(argmax(&x), argmax_reference(&x), "len {len}, case {case}");
            }
        }
    }

    #[test]
    fn top_k_1_is_greedy_whatever_the_temperature() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 2.0, 1.9, -1.0]), 1);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // probabilities ∝ e^(l): 0.64, 0.24, 0.09, 0.03 (T = 1)
        let logits = [3.0f32, 2.0, 1.0, -0.1];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_p: 0.8,
            seed: 3,
            ..Default::default()
        });
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[s.sample(&logits) as usize] += 1;
        }
        assert!(seen[2] == 0 && seen[3] == 0, "{seen:?}");
        // Renormalised: 0.64/0.88 ≈ 0.73.
        let frac = seen[0] as f64 / 2000.0;
        assert!((frac - 0.73).abs() < 0.04, "{frac}");
    }

    #[test]
    fn sampling_follows_the_softmax_of_logits_over_t() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 1/4, 3/4 at T = 1; at T = 2: 1/(1+√3)
        let mut s = Sampler::new(SamplingParams {
            temperature: 2.0,
            seed: 11,
            ..Default::default()
        });
        let n = 20000;
        let ones = (0..n).filter(|_| s.sample(&logits) == 1).count() as f64 / n as f64;
        let want = 3f64.sqrt() / (1.0 + 3f64.sqrt());
        assert!((ones - want).abs() < 0.015, "{ones} vs {want}");
    }

    #[test]
    fn the_seed_determines_the_stream_and_masked_tokens_never_win() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| {
                if i % 3 == 0 {
                    f32::NEG_INFINITY
                } else {
                    (i % 17) as f32 * 0.1
                }
            })
            .collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 50,
            top_p: 0.9,
            seed: 42,
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..100).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = run(&params);
        assert_eq!(a, run(&params));
        assert_ne!(
            a,
            run(&SamplingParams {
                seed: 43,
                ..params.clone()
            })
        );
        assert!(a.iter().all(|&id| id % 3 != 0));
    }

    #[test]
    fn a_large_nucleus_grows_past_the_first_selection() {
        // A flat distribution over 1000 tokens: top_p 0.5 needs 500 of them.
        let logits = vec![0.0f32; 1000];
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, _)| (i as u32, 1.0))
            .collect();
        let k = nucleus(&mut cand, 500.0, |a, b| {
            b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
        });
        assert_eq!(k, 500);
    }
}
