//! Adding a small update to a row that is already quantized, on the row's own grid.
//!
//! Merging a LoRA adapter into a Q4/Q5 base and requantizing the sum loses the adapter: the
//! base's values sit exactly on the grid, a trained update is mostly smaller than half a
//! step, so round-to-nearest gives the base back (measured on a SROIE adapter over Gemma 3
//! 270M Q4_K_M: 16% of the adapter's effect on the logits survived). Here the block scales
//! stay as they are and each quant moves by the update in units of its step, rounded
//! stochastically: up with probability equal to the fractional part. The row then equals
//! base + update in expectation (except where a quant hits the end of its range), and the
//! rounding noise, independent from element to element, averages out in the dot products
//! while the update, coherent across a row, adds up. The random numbers come from a hash of
//! `seed` and the element's index, so a merge is reproducible.

use crate::float::read_f16;
use crate::kquants::{scale_min_k4, QK_K};
use crate::legacy::QK;
use crate::GgmlType;

/// One quant's place in a block: its stored (unsigned) value and what a unit of it is worth.
#[derive(Clone, Copy, Debug)]
struct Slot {
    q: i32,
    step: f32,
}

/// Formats whose quants can be moved in place: each element is `step · q + offset` with an
/// unsigned `q` in `0..=max` and `step`, `offset` set by the block's scales.
fn layout(ty: GgmlType) -> Option<(usize, usize, i32)> {
    use GgmlType::*;
    // (elements per block, bytes per block, largest quant)
    Some(match ty {
        Q4_0 => (QK, 18, 15),
        Q4_1 => (QK, 20, 15),
        Q5_0 => (QK, 22, 31),
        Q5_1 => (QK, 24, 31),
        Q8_0 => (QK, 34, 255),
        Q4K => (QK_K, 144, 15),
        Q5K => (QK_K, 176, 31),
        Q6K => (QK_K, 210, 63),
        _ => return None,
    })
}

/// Whether [`nudge_row`] can move `ty`'s quants.
pub fn can_nudge(ty: GgmlType) -> bool {
    layout(ty).is_some()
}

fn read_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The quants of one block, in element order.
fn slots(ty: GgmlType, b: &[u8], out: &mut [Slot]) {
    use GgmlType::*;
    match ty {
        Q4_0 | Q4_1 => {
            let d = read_f16(b, 0);
            let qs = &b[if ty == Q4_0 { 2 } else { 4 }..];
            for j in 0..16 {
                out[j] = Slot {
                    q: (qs[j] & 15) as i32,
                    step: d,
                };
                out[j + 16] = Slot {
                    q: (qs[j] >> 4) as i32,
                    step: d,
                };
            }
        }
        Q5_0 | Q5_1 => {
            let d = read_f16(b, 0);
            let (qh, qs) = if ty == Q5_0 {
                (read_u32(b, 2), &b[6..])
            } else {
                (read_u32(b, 4), &b[8..])
            };
            for j in 0..16 {
                let h0 = ((qh >> j) & 1) as i32;
                let h1 = ((qh >> (j + 16)) & 1) as i32;
                out[j] = Slot {
                    q: (qs[j] & 15) as i32 | h0 << 4,
                    step: d,
                };
                out[j + 16] = Slot {
                    q: (qs[j] >> 4) as i32 | h1 << 4,
                    step: d,
                };
            }
        }
        Q8_0 => {
            let d = read_f16(b, 0);
            for j in 0..QK {
                out[j] = Slot {
                    q: b[2 + j] as i8 as i32 + 128,
                    step: d,
                };
            }
        }
        Q4K | Q5K => {
            let d = read_f16(b, 0);
            let scales = &b[4..16];
            for e in 0..QK_K {
                let (j, l) = (e / 64, e % 64);
                let sub = 2 * j + l / 32;
                let (sc, _) = scale_min_k4(sub, scales);
                let q = if ty == Q4K {
                    let byte = b[16 + 32 * j + l % 32];
                    if l < 32 {
                        byte & 15
                    } else {
                        byte >> 4
                    }
                } else {
                    let byte = b[48 + 32 * j + l % 32];
                    let lo = if l < 32 { byte & 15 } else { byte >> 4 };
                    lo | ((b[16 + l % 32] >> sub) & 1) << 4
                };
                out[e] = Slot {
                    q: q as i32,
                    step: d * sc as f32,
                };
            }
        }
        Q6K => {
            let d = read_f16(b, 208);
            for e in 0..QK_K {
                let (n, g, l) = (e / 128, e % 128 / 32, e % 32);
                let ql = b[64 * n + l + 32 * (g & 1)];
                let lo = if g < 2 { ql & 15 } else { ql >> 4 };
                let hi = (b[128 + 32 * n + l] >> (2 * g)) & 3;
                let sc = b[192 + 8 * n + l / 16 + 2 * g] as i8;
                out[e] = Slot {
                    q: (lo | hi << 4) as i32,
                    step: d * sc as f32,
                };
            }
        }
        _ => unreachable!("layout() admits only the formats above"),
    }
}

/// Writes the quants `q` back into block `b` (the inverse of [`slots`] for the quants; the
/// scales are left as they are).
fn store(ty: GgmlType, b: &mut [u8], q: &[i32]) {
    use GgmlType::*;
    match ty {
        Q4_0 | Q4_1 => {
            let off = if ty == Q4_0 { 2 } else { 4 };
            for j in 0..16 {
                b[off + j] = (q[j] as u8 & 15) | (q[j + 16] as u8 & 15) << 4;
            }
        }
        Q5_0 | Q5_1 => {
            let (hoff, qoff) = if ty == Q5_0 { (2, 6) } else { (4, 8) };
            let mut qh = 0u32;
            for j in 0..16 {
                b[qoff + j] = (q[j] as u8 & 15) | (q[j + 16] as u8 & 15) << 4;
                qh |= ((q[j] as u32 >> 4) & 1) << j;
                qh |= ((q[j + 16] as u32 >> 4) & 1) << (j + 16);
            }
            b[hoff..hoff + 4].copy_from_slice(&qh.to_le_bytes());
        }
        Q8_0 => {
            for j in 0..QK {
                b[2 + j] = (q[j] - 128) as i8 as u8;
            }
        }
        Q4K => {
            for j in 0..4 {
                for l in 0..32 {
                    b[16 + 32 * j + l] =
                        (q[64 * j + l] as u8 & 15) | (q[64 * j + 32 + l] as u8 & 15) << 4;
                }
            }
        }
        Q5K => {
            b[16..48].fill(0);
            for j in 0..4 {
                for l in 0..32 {
                    let (a, c) = (q[64 * j + l] as u8, q[64 * j + 32 + l] as u8);
                    b[48 + 32 * j + l] = (a & 15) | (c & 15) << 4;
                    b[16 + l] |= ((a >> 4) & 1) << (2 * j) | ((c >> 4) & 1) << (2 * j + 1);
                }
            }
        }
        Q6K => {
            b[..192].fill(0);
            for e in 0..QK_K {
                let (n, g, l) = (e / 128, e % 128 / 32, e % 32);
                let v = q[e] as u8;
                let at = 64 * n + l + 32 * (g & 1);
                b[at] |= if g < 2 { v & 15 } else { (v & 15) << 4 };
                b[128 + 32 * n + l] |= ((v >> 4) & 3) << (2 * g);
            }
        }
        _ => unreachable!("layout() admits only the formats above"),
    }
}

/// A uniform draw in `[0, 1)` from `(seed, index)`: SplitMix64's finaliser.
fn uniform(seed: u64, index: u64) -> f32 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Adds `delta` to the quantized row `bytes` of type `ty` on its own grid (see the module
/// notes). Returns how many quants hit the end of their range, or `None` for a type whose
/// quants cannot be moved in place ([`can_nudge`]) or lengths that do not match.
pub fn nudge_row(ty: GgmlType, bytes: &mut [u8], delta: &[f32], seed: u64) -> Option<usize> {
    let (n, size, max) = layout(ty)?;
    if !delta.len().is_multiple_of(n) || bytes.len() != delta.len() / n * size {
        return None;
    }
    let mut slot = vec![Slot { q: 0, step: 0.0 }; n];
    let mut q = vec![0i32; n];
    let mut clipped = 0;
    for (bi, (b, dl)) in bytes
        .chunks_exact_mut(size)
        .zip(delta.chunks_exact(n))
        .enumerate()
    {
        slots(ty, b, &mut slot);
        for (e, (s, &d)) in slot.iter().zip(dl).enumerate() {
            q[e] = s.q;
            if s.step == 0.0 || !s.step.is_finite() || d == 0.0 {
                continue;
            }
            let t = d / s.step;
            let whole = t.floor();
            let up = uniform(seed, (bi * n + e) as u64) < t - whole;
            let moved = s.q as i64 + whole as i64 + up as i64;
            q[e] = moved.clamp(0, max as i64) as i32;
            clipped += (q[e] as i64 != moved) as usize;
        }
        store(ty, b, &q);
    }
    Some(clipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dequantize_row, quantize_row, row_bytes};

    const TYPES: [GgmlType; 8] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    fn row(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 * 0.731 + seed).sin() * 0.05) * (1.0 + (i % 7) as f32 * 0.1))
            .collect()
    }

    fn decode(ty: GgmlType, b: &[u8], len: usize) -> Vec<f32> {
        let mut out = vec![0f32; len];
        dequantize_row(ty, b, &mut out).unwrap();
        out
    }

    /// The slot reader agrees with the (independently tested) dequantizer: every element is
    /// `step · q + offset` with one offset per scale group, and storing the quants read gives
    /// the block back byte for byte.
    #[test]
    fn slots_read_what_the_dequantizer_decodes() {
        for ty in TYPES {
            let len = 512;
            let mut b = vec![0u8; row_bytes(ty, len).unwrap()];
            quantize_row(ty, &row(len, 0.3), &mut b).unwrap();
            let (n, size, max) = layout(ty).unwrap();
            let y = decode(ty, &b, len);
            let mut s = vec![Slot { q: 0, step: 0.0 }; n];
            for (bi, blk) in b.chunks_exact(size).enumerate() {
                slots(ty, blk, &mut s);
                let q: Vec<i32> = s.iter().map(|s| s.q).collect();
                let mut again = blk.to_vec();
                store(ty, &mut again, &q);
                assert_eq!(again, blk, "{ty}: store(slots(b)) != b");
                for e in 0..n {
                    assert!((0..=max).contains(&s[e].q), "{ty}");
                    // Moving one quant by one unit changes exactly that element, by its step.
                    let mut q2 = q.clone();
                    let k = if q[e] < max { 1 } else { -1 };
                    q2[e] += k;
                    let mut moved = blk.to_vec();
                    store(ty, &mut moved, &q2);
                    let y2 = decode(ty, &moved, n);
                    for (f, (a, c)) in y[bi * n..][..n].iter().zip(&y2).enumerate() {
                        let want = if f == e { a + k as f32 * s[e].step } else { *a };
                        assert!(
                            (c - want).abs() <= 1e-6 * (1.0 + want.abs()),
                            "{ty} block {bi} element {e}: moved {f} to {c}, want {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nudging_adds_the_update_in_expectation_and_nothing_else() {
        for ty in TYPES {
            let len = 4096;
            let mut base = vec![0u8; row_bytes(ty, len).unwrap()];
            quantize_row(ty, &row(len, 1.1), &mut base).unwrap();
            let y0 = decode(ty, &base, len);

            // A zero update changes nothing.
            let mut same = base.clone();
            assert_eq!(nudge_row(ty, &mut same, &vec![0.0; len], 7), Some(0));
            assert_eq!(same, base, "{ty}");

            // An update of 0.3 steps (in each element's own step) moves each element by 0 or
            // 1 step, 30% of them up: the mean change is the update.
            let (n, size, _) = layout(ty).unwrap();
            let mut steps = vec![0f32; len];
            let mut s = vec![Slot { q: 0, step: 0.0 }; n];
            for (bi, blk) in base.chunks_exact(size).enumerate() {
                slots(ty, blk, &mut s);
                for e in 0..n {
                    steps[bi * n + e] = s[e].step;
                }
            }
            let delta: Vec<f32> = steps.iter().map(|s| 0.3 * s).collect();
            let mut moved = base.clone();
            let clipped = nudge_row(ty, &mut moved, &delta, 7).unwrap();
            let y1 = decode(ty, &moved, len);
            let (mut ups, mut counted) = (0usize, 0usize);
            for i in 0..len {
                if steps[i] == 0.0 {
                    continue;
                }
                let k = (y1[i] - y0[i]) / steps[i];
                assert!(
                    k.abs() < 1e-3 || (k - 1.0).abs() < 1e-3 || clipped > 0,
                    "{ty} element {i}: moved {k} steps"
                );
                ups += (k > 0.5) as usize;
                counted += 1;
            }
            let share = ups as f64 / counted as f64;
            // Binomial(4096, 0.3): sd 0.0072; 5 sd, minus what clipping at the top took.
            assert!(
                (share - 0.3).abs() < 0.036 + clipped as f64 / counted as f64,
                "{ty}: {share} of the quants moved up, clipped {clipped}"
            );

            // Whole steps are exact.
            let two: Vec<f32> = steps.iter().map(|s| -2.0 * s).collect();
            let mut down = base.clone();
            let clipped = nudge_row(ty, &mut down, &two, 1).unwrap();
            let y2 = decode(ty, &down, len);
            let exact = (0..len)
                .filter(|&i| (y2[i] - (y0[i] - 2.0 * steps[i])).abs() <= 1e-6 * (1.0 + y0[i].abs()))
                .count();
            assert!(
                exact + clipped >= len,
                "{ty}: {exact} exact, {clipped} clipped of {len}"
            );
        }
    }

    #[test]
    fn unsupported_types_and_bad_lengths_are_refused() {
        let mut b = vec![0u8; 64];
        assert_eq!(nudge_row(GgmlType::F16, &mut b, &[0.0; 32], 0), None);
        assert_eq!(nudge_row(GgmlType::Q8_0, &mut b, &[0.0; 32], 0), None);
        assert!(!can_nudge(GgmlType::Q2K));
    }
}
