//! Rotary position embedding in the NEOX ("rotate_half") layout that HF Gemma and llama.cpp's
//! NEOX mode use: in a head vector of dim `D`, element `i` pairs with `i + D/2` (not `2i+1`).

use crate::Float;
use rayon::prelude::*;

const PAR_MIN_ELEMS: usize = 1 << 15;

/// `(cos, sin)` of `pos · theta^(-2i/D)` for `i < D/2` and positions `0..len`, computed in
/// f64 (at positions in the thousands an f32 angle is already off by ~1e-4 rad), entry
/// `pos·D/2 + i`. Kept per `(theta, D)` and grown on demand: a training step rotates the same
/// positions 4 times per layer, and the `sin_cos` calls were 5% of it.
fn table(head_dim: usize, theta: f64, len: usize) -> std::sync::Arc<Vec<[f64; 2]>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Tables = Mutex<HashMap<(u64, usize), Arc<Vec<[f64; 2]>>>>;
    static TABLES: OnceLock<Tables> = OnceLock::new();
    let half = head_dim / 2;
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let entry = tables.entry((theta.to_bits(), head_dim)).or_default();
    if entry.len() < len * half {
        let len = len.max(2 * entry.len() / half.max(1)).max(64);
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64))
            .collect();
        let t: Vec<[f64; 2]> = (0..len)
            .flat_map(|pos| {
                inv_freq.iter().map(move |&f| {
                    let (s, c) = (pos as f64 * f).sin_cos();
                    [c, s]
                })
            })
            .collect();
        *entry = Arc::new(t);
    }
    entry.clone()
}

/// Rotates every head of every position by its angle. `sign` is +1 for the rotation and −1 for
/// its inverse (the transpose), which is the whole of the backward pass.
fn rotate<F: Float>(
    x: &mut [F],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    theta: F,
    inverse: bool,
) {
    assert!(head_dim.is_multiple_of(2), "head_dim must be even");
    let row = n_heads * head_dim;
    assert_eq!(
        x.len(),
        positions.len() * row,
        "x is not (T, n_heads, head_dim)"
    );
    let half = head_dim / 2;
    let theta = theta.to_f64();
    let max_pos = positions.iter().copied().max().unwrap_or(0);
    let table = table(head_dim, theta, max_pos + 1);
    let per_pos = |(xr, &pos): (&mut [F], &usize)| {
        let (cos, sin): (Vec<F>, Vec<F>) = table[pos * half..][..half]
            .iter()
            .map(|&[c, s]| (F::from_f64(c), F::from_f64(if inverse { -s } else { s })))
            .unzip();
        for h in xr.chunks_exact_mut(head_dim) {
            let (a, b) = h.split_at_mut(half);
            for i in 0..half {
                let (x0, x1) = (a[i], b[i]);
                a[i] = x0 * cos[i] - x1 * sin[i];
                b[i] = x0 * sin[i] + x1 * cos[i];
            }
        }
    };
    if x.len() > PAR_MIN_ELEMS {
        x.par_chunks_mut(row)
            .zip(positions.par_iter())
            .for_each(per_pos);
    } else {
        x.chunks_mut(row).zip(positions.iter()).for_each(per_pos);
    }
}

/// `x` is `(T, n_heads, head_dim)`, rotated in place; `positions` `(T)` are absolute positions.
/// For `i < D/2`: `(x_i, x_{i+D/2}) ← (x_i·cos − x_{i+D/2}·sin, x_i·sin + x_{i+D/2}·cos)` with
/// angle `pos · theta^(-2i/D)`.
pub fn rope_forward<F: Float>(
    x: &mut [F],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    theta: F,
) {
    rotate(x, positions, n_heads, head_dim, theta, false);
}

/// Backward of [`rope_forward`], in place: `dx` holds `dL/d(rotated x)` on entry and `dL/dx` on
/// exit. The forward is `y = R x` with `R` orthogonal, so `dx = R^T dy`: the rotation by the
/// negated angle. (Unlike the other backwards this one transforms rather than accumulates.)
pub fn rope_backward<F: Float>(
    dx: &mut [F],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    theta: F,
) {
    rotate(dx, positions, n_heads, head_dim, theta, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    /// Straight from HF's `apply_rotary_pos_emb`: `x·cos + rotate_half(x)·sin` with
    /// `rotate_half(x) = cat(−x2, x1)` and `cos = cat(cos(freqs), cos(freqs))`.
    fn reference(x: &[f64], positions: &[usize], n_heads: usize, d: usize, theta: f64) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for (t, &p) in positions.iter().enumerate() {
            for h in 0..n_heads {
                let o = (t * n_heads + h) * d;
                for j in 0..d {
                    let i = j % (d / 2);
                    let ang = p as f64 / theta.powf(2.0 * i as f64 / d as f64);
                    let rot = if j < d / 2 {
                        -x[o + j + d / 2]
                    } else {
                        x[o + j - d / 2]
                    };
                    y[o + j] = x[o + j] * ang.cos() + rot * ang.sin();
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_reference() {
        for &(n_heads, d, theta) in &[(1, 2, 10000.0), (4, 256, 1e6), (3, 8, 10000.0)] {
            let positions = [0usize, 1, 7, 511, 4000];
            let x = randn(positions.len() * n_heads * d, 1);
            let mut y = x.clone();
            rope_forward(&mut y, &positions, n_heads, d, theta as f32);
            assert_close(
                &y,
                &reference(&to64(&x), &positions, n_heads, d, theta),
                1e-6,
                "rope",
            );
        }
        // Big enough for the parallel path.
        let positions: Vec<usize> = (100..164).collect();
        let x = randn(64 * 4 * 256, 2);
        let mut y = x.clone();
        rope_forward(&mut y, &positions, 4, 256, 1e4f32);
        assert_close(
            &y,
            &reference(&to64(&x), &positions, 4, 256, 1e4),
            1e-6,
            "rope par",
        );
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (n_heads, d, theta) = (2, 8, 100.0);
        let positions = [3usize, 5, 6];
        let x = randn64(positions.len() * n_heads * d, 3);
        let gy = randn64(x.len(), 4);
        let mut dx = gy.clone();
        rope_backward(&mut dx, &positions, n_heads, d, theta);
        let fd = fd_grad(&x, 1e-5, |xs| {
            let mut y = xs.to_vec();
            rope_forward(&mut y, &positions, n_heads, d, theta);
            contract(&y, &gy)
        });
        assert_close(&dx, &fd, 1e-8, "drope");
    }
}
