//! AdamW with decoupled weight decay, and clipping by global gradient norm.
//!
//! The update itself is smolt-kernels' `adamw_step`; this module owns the state (moments and
//! step count, which checkpoints save) and the clipping, done in f64 over all tensors. The
//! arithmetic follows PyTorch's `torch.optim.AdamW` (non-fused, non-amsgrad) so adapters
//! trained here and there agree.

use smolt_lora::Param;

/// AdamW hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments for one parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// Optimiser state: the step count and the moments, in the order of the model's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    /// Number of updates applied so far (bias correction uses t = step + 1 on the next one).
    pub step: u64,
    pub moments: Vec<Moments>,
}

impl AdamW {
    /// Fresh state with zero moments shaped like `params`.
    pub fn new(cfg: AdamWConfig, params: &[Param]) -> Self {
        AdamW {
            cfg,
            step: 0,
            moments: params
                .iter()
                .map(|p| Moments {
                    m: vec![0.0; p.data.len()],
                    v: vec![0.0; p.data.len()],
                })
                .collect(),
        }
    }

    /// Applies one update with learning rate `lr` using each parameter's `grad`, through
    /// smolt-kernels' `adamw_step` (PyTorch's arithmetic; elementwise, so the result does not
    /// depend on the thread count).
    pub fn update(&mut self, params: &mut [Param], lr: f64) {
        assert_eq!(params.len(), self.moments.len(), "parameter count changed");
        self.step += 1;
        let hp = smolt_kernels::AdamWHyper {
            lr: lr as f32,
            beta1: self.cfg.beta1 as f32,
            beta2: self.cfg.beta2 as f32,
            eps: self.cfg.eps as f32,
            weight_decay: self.cfg.weight_decay as f32,
        };
        for (p, mo) in params.iter_mut().zip(&mut self.moments) {
            assert_eq!(
                p.data.len(),
                mo.m.len(),
                "parameter {} changed size",
                p.name
            );
            smolt_kernels::adamw_step(&mut p.data, &p.grad, &mut mo.m, &mut mo.v, self.step, &hp);
        }
    }
}

/// The L2 norm of all gradients together, accumulated in f64 so the result does not depend
/// on summation order more than necessary and does not overflow.
pub fn global_grad_norm(params: &[Param]) -> f64 {
    params
        .iter()
        .flat_map(|p| p.grad.iter())
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scales all gradients so their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor max / (norm + 1e-6), applied only when below 1). Returns the
/// norm before clipping. A non-finite norm is returned untouched for the caller to report.
pub fn clip_grad_norm(params: &mut [Param], max_norm: f64) -> f64 {
    let norm = global_grad_norm(params);
    if max_norm > 0.0 && norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let c = coef as f32;
            for p in params.iter_mut() {
                p.grad.iter_mut().for_each(|g| *g *= c);
            }
        }
    }
    norm
}

/// Multiplies all gradients by `s` (used to turn summed-loss gradients into a mean).
pub fn scale_grads(params: &mut [Param], s: f32) {
    for p in params.iter_mut() {
        p.grad.iter_mut().for_each(|g| *g *= s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, data: Vec<f32>, grad: Vec<f32>) -> Param {
        Param {
            name: name.into(),
            shape: [1, data.len()],
            data,
            grad,
        }
    }

    /// AdamW in f64, straight from Loshchilov & Hutter / PyTorch's documentation.
    fn reference(w0: &[f64], grads: &[Vec<f64>], lrs: &[f64], c: AdamWConfig) -> Vec<f64> {
        let mut w = w0.to_vec();
        let mut m = vec![0.0; w.len()];
        let mut v = vec![0.0; w.len()];
        for (t, (g, &lr)) in grads.iter().zip(lrs).enumerate() {
            let t = (t + 1) as i32;
            for i in 0..w.len() {
                w[i] -= lr * c.weight_decay * w[i];
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g[i];
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g[i] * g[i];
                let mhat = m[i] / (1.0 - c.beta1.powi(t));
                let vhat = v[i] / (1.0 - c.beta2.powi(t));
                w[i] -= lr * mhat / (vhat.sqrt() + c.eps);
            }
        }
        w
    }

    #[test]
    fn matches_the_f64_reference() {
        let c = AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let w0: Vec<f64> = (0..37)
            .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let grads: Vec<Vec<f64>> = (0..25)
            .map(|t| {
                (0..37)
                    .map(|i| (((i * 31 + t * 17) % 53) as f64 / 26.0 - 1.0) * 0.3)
                    .collect()
            })
            .collect();
        let lrs: Vec<f64> = (0..25).map(|t| 1e-2 * (1.0 + t as f64) / 25.0).collect();
        let want = reference(&w0, &grads, &lrs, c);

        let mut params = vec![
            param(
                "a",
                w0[..20].iter().map(|&x| x as f32).collect(),
                vec![0.0; 20],
            ),
            param(
                "b",
                w0[20..].iter().map(|&x| x as f32).collect(),
                vec![0.0; 17],
            ),
        ];
        let mut opt = AdamW::new(c, &params);
        for (g, &lr) in grads.iter().zip(&lrs) {
            for (i, x) in g.iter().enumerate() {
                if i < 20 {
                    params[0].grad[i] = *x as f32;
                } else {
                    params[1].grad[i - 20] = *x as f32;
                }
            }
            opt.update(&mut params, lr);
        }
        let got: Vec<f32> = params.iter().flat_map(|p| p.data.clone()).collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() < 2e-6, "element {i}: {g} vs {w}");
        }
        assert_eq!(opt.step, 25);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut params = vec![
            param("a", vec![0.0; 2], vec![3.0, 0.0]),
            param("b", vec![0.0; 1], vec![4.0]),
        ];
        let n = clip_grad_norm(&mut params, 1.0);
        assert_eq!(n, 5.0);
        let after = global_grad_norm(&params);
        assert!((after - 1.0).abs() < 1e-6, "{after}");
        // Below the threshold nothing changes.
        let before = params.clone();
        clip_grad_norm(&mut params, 10.0);
        assert_eq!(params, before);
        // 0 disables clipping.
        params[0].grad[0] = 100.0;
        clip_grad_norm(&mut params, 0.0);
        assert_eq!(params[0].grad[0], 100.0);
    }
}
