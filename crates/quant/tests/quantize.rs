//! dequantize(quantize(x)) stays close to x for every format, and the activation
//! quantizers (Q8_0, Q8_1, Q8_K) keep their bookkeeping fields consistent.

mod common;

use common::*;
use smolt_quant::{dequantize_row, quantize_row, GgmlType};

/// Worst acceptable RMS error relative to the RMS of N(0,1) data.
fn bound(ty: GgmlType) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => 0.0,
        F16 => 1e-3,
        BF16 => 5e-3,
        Q8_0 | Q8_1 | Q8K => 0.01,
        Q6K => 0.03,
        Q5_0 | Q5_1 | Q5K => 0.06,
        Q4_0 | Q4_1 | Q4K => 0.12,
        Q3K => 0.25,
        Q2K => 0.45,
    }
}

#[test]
fn roundtrip_error_is_small_for_every_format() {
    let mut r = rng(7);
    let types = GgmlType::ALL;
    for ty in types {
        let n = 1024;
        let x = normals(&mut r, n, 1.0);
        let mut q = vec![0u8; n / ty.block_size() * ty.type_size()];
        quantize_row(ty, &x, &mut q).unwrap();
        let mut y = vec![0f32; n];
        dequantize_row(ty, &q, &mut y).unwrap();
        let mse: f64 = x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let rms = mse.sqrt();
        assert!(rms <= bound(ty), "{ty}: rms error {rms}");
    }
}

#[test]
fn zero_rows_quantize_to_zero() {
    for ty in GgmlType::ALL {
        let n = ty.block_size() * 2;
        let x = vec![0f32; n];
        let mut q = vec![0xAAu8; n / ty.block_size() * ty.type_size()];
        quantize_row(ty, &x, &mut q).unwrap();
        let mut y = vec![1f32; n];
        dequantize_row(ty, &q, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{ty}");
    }
}

#[test]
fn q8_k_block_sums_match_quants() {
    let mut r = rng(8);
    let x = normals(&mut r, 512, 3.0);
    let mut q = vec![0u8; 2 * 292];
    quantize_row(GgmlType::Q8K, &x, &mut q).unwrap();
    for b in q.chunks_exact(292) {
        for j in 0..16 {
            let s: i32 = b[4 + 16 * j..4 + 16 * j + 16]
                .iter()
                .map(|&v| v as i8 as i32)
                .sum();
            assert_eq!(
                s,
                i16::from_le_bytes([b[260 + 2 * j], b[261 + 2 * j]]) as i32
            );
        }
        assert!(b[4..260].iter().all(|&v| v as i8 != -128));
    }
}

#[test]
fn q8_1_sum_field_is_d_times_sum() {
    let mut r = rng(9);
    let x = normals(&mut r, 64, 1.0);
    let mut q = vec![0u8; 2 * 36];
    quantize_row(GgmlType::Q8_1, &x, &mut q).unwrap();
    for b in q.chunks_exact(36) {
        let d = smolt_quant::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        let s = smolt_quant::f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
        let sum: i32 = b[4..].iter().map(|&v| v as i8 as i32).sum();
        // ggml multiplies by the unrounded f32 d, so only f16 precision can be asked for.
        let want = sum as f32 * d;
        assert!(
            (s - want).abs() <= 2e-3 * want.abs() + 1e-6,
            "{s} vs {want}"
        );
    }
}
