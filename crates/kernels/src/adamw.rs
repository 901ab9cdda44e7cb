//! AdamW (decoupled weight decay, bias-corrected moments) as PyTorch's `torch.optim.AdamW`
//! computes it.

use rayon::prelude::*;

const PAR_MIN_ELEMS: usize = 1 << 16;
const CHUNK: usize = 4096;

/// Hyper-parameters of [`adamw_step`]; the defaults are PyTorch's except `weight_decay`
/// (PyTorch: 0.01; PEFT LoRA recipes mostly use 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWHyper {
    fn default() -> Self {
        AdamWHyper {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One AdamW update of `params` from `grads`, with first and second moments `m`, `v` (zeroed
/// before step 1) updated in place. `step` counts from 1 and drives the bias correction.
///
/// ```text
/// p ← p·(1 − lr·wd)                        decay decoupled from the gradient (the "W")
/// m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
/// p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)
/// ```
pub fn adamw_step(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: u64,
    opt: &AdamWHyper,
) {
    let n = params.len();
    assert!(
        grads.len() == n && m.len() == n && v.len() == n,
        "params, grads, m, v differ in length"
    );
    assert!(step >= 1, "steps count from 1");
    // Bias corrections in f64: 1 − β2^t is tiny for small t with β2 close to 1.
    let bc1 = 1.0 - (opt.beta1 as f64).powf(step as f64);
    let bc2 = 1.0 - (opt.beta2 as f64).powf(step as f64);
    let c = Coeffs {
        b1: opt.beta1,
        b2: opt.beta2,
        eps: opt.eps,
        decay: 1.0 - opt.lr * opt.weight_decay,
        step_size: (opt.lr as f64 / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
    };
    if n > PAR_MIN_ELEMS {
        params
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .zip(grads.par_chunks(CHUNK))
            .for_each(|((p, (m, v)), g)| update(p, g, m, v, &c));
    } else {
        update(params, grads, m, v, &c);
    }
}

struct Coeffs {
    b1: f32,
    b2: f32,
    eps: f32,
    decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
}

fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Coeffs) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        *m = c.b1 * *m + (1.0 - c.b1) * g;
        *v = c.b2 * *v + (1.0 - c.b2) * g * g;
        *p = *p * c.decay - c.step_size * *m / (v.sqrt() / c.bc2_sqrt + c.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::randn;

    /// The textbook formulas with bias-corrected m̂ and v̂, in f64.
    fn reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u64, o: &AdamWHyper) {
        let (lr, b1, b2, eps, wd) = (
            o.lr as f64,
            o.beta1 as f64,
            o.beta2 as f64,
            o.eps as f64,
            o.weight_decay as f64,
        );
        for i in 0..p.len() {
            p[i] -= lr * wd * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(t as i32));
            let vh = v[i] / (1.0 - b2.powi(t as i32));
            p[i] -= lr * mh / (vh.sqrt() + eps);
        }
    }

    #[test]
    fn adamw_matches_reference_over_several_steps() {
        let opt = AdamWHyper {
            lr: 1e-2,
            weight_decay: 0.1,
            ..AdamWHyper::default()
        };
        for n in [10, 100_000] {
            let mut p = randn(n, 1);
            let mut p6: Vec<f64> = p.iter().map(|&x| x as f64).collect();
            let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
            let (mut m6, mut v6) = (vec![0.0; n], vec![0.0; n]);
            for t in 1..=5u64 {
                let g = randn(n, 10 + t);
                let g6: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                adamw_step(&mut p, &g, &mut m, &mut v, t, &opt);
                reference(&mut p6, &g6, &mut m6, &mut v6, t, &opt);
            }
            for (a, b) in p.iter().zip(&p6) {
                assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn first_step_moves_each_param_by_about_lr() {
        // With m̂ = g and v̂ = g² at step 1, the update is lr·sign(g): the bias correction works.
        let opt = AdamWHyper::default();
        let mut p = vec![0.0f32; 3];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        adamw_step(&mut p, &[0.5, -2.0, 1e-3], &mut m, &mut v, 1, &opt);
        for (x, s) in p.iter().zip([-1.0f32, 1.0, -1.0]) {
            assert!((x - s * opt.lr).abs() < 1e-5 * opt.lr + 1e-8, "{x}");
        }
    }
}
