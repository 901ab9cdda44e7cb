//! Gated MLP activations, `down(act(gate(x)) ⊙ up(x))`: GELU-tanh (GEGLU: Gemma) and SiLU
//! (SwiGLU: Qwen, Llama), each forward beside its backward.

use crate::simd::multiversion;
use crate::Float;
use rayon::prelude::*;

const PAR_MIN_ELEMS: usize = 1 << 15;
/// √(2/π).
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

/// PyTorch's `gelu(x, approximate='tanh')`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
/// Gemma was trained with this approximation, not the erf GELU.
#[inline(always)]
pub fn gelu_tanh<F: Float>(x: F) -> F {
    let c = F::from_f64(SQRT_2_OVER_PI);
    let a = F::from_f64(GELU_C);
    let half = F::from_f64(0.5);
    half * x * (F::ONE + (c * (x + a * x * x * x)).tanh_approx())
}

/// `gelu_tanh(x)` and its derivative together, sharing the tanh.
#[inline(always)]
fn gelu_tanh_and_grad<F: Float>(x: F) -> (F, F) {
    let c = F::from_f64(SQRT_2_OVER_PI);
    let a = F::from_f64(GELU_C);
    let half = F::from_f64(0.5);
    let x2 = x * x;
    let t = (c * (x + a * x2 * x)).tanh_approx();
    let y = half * x * (F::ONE + t);
    // d/dx [0.5·x·(1 + t)] = 0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3a·x²)
    let dy = half * (F::ONE + t)
        + half * x * (F::ONE - t * t) * c * (F::ONE + F::from_f64(3.0) * a * x2);
    (y, dy)
}

/// `out = gelu_tanh(gate) ⊙ up`; all three are `(T, F)` (any common shape).
pub fn geglu_forward<F: Float>(gate: &[F], up: &[F], out: &mut [F]) {
    gated_forward(gate, up, out, geglu_forward_chunk);
}

/// `out = act(gate) ⊙ up` through `chunk` (one activation's kernel), in parallel chunks when
/// the tensors are large: the shape checks and the split, once for every activation.
fn gated_forward<F: Float>(gate: &[F], up: &[F], out: &mut [F], chunk: fn(&[F], &[F], &mut [F])) {
    assert_eq!(gate.len(), up.len(), "gate and up differ in shape");
    assert_eq!(out.len(), gate.len(), "out differs in shape from gate");
    const CHUNK: usize = 4096;
    if gate.len() > PAR_MIN_ELEMS {
        out.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK))
            .zip(up.par_chunks(CHUNK))
            .for_each(|((o, g), u)| chunk(g, u, o));
    } else {
        chunk(gate, up, out);
    }
}

multiversion! {
    fn geglu_forward_chunk<F: Float>(gate: &[F], up: &[F], out: &mut [F]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = gelu_tanh(g) * u;
        }
    }
}

/// Backward of [`geglu_forward`]; `dgate` and `dup` ACCUMULATE. From `out = gelu(gate)·up`:
/// `dgate += dout·up·gelu'(gate)`, `dup += dout·gelu(gate)`.
pub fn geglu_backward<F: Float>(dout: &[F], gate: &[F], up: &[F], dgate: &mut [F], dup: &mut [F]) {
    gated_backward(dout, gate, up, dgate, dup, geglu_backward_chunk);
}

/// One activation's backward kernel: `(dout, gate, up, dgate, dup)`.
type GatedBackward<F> = fn(&[F], &[F], &[F], &mut [F], &mut [F]);

/// The backward of [`gated_forward`] through `chunk`, split the same way.
fn gated_backward<F: Float>(
    dout: &[F],
    gate: &[F],
    up: &[F],
    dgate: &mut [F],
    dup: &mut [F],
    chunk: GatedBackward<F>,
) {
    let n = gate.len();
    assert!(
        up.len() == n && dout.len() == n && dgate.len() == n && dup.len() == n,
        "gated activation backward: all five tensors must have the same shape"
    );
    const CHUNK: usize = 4096;
    if n > PAR_MIN_ELEMS {
        dgate
            .par_chunks_mut(CHUNK)
            .zip(dup.par_chunks_mut(CHUNK))
            .zip(dout.par_chunks(CHUNK))
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(((dg, du), d), (g, u))| chunk(d, g, u, dg, du));
    } else {
        chunk(dout, gate, up, dgate, dup);
    }
}

multiversion! {
    fn geglu_backward_chunk<F: Float>(dout: &[F], gate: &[F], up: &[F], dgate: &mut [F], dup: &mut [F]) {
        for ((((dg, du), &d), &g), &u) in dgate.iter_mut().zip(dup).zip(dout).zip(gate).zip(up) {
            let (y, dy) = gelu_tanh_and_grad(g);
            *dg += d * u * dy;
            *du += d * y;
        }
    }
}

/// `silu(x) = x·σ(x) = x / (1 + e^(−x))`, PyTorch's `F.silu`.
#[inline(always)]
pub fn silu<F: Float>(x: F) -> F {
    x / (F::ONE + (-x).exp())
}

/// `silu(x)` and its derivative together: with `s = σ(x)`, `silu' = s·(1 + x·(1 − s))`.
#[inline(always)]
fn silu_and_grad<F: Float>(x: F) -> (F, F) {
    let s = F::ONE / (F::ONE + (-x).exp());
    (x * s, s * (F::ONE + x * (F::ONE - s)))
}

/// `out = silu(gate) ⊙ up`; all three are `(T, F)` (any common shape).
pub fn swiglu_forward<F: Float>(gate: &[F], up: &[F], out: &mut [F]) {
    gated_forward(gate, up, out, swiglu_forward_chunk);
}

multiversion! {
    fn swiglu_forward_chunk<F: Float>(gate: &[F], up: &[F], out: &mut [F]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = silu(g) * u;
        }
    }
}

/// Backward of [`swiglu_forward`]; `dgate` and `dup` ACCUMULATE. From `out = silu(gate)·up`:
/// `dgate += dout·up·silu'(gate)`, `dup += dout·silu(gate)`.
pub fn swiglu_backward<F: Float>(dout: &[F], gate: &[F], up: &[F], dgate: &mut [F], dup: &mut [F]) {
    gated_backward(dout, gate, up, dgate, dup, swiglu_backward_chunk);
}

multiversion! {
    fn swiglu_backward_chunk<F: Float>(dout: &[F], gate: &[F], up: &[F], dgate: &mut [F], dup: &mut [F]) {
        for ((((dg, du), &d), &g), &u) in dgate.iter_mut().zip(dup).zip(dout).zip(gate).zip(up) {
            let (y, dy) = silu_and_grad(g);
            *dg += d * u * dy;
            *du += d * y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    #[test]
    fn gelu_tanh_matches_pytorch_values() {
        // PyTorch's formula evaluated in Python f64 (math.tanh), the precision of
        // gelu(torch.tensor(x, dtype=torch.float64), approximate='tanh').
        let cases: [(f64, f64); 6] = [
            (0.0, 0.0),
            (1.0, 0.8411919906082768),
            (-1.0, -0.15880800939172324),
            (3.0, 2.996362607918227),
            (-3.0, -0.0036373920817729943),
            (0.5, 0.34571400982514394),
        ];
        for (x, want) in cases {
            assert!((gelu_tanh(x) - want).abs() < 1e-12, "gelu_tanh({x})");
            assert!(
                (gelu_tanh(x as f32) as f64 - want).abs() < 1e-6,
                "gelu_tanh_f32({x})"
            );
        }
    }

    #[test]
    fn forward_matches_reference() {
        for n in [1, 100, 50_000] {
            let g = randn(n, 1);
            let u = randn(n, 2);
            let mut o = vec![0.0f32; n];
            geglu_forward(&g, &u, &mut o);
            let want: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| {
                    let g = g as f64;
                    0.5 * g
                        * (1.0 + (SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)).tanh())
                        * u as f64
                })
                .collect();
            assert_close(&o, &want, 1e-6, "geglu");
        }
    }

    /// A gated activation's backward against central differences of its forward, in f64;
    /// `spread` scales the gate inputs so both tails of the nonlinearity are covered.
    fn check_backward_by_finite_differences(
        forward: fn(&[f64], &[f64], &mut [f64]),
        backward: GatedBackward<f64>,
        spread: f64,
        seed: u64,
    ) {
        let n = 40;
        let mut g = randn64(n, seed);
        g.iter_mut().for_each(|v| *v *= spread);
        let u = randn64(n, seed + 1);
        let d = randn64(n, seed + 2);
        let (dg0, du0) = (randn64(n, seed + 3), randn64(n, seed + 4));
        let (mut dg, mut du) = (dg0.clone(), du0.clone());
        backward(&d, &g, &u, &mut dg, &mut du);
        let loss = |g: &[f64], u: &[f64]| {
            let mut o = vec![0.0; n];
            forward(g, u, &mut o);
            contract(&o, &d)
        };
        let fg = fd_grad(&g, 1e-5, |gs| loss(gs, &u));
        let fu = fd_grad(&u, 1e-5, |us| loss(&g, us));
        // The backward accumulates: what it added is the gradient.
        let got: Vec<f64> = dg.iter().zip(&dg0).map(|(a, b)| a - b).collect();
        assert_close(&got, &fg, 1e-8, "dgate");
        let got: Vec<f64> = du.iter().zip(&du0).map(|(a, b)| a - b).collect();
        assert_close(&got, &fu, 1e-8, "dup");
    }

    #[test]
    fn backward_matches_finite_differences() {
        check_backward_by_finite_differences(geglu_forward, geglu_backward, 2.0, 3);
    }

    #[test]
    fn silu_matches_pytorch_values() {
        // x / (1 + exp(-x)) evaluated in Python f64, the precision of
        // F.silu(torch.tensor(x, dtype=torch.float64)).
        let cases: [(f64, f64); 5] = [
            (0.0, 0.0),
            (1.0, 0.7310585786300049),
            (-1.0, -0.2689414213699951),
            (4.0, 3.928055160151634),
            (-6.0, -0.014835738939808647),
        ];
        for (x, want) in cases {
            assert!((silu(x) - want).abs() < 1e-12, "silu({x})");
            assert!((silu(x as f32) as f64 - want).abs() < 1e-6, "silu_f32({x})");
        }
    }

    #[test]
    fn swiglu_forward_matches_reference() {
        for n in [1, 100, 50_000] {
            let g = randn(n, 11);
            let u = randn(n, 12);
            let mut o = vec![0.0f32; n];
            swiglu_forward(&g, &u, &mut o);
            let want: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| (g as f64) / (1.0 + (-(g as f64)).exp()) * u as f64)
                .collect();
            assert_close(&o, &want, 1e-6, "swiglu");
        }
    }

    #[test]
    fn swiglu_backward_matches_finite_differences() {
        check_backward_by_finite_differences(swiglu_forward, swiglu_backward, 3.0, 13);
    }
}
