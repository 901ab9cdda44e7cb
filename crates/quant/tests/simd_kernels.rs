//! Every SIMD kernel against the scalar one on random data. K-quant kernels share the
//! scalar kernels' float order and must agree exactly, as must every NEON kernel; the x86
//! kernels of the 32-element formats sum their blocks in a different order and must agree
//! to ~1e-5 of the sum of |terms|.

mod common;

use common::*;
use rand::Rng;
use smolt_quant::{
    dequantize_row, quantize_activations, vec_dot_on, vec_dot_type, GgmlType, SimdPath,
};

fn abs_term_sum(ty: GgmlType, w: &[u8], a: &[u8]) -> f64 {
    let n = w.len() / ty.type_size() * ty.block_size();
    let (mut wf, mut af) = (vec![0f32; n], vec![0f32; n]);
    dequantize_row(ty, w, &mut wf).unwrap();
    dequantize_row(vec_dot_type(ty), a, &mut af).unwrap();
    wf.iter()
        .zip(&af)
        .map(|(&x, &y)| (x as f64 * y as f64).abs())
        .sum()
}

fn check_paths_agree(ty: GgmlType, w: &[u8], a: &[u8], what: &str) {
    let vt = vec_dot_type(ty);
    let reference = vec_dot_on(SimdPath::Scalar, ty, w, vt, a).unwrap();
    for path in SimdPath::ALL {
        if path == SimdPath::Scalar || !path.available() {
            continue;
        }
        let got = vec_dot_on(path, ty, w, vt, a).unwrap();
        if is_kquant(ty) || path == SimdPath::Neon {
            assert_eq!(
                got.to_bits(),
                reference.to_bits(),
                "{ty} {path:?} {what}: {got} vs {reference}"
            );
        } else {
            let tol = 1e-5 * abs_term_sum(ty, w, a) + 1e-30;
            assert!(
                ((got - reference) as f64).abs() <= tol,
                "{ty} {path:?} {what}: {got} vs {reference} (tol {tol:e})"
            );
        }
    }
}

#[test]
fn simd_dot_matches_scalar_on_random_bytes() {
    let mut r = rng(1);
    for ty in QUANT_TYPES {
        for trial in 0..40 {
            let nb = r.gen_range(1..=12);
            let w = random_blocks(&mut r, ty, nb);
            let n = nb * ty.block_size();
            let scale = 10f32.powf(r.gen_range(-2.0..1.0));
            let x = normals(&mut r, n, scale);
            let a = quantize_activations(ty, &x).unwrap();
            check_paths_agree(ty, &w, &a, &format!("trial {trial}, {nb} blocks"));
        }
    }
}

#[test]
fn simd_dot_matches_scalar_on_quantized_weights() {
    let mut r = rng(2);
    for ty in QUANT_TYPES {
        for trial in 0..10 {
            let n = ty.block_size() * r.gen_range(1..=10);
            let wf = normals(&mut r, n, 0.05);
            let mut w = vec![0u8; n / ty.block_size() * ty.type_size()];
            smolt_quant::quantize_row(ty, &wf, &mut w).unwrap();
            let a = quantize_activations(ty, &normals(&mut r, n, 1.0)).unwrap();
            check_paths_agree(ty, &w, &a, &format!("quantized trial {trial}"));
        }
    }
}

/// Extreme activations: a block at ±127 everywhere, and all-zero blocks.
#[test]
fn simd_dot_handles_saturated_and_zero_activations() {
    let mut r = rng(3);
    for ty in QUANT_TYPES {
        let n = 4 * ty.block_size();
        let w = random_blocks(&mut r, ty, 4);
        let mut x = vec![0f32; n];
        for (i, v) in x.iter_mut().enumerate().take(n / 2) {
            *v = if i % 3 == 0 { -1.0 } else { 1.0 };
        }
        let a = quantize_activations(ty, &x).unwrap();
        check_paths_agree(ty, &w, &a, "saturated/zero");
    }
}

#[test]
fn vec_dot_rejects_mismatched_inputs() {
    let w = vec![0u8; 2 * 22];
    let a = quantize_activations(GgmlType::Q5_0, &[0.5f32; 64]).unwrap();
    assert!(vec_dot_on(SimdPath::Scalar, GgmlType::Q5_0, &w, GgmlType::Q8_0, &a).is_ok());
    assert!(vec_dot_on(SimdPath::Scalar, GgmlType::Q5_0, &w, GgmlType::Q8K, &a).is_err());
    assert!(vec_dot_on(
        SimdPath::Scalar,
        GgmlType::Q5_0,
        &w[..22],
        GgmlType::Q8_0,
        &a
    )
    .is_err());
    assert!(vec_dot_on(
        SimdPath::Scalar,
        GgmlType::Q5_0,
        &w[..21],
        GgmlType::Q8_0,
        &a[..34]
    )
    .is_err());
}

#[test]
fn simd_path_is_reported() {
    let p = smolt_quant::simd_path();
    assert!(["scalar", "neon", "avx2", "avx512"].contains(&p));
    // The path in use is the best this CPU has unless SMOLT_SIMD caps it.
    if std::env::var_os("SMOLT_SIMD").is_none() {
        #[cfg(target_arch = "aarch64")]
        assert_eq!(p, "neon");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(p == "scalar", !SimdPath::Avx2.available());
    }
}
