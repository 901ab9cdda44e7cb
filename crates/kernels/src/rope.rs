//! Rotary position embedding, in the two layouts llama.cpp knows:
//!
//! - [`RopeStyle::Neox`] ("rotate_half", HF's layout, llama.cpp's NEOX mode: Gemma, Qwen): in a
//!   head vector of dim `D`, element `i` pairs with `i + D/2`;
//! - [`RopeStyle::Interleaved`] (llama.cpp's NORM mode, `LLAMA_ROPE_TYPE_NORM`: Llama, whose
//!   converter permutes the q/k rows to suit it): element `2i` pairs with `2i + 1`.
//!
//! Either way pair `i < D/2` turns by the angle `pos · base^(-2i/D) / factor_i`, where the
//! optional per-frequency divisors `factor` are a GGUF's `rope_freqs.weight` (Llama 3.1's RoPE
//! scaling, written by the converter as a tensor).

use crate::Float;
use rayon::prelude::*;

const PAR_MIN_ELEMS: usize = 1 << 15;

/// Which elements of a head form the rotated pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(i, i + D/2)`: HF's `rotate_half`, llama.cpp's NEOX mode.
    Neox,
    /// Pairs `(2i, 2i + 1)`: llama.cpp's NORM mode (`LLAMA_ROPE_TYPE_NORM`).
    Interleaved,
}

/// A rotation: layout, base (theta) and optional per-frequency divisors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope<'a> {
    pub style: RopeStyle,
    /// `theta` in `base^(-2i/D)`.
    pub base: f64,
    /// `(D/2)` divisors of the frequencies (`rope_freqs.weight`); `None` means all 1.
    pub freq_factors: Option<&'a [f32]>,
}

impl Rope<'_> {
    /// The plain NEOX rotation with base `base` (no divisors).
    pub fn neox(base: f64) -> Rope<'static> {
        Rope {
            style: RopeStyle::Neox,
            base,
            freq_factors: None,
        }
    }
}

/// Tables are kept per `(base, D, divisors)`.
type TableKey = (u64, usize, Option<Vec<u32>>);

/// `(cos, sin)` of `pos · base^(-2i/D) / factor_i` for `i < D/2` and positions `0..len`,
/// computed in f64 (at positions in the thousands an f32 angle is already off by ~1e-4 rad),
/// entry `pos·D/2 + i`. Kept per rotation and grown on demand: a training step rotates the same
/// positions 4 times per layer, and the `sin_cos` calls were 5% of it.
fn table(head_dim: usize, rope: &Rope, len: usize) -> std::sync::Arc<Vec<[f64; 2]>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Tables = Mutex<HashMap<TableKey, Arc<Vec<[f64; 2]>>>>;
    static TABLES: OnceLock<Tables> = OnceLock::new();
    let half = head_dim / 2;
    let theta = rope.base;
    let factors = rope.freq_factors;
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (
        theta.to_bits(),
        head_dim,
        factors.map(|f| f.iter().map(|v| v.to_bits()).collect()),
    );
    let entry = tables.entry(key).or_default();
    if entry.len() < len * half {
        let len = len.max(2 * entry.len() / half.max(1)).max(64);
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| {
                let f = theta.powf(-2.0 * i as f64 / head_dim as f64);
                match factors {
                    Some(div) => f / div[i] as f64,
                    None => f,
                }
            })
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

/// Rotates every head of every position by its angle; `inverse` rotates by the negated angle
/// (the transpose), which is the whole of the backward pass.
fn rotate<F: Float>(
    x: &mut [F],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    rope: &Rope,
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
    if let Some(f) = rope.freq_factors {
        assert_eq!(f.len(), half, "one frequency divisor per rotated pair");
    }
    let max_pos = positions.iter().copied().max().unwrap_or(0);
    let table = table(head_dim, rope, max_pos + 1);
    let style = rope.style;
    let per_pos = |(xr, &pos): (&mut [F], &usize)| {
        let (cos, sin): (Vec<F>, Vec<F>) = table[pos * half..][..half]
            .iter()
            .map(|&[c, s]| (F::from_f64(c), F::from_f64(if inverse { -s } else { s })))
            .unzip();
        for h in xr.chunks_exact_mut(head_dim) {
            match style {
                RopeStyle::Neox => {
                    let (a, b) = h.split_at_mut(half);
                    for i in 0..half {
                        let (x0, x1) = (a[i], b[i]);
                        a[i] = x0 * cos[i] - x1 * sin[i];
                        b[i] = x0 * sin[i] + x1 * cos[i];
                    }
                }
                RopeStyle::Interleaved => {
                    for (i, p) in h.chunks_exact_mut(2).enumerate() {
                        let (x0, x1) = (p[0], p[1]);
                        p[0] = x0 * cos[i] - x1 * sin[i];
                        p[1] = x0 * sin[i] + x1 * cos[i];
                    }
                }
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
/// For each pair `(u, v)` of [`Rope::style`] with index `i < D/2`:
/// `(x_u, x_v) ← (x_u·cos − x_v·sin, x_u·sin + x_v·cos)` with angle
/// `pos · base^(-2i/D) / factor_i`.
pub fn rope_forward<F: Float>(
    x: &mut [F],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    rope: &Rope,
) {
    rotate(x, positions, n_heads, head_dim, rope, false);
}

/// Backward of [`rope_forward`], in place: `dx` holds `dL/d(rotated x)` on entry and `dL/dx` on
/// exit. The forward is `y = R x` with `R` orthogonal, so `dx = R^T dy`: the rotation by the
/// negated angle. (Unlike the other backwards this one transforms rather than accumulates.)
pub fn rope_backward<F: Float>(
    dx: &mut [F],
    positions: &[usize],
    n_heads: usize,
    head_dim: usize,
    rope: &Rope,
) {
    rotate(dx, positions, n_heads, head_dim, rope, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    /// Straight from the definitions, element by element: HF's `apply_rotary_pos_emb` for NEOX
    /// (`x·cos + rotate_half(x)·sin`, `rotate_half(x) = cat(−x2, x1)`, `cos = cat(cos(f), cos(f))`)
    /// and llama.cpp's `rope_f32` NORM branch for interleaved pairs (`dst[i0] = x0·cos − x1·sin`,
    /// `dst[i0+1] = x0·sin + x1·cos` with `x0 = src[i0]`, `x1 = src[i0+1]`), with the angle
    /// `p / (theta^(2i/D) · factor_i)` (llama.cpp: `theta_base / freq_factor`).
    fn reference(
        x: &[f64],
        positions: &[usize],
        n_heads: usize,
        d: usize,
        theta: f64,
        style: RopeStyle,
        factors: Option<&[f32]>,
    ) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for (t, &p) in positions.iter().enumerate() {
            for h in 0..n_heads {
                let o = (t * n_heads + h) * d;
                for j in 0..d {
                    let i = match style {
                        RopeStyle::Neox => j % (d / 2),
                        RopeStyle::Interleaved => j / 2,
                    };
                    let factor = factors.map_or(1.0, |f| f[i] as f64);
                    let ang = p as f64 / (theta.powf(2.0 * i as f64 / d as f64) * factor);
                    y[o + j] = match style {
                        RopeStyle::Neox => {
                            let rot = if j < d / 2 {
                                -x[o + j + d / 2]
                            } else {
                                x[o + j - d / 2]
                            };
                            x[o + j] * ang.cos() + rot * ang.sin()
                        }
                        RopeStyle::Interleaved if j % 2 == 0 => {
                            x[o + j] * ang.cos() - x[o + j + 1] * ang.sin()
                        }
                        RopeStyle::Interleaved => x[o + j - 1] * ang.sin() + x[o + j] * ang.cos(),
                    };
                }
            }
        }
        y
    }

    /// Llama 3.1's divisors for D = 16 (the tiny fixture's `rope_freqs.weight`), and a made-up
    /// set with every entry different.
    const LLAMA3_16: [f32; 8] = [1.0, 1.0, 1.0, 1.0, 2.69453, 8.0, 8.0, 8.0];
    const ODD_4: [f32; 4] = [1.0, 1.5, 3.25, 7.0];

    fn ropes() -> Vec<(usize, usize, Rope<'static>)> {
        let r = |style, base, freq_factors| Rope {
            style,
            base,
            freq_factors,
        };
        use RopeStyle::*;
        vec![
            (1, 2, r(Neox, 10000.0, None)),
            (4, 256, r(Neox, 1e6, None)),
            (3, 8, r(Neox, 10000.0, Some(&ODD_4))),
            (1, 2, r(Interleaved, 10000.0, None)),
            (4, 256, r(Interleaved, 5e5, None)),
            (3, 8, r(Interleaved, 10000.0, Some(&ODD_4))),
            (2, 16, r(Interleaved, 5e5, Some(&LLAMA3_16))),
        ]
    }

    #[test]
    fn forward_matches_reference() {
        for (n_heads, d, rope) in ropes() {
            let positions = [0usize, 1, 7, 511, 4000];
            let x = randn(positions.len() * n_heads * d, 1);
            let mut y = x.clone();
            rope_forward(&mut y, &positions, n_heads, d, &rope);
            let want = reference(
                &to64(&x),
                &positions,
                n_heads,
                d,
                rope.base,
                rope.style,
                rope.freq_factors,
            );
            assert_close(&y, &want, 1e-6, &format!("rope {rope:?}"));
        }
        // Big enough for the parallel path.
        for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
            let positions: Vec<usize> = (100..164).collect();
            let x = randn(64 * 4 * 256, 2);
            let mut y = x.clone();
            let rope = Rope {
                style,
                base: 1e4,
                freq_factors: None,
            };
            rope_forward(&mut y, &positions, 4, 256, &rope);
            let want = reference(&to64(&x), &positions, 4, 256, 1e4, style, None);
            assert_close(&y, &want, 1e-6, "rope par");
        }
    }

    /// What llama.cpp's converter relies on: permuting each head's rows so that element `2i`
    /// is HF's `i` and `2i+1` is HF's `D/2 + i` turns the NEOX rotation into the interleaved one
    /// (`interleaved(P x) = P neox(x)`), divisors included.
    #[test]
    fn interleaved_is_neox_under_the_converter_permutation() {
        let (n_heads, d) = (3, 16);
        let positions = [0usize, 2, 9, 130];
        let x = randn64(positions.len() * n_heads * d, 5);
        let permute = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; v.len()];
            for (o, h) in out.chunks_mut(d).zip(v.chunks(d)) {
                for i in 0..d / 2 {
                    o[2 * i] = h[i];
                    o[2 * i + 1] = h[d / 2 + i];
                }
            }
            out
        };
        for factors in [None, Some(&LLAMA3_16[..])] {
            let rope = |style| Rope {
                style,
                base: 5e5,
                freq_factors: factors,
            };
            let mut neox = x.clone();
            rope_forward(&mut neox, &positions, n_heads, d, &rope(RopeStyle::Neox));
            let mut inter = permute(&x);
            rope_forward(
                &mut inter,
                &positions,
                n_heads,
                d,
                &rope(RopeStyle::Interleaved),
            );
            assert_close(&inter, &permute(&neox), 1e-14, "P·neox vs interleaved(P·x)");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for (n_heads, d, rope) in [
            (2, 8, Rope::neox(100.0)),
            (
                2,
                8,
                Rope {
                    style: RopeStyle::Neox,
                    base: 100.0,
                    freq_factors: Some(&ODD_4),
                },
            ),
            (
                2,
                8,
                Rope {
                    style: RopeStyle::Interleaved,
                    base: 100.0,
                    freq_factors: None,
                },
            ),
            (
                2,
                8,
                Rope {
                    style: RopeStyle::Interleaved,
                    base: 100.0,
                    freq_factors: Some(&ODD_4),
                },
            ),
        ] {
            let positions = [3usize, 5, 6];
            let x = randn64(positions.len() * n_heads * d, 3);
            let gy = randn64(x.len(), 4);
            let mut dx = gy.clone();
            rope_backward(&mut dx, &positions, n_heads, d, &rope);
            let fd = fd_grad(&x, 1e-5, |xs| {
                let mut y = xs.to_vec();
                rope_forward(&mut y, &positions, n_heads, d, &rope);
                contract(&y, &gy)
            });
            assert_close(&dx, &fd, 1e-8, &format!("drope {rope:?}"));
        }
    }
}
