//! matmul_q against (a) the exact "quantize x, then scalar vec_dot" reference and
//! (b) an f64 matmul of the dequantized weights with unquantized x.

mod common;

use common::*;
use rand::Rng;
use smolt_quant::{
    dequantize_matrix, dequantize_row, matmul_dequant, matmul_q, matmul_q_on, quantize_activations,
    vec_dot_on, vec_dot_type, DecodePacked, GgmlType, PanelPacked, QMatrix, SimdPath,
};

fn weights(r: &mut impl Rng, ty: GgmlType, n: usize, k: usize) -> Vec<u8> {
    let wf = normals(r, n * k, 0.05);
    let rb = k / ty.block_size() * ty.type_size();
    let mut w = vec![0u8; n * rb];
    for (src, dst) in wf.chunks(k).zip(w.chunks_mut(rb)) {
        smolt_quant::quantize_row(ty, src, dst).unwrap();
    }
    w
}

const TYPES: [GgmlType; 11] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::F32,
];

#[test]
fn matmul_matches_exact_scalar_reference_and_f64_reference() {
    let mut r = rng(11);
    for ty in TYPES {
        for &(n, kb, m) in &[
            (37usize, 1usize, 1usize),
            (64, 2, 3),
            (33, 3, 17),
            (130, 1, 9),
        ] {
            let k = kb * 256;
            let w = weights(&mut r, ty, n, k);
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            let x = normals(&mut r, m * k, 1.0);

            // (a) exact: scalar path equals per-element scalar vec_dot.
            let mut y_scalar = vec![0f32; m * n];
            matmul_q_on(SimdPath::Scalar, &qm, &x, m, &mut y_scalar).unwrap();
            for i in 0..m {
                let a = quantize_activations(ty, &x[i * k..(i + 1) * k]).unwrap();
                for j in 0..n {
                    let want =
                        vec_dot_on(SimdPath::Scalar, ty, qm.row(j), vec_dot_type(ty), &a).unwrap();
                    assert_eq!(
                        y_scalar[i * n + j].to_bits(),
                        want.to_bits(),
                        "{ty} ({i},{j})"
                    );
                }
            }

            // Active path: same quantized arithmetic, different float summation order.
            let mut y = vec![0f32; m * n];
            matmul_q(&qm, &x, m, &mut y).unwrap();
            for (a, b) in y.iter().zip(&y_scalar) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
                    "{ty}: {a} vs {b}"
                );
            }

            // (b) f64 reference on dequantized W and unquantized x: only the Q8
            // activation rounding (~0.5% relative) separates them.
            let mut y_ref = vec![0f32; m * n];
            matmul_dequant(&qm, &x, m, &mut y_ref).unwrap();
            let num: f64 = y
                .iter()
                .zip(&y_ref)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            let den: f64 = y_ref.iter().map(|b| (*b as f64).powi(2)).sum();
            let rel = (num / den).sqrt();
            assert!(rel < 0.02, "{ty} n={n} k={k} m={m}: relative error {rel}");
        }
    }
}

#[test]
fn matmul_dequant_matches_naive_f64() {
    let mut r = rng(12);
    let (n, k, m) = (5, 256, 3);
    let w = weights(&mut r, GgmlType::Q4K, n, k);
    let qm = QMatrix::new(GgmlType::Q4K, n, k, &w).unwrap();
    let x = normals(&mut r, m * k, 1.0);
    let mut wf = vec![0f32; n * k];
    dequantize_matrix(&qm, &mut wf).unwrap();
    let mut y = vec![0f32; m * n];
    matmul_dequant(&qm, &x, m, &mut y).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|l| x[i * k + l] as f64 * wf[j * k + l] as f64)
                .sum();
            assert_eq!(y[i * n + j], want as f32);
        }
    }
}

#[test]
fn dequantize_matrix_equals_rowwise() {
    let mut r = rng(13);
    for ty in TYPES {
        let (n, k) = (19, 512);
        let w = weights(&mut r, ty, n, k);
        let qm = QMatrix::new(ty, n, k, &w).unwrap();
        let mut all = vec![0f32; n * k];
        dequantize_matrix(&qm, &mut all).unwrap();
        let mut row = vec![0f32; k];
        for j in 0..n {
            dequantize_row(ty, qm.row(j), &mut row).unwrap();
            assert_eq!(&all[j * k..(j + 1) * k], &row[..], "{ty} row {j}");
        }
    }
}

#[test]
fn shape_errors_are_reported() {
    let w = vec![0u8; 4 * 34];
    assert!(QMatrix::new(GgmlType::Q8_0, 4, 32, &w).is_ok());
    assert!(QMatrix::new(GgmlType::Q8_0, 4, 64, &w).is_err());
    assert!(QMatrix::new(GgmlType::Q8_0, 4, 31, &w).is_err());
    let qm = QMatrix::new(GgmlType::Q8_0, 4, 32, &w).unwrap();
    let mut y = vec![0f32; 8];
    assert!(matmul_q(&qm, &[0f32; 64], 2, &mut y).is_ok());
    assert!(matmul_q(&qm, &[0f32; 63], 2, &mut y).is_err());
    assert!(matmul_q(&qm, &[0f32; 64], 2, &mut y[..7]).is_err());
    assert!(matmul_q(&qm, &[], 0, &mut []).is_ok());
}

/// Every path's matmul (including the four-row kernels used when m ≥ 4) against scalar.
#[test]
fn every_path_matmul_matches_scalar() {
    let mut r = rng(14);
    for ty in TYPES {
        let (n, k) = (21, 512);
        let w = weights(&mut r, ty, n, k);
        let qm = QMatrix::new(ty, n, k, &w).unwrap();
        for m in [1usize, 4, 7, 13] {
            let x = normals(&mut r, m * k, 1.0);
            let mut want = vec![0f32; m * n];
            matmul_q_on(SimdPath::Scalar, &qm, &x, m, &mut want).unwrap();
            for path in SimdPath::ALL {
                if path == SimdPath::Scalar || !path.available() {
                    continue;
                }
                let mut got = vec![0f32; m * n];
                matmul_q_on(path, &qm, &x, m, &mut got).unwrap();
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
                        "{ty} {path:?} m={m}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// On the AVX2 path below the panels' four x rows a row's result does not depend on how many
/// rows share the matmul (a batched decode step of up to three sequences gives each the
/// numbers it would get alone); from four rows on, the panels sum in another order.
#[test]
fn avx2_rows_are_the_same_alone_and_batched() {
    if !SimdPath::Avx2.available() {
        eprintln!("no AVX2 here: nothing to check");
        return;
    }
    let mut r = rng(16);
    for ty in TYPES {
        let (n, k) = (19, 640.max(ty.block_size()).next_multiple_of(256));
        let w = weights(&mut r, ty, n, k);
        let qm = QMatrix::new(ty, n, k, &w).unwrap();
        let m = 3;
        let x = normals(&mut r, m * k, 1.0);
        let mut batched = vec![0f32; m * n];
        matmul_q_on(SimdPath::Avx2, &qm, &x, m, &mut batched).unwrap();
        for i in 0..m {
            let mut alone = vec![0f32; n];
            matmul_q_on(SimdPath::Avx2, &qm, &x[i * k..(i + 1) * k], 1, &mut alone).unwrap();
            for (j, (a, b)) in alone.iter().zip(&batched[i * n..(i + 1) * n]).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{ty} row {i} col {j}: {a} vs {b}");
            }
        }
    }
}

/// The AVX2 panels (from `PanelPacked::MIN_ROWS` rows) give the AVX-512 panels' numbers bit
/// for bit: the same activation quants, exact integer block sums and the same float steps, so
/// prefill logits do not depend on which of the two x86 paths ran. Checked where both exist.
#[test]
fn avx2_panels_equal_avx512_panels_bit_for_bit() {
    if !(SimdPath::Avx2.available() && SimdPath::Avx512.available()) {
        eprintln!("not both AVX2 and AVX-512 here: nothing to check");
        return;
    }
    let mut r = rng(17);
    for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
        let (n, k) = (37, 768);
        let w = weights(&mut r, ty, n, k);
        let qm = QMatrix::new(ty, n, k, &w).unwrap();
        let min = PanelPacked::MIN_ROWS;
        for m in [min, min + 1, 16] {
            let x = normals(&mut r, m * k, 1.0);
            let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
            matmul_q_on(SimdPath::Avx2, &qm, &x, m, &mut a).unwrap();
            matmul_q_on(SimdPath::Avx512, &qm, &x, m, &mut b).unwrap();
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{ty} m={m} element {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// The AVX-512 panel (m ≥ 4; tests/amx.rs covers the opt-in AMX tiles) and
/// two-blocks-per-vector (m < 4) paths on shapes with odd
/// block counts, partial 16-row panels and x-row tails, against the scalar path.
#[test]
fn fast_paths_match_scalar_on_odd_shapes() {
    let mut r = rng(15);
    for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
        let ks: &[usize] = if ty.block_size() == 32 {
            &[32, 96, 640]
        } else {
            &[256, 768]
        };
        for &k in ks {
            for n in [1usize, 5, 16, 17, 35] {
                let w = weights(&mut r, ty, n, k);
                let qm = QMatrix::new(ty, n, k, &w).unwrap();
                for m in [1usize, 2, 3, 4, 5, 7, 9, 16, 35] {
                    let x = normals(&mut r, m * k, 1.0);
                    let mut want = vec![0f32; m * n];
                    matmul_q_on(SimdPath::Scalar, &qm, &x, m, &mut want).unwrap();
                    let mut got = vec![0f32; m * n];
                    matmul_q(&qm, &x, m, &mut got).unwrap();
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
                            "{ty} n={n} k={k} m={m}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

/// The decode layouts of Q5_0, Q8_0 and Q4_K give the same bits as `matmul_q` on the file's
/// layout (which the tests above hold to the scalar reference), for one to three x rows, over
/// shapes with one and several 16-block scale runs, partial runs (640 = 20 blocks; 64 and 192
/// for Q8_0), one to eight Q4_K super-blocks, and odd row counts.
/// Asserts that `product` writes exactly `matmul_q`'s bits for `x (m × cols)`.
fn same_bits_as_matmul_q(qm: &QMatrix, x: &[f32], m: usize, product: impl FnOnce(&mut [f32])) {
    let mut want = vec![0f32; m * qm.rows];
    matmul_q(qm, x, m, &mut want).unwrap();
    let mut got = vec![0f32; m * qm.rows];
    product(&mut got);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let (ty, n, k) = (qm.ty, qm.rows, qm.cols);
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{ty} n={n} k={k} m={m} [{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn decode_packed_is_bit_identical_to_matmul_q() {
    let mut r = rng(16);
    let shapes = [
        (GgmlType::Q5_0, 128usize),
        (GgmlType::Q5_0, 640),
        (GgmlType::Q5_0, 2048),
        (GgmlType::Q8_0, 64),
        (GgmlType::Q8_0, 192),
        (GgmlType::Q8_0, 640),
        (GgmlType::Q8_0, 2048),
        (GgmlType::Q4K, 256),
        (GgmlType::Q4K, 1024),
        (GgmlType::Q4K, 2048),
    ];
    for (ty, k) in shapes {
        for n in [1usize, 3, 4, 7, 64, 129] {
            let w = weights(&mut r, ty, n, k);
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            // Every source byte is reported copied exactly once, in whole rows.
            let seen = std::sync::Mutex::new(vec![0u8; w.len()]);
            let packed = DecodePacked::pack_releasing(&qm, |start, len| {
                assert_eq!((start % qm.row_bytes(), len % qm.row_bytes()), (0, 0));
                seen.lock().unwrap()[start..start + len]
                    .iter_mut()
                    .for_each(|c| *c += 1);
            });
            let Some(p) = packed else {
                // Only CPUs without the AVX-512 path decline.
                assert_ne!(smolt_quant::simd_path(), "avx512");
                return;
            };
            // Same bytes in another order; Q4_K's scales take 16 bytes instead of 12.
            let extra = if ty == GgmlType::Q4K {
                n * k / 256 * 4
            } else {
                0
            };
            assert_eq!(p.len_bytes(), w.len() + extra);
            assert!(seen.into_inner().unwrap().iter().all(|&c| c == 1));
            for m in 1..DecodePacked::MAX_ROWS {
                let x = normals(&mut r, m * k, 1.0);
                same_bits_as_matmul_q(&qm, &x, m, |y| p.matmul(&x, m, y).unwrap());
            }
        }
    }
}

/// A product of a few x rows reads each weight row once for all of them, yet gives every
/// row the bits of its own one-row product: in the file's layout (`matmul_q` below the
/// panels' start, all four decode types) and in the decode layout (any row count, the x rows
/// taken four at a time: 5, 9 and 12 rows end in partial groups). Speculative drafts rely on
/// it to give what one-token passes give.
#[test]
fn each_row_of_a_few_row_product_has_its_one_row_bits() {
    let mut r = rng(18);
    for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
        for (n, k) in [(37usize, 256usize), (130, 1024), (17, 768)] {
            let w = weights(&mut r, ty, n, k);
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            let packed = DecodePacked::pack(&qm);
            for m in [2usize, 3, 4, 5, 7, 9, 12] {
                let x = normals(&mut r, m * k, 1.0);
                let mut one = vec![0f32; m * n];
                for (xr, yr) in x.chunks_exact(k).zip(one.chunks_exact_mut(n)) {
                    matmul_q(&qm, xr, 1, yr).unwrap();
                }
                let check = |what: &str, got: &[f32]| {
                    for (i, (a, b)) in got.iter().zip(&one).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{what} {ty} n={n} k={k} m={m} row {} col {}: {a} vs {b}",
                            i / n,
                            i % n
                        );
                    }
                };
                if m < DecodePacked::MAX_ROWS {
                    let mut y = vec![0f32; m * n];
                    matmul_q(&qm, &x, m, &mut y).unwrap();
                    check("matmul_q", &y);
                }
                if let Some(p) = &packed {
                    let mut y = vec![0f32; m * n];
                    p.matmul(&x, m, &mut y).unwrap();
                    check("decode layout", &y);
                }
            }
        }
    }
}

/// Panels packed once give `matmul_q`'s numbers bit for bit at every x-row count that runs
/// panels (full and partial panels, tails after the tiles' row groups, a server's 16 rows),
/// and refuse fewer rows and wrong shapes; other types and CPUs without panels get `None`.
#[test]
fn panel_packed_is_bit_identical_to_matmul_q() {
    let mut r = rng(17);
    for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
        for (n, k) in [(21usize, 512usize), (64, 256), (7, 1024)] {
            let w = weights(&mut r, ty, n, k);
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            let Some(p) = PanelPacked::pack(&qm) else {
                assert!(!matches!(smolt_quant::simd_path(), "avx512" | "avx2"));
                return;
            };
            let min = PanelPacked::MIN_ROWS;
            for m in [min, min + 1, min + 3, 16, 17] {
                let x = normals(&mut r, m * k, 1.0);
                same_bits_as_matmul_q(&qm, &x, m, |y| p.matmul(&x, m, y).unwrap());
            }
            let few = min - 1;
            let x = normals(&mut r, few * k, 1.0);
            assert!(
                p.matmul(&x, few, &mut vec![0f32; few * n]).is_err(),
                "{few} rows"
            );
            assert!(p
                .matmul(&x[..(few - 1) * k], few, &mut vec![0f32; few * n])
                .is_err());
        }
    }
    let w = weights(&mut r, GgmlType::Q4_0, 16, 256);
    assert!(PanelPacked::pack(&QMatrix::new(GgmlType::Q4_0, 16, 256, &w).unwrap()).is_none());
}

#[test]
fn decode_packing_declines_other_types_and_shapes_and_checks_buffers() {
    let mut r = rng(17);
    let w = weights(&mut r, GgmlType::Q6K, 4, 256);
    assert!(DecodePacked::pack(&QMatrix::new(GgmlType::Q6K, 4, 256, &w).unwrap()).is_none());
    // 96 columns of Q8_0: three blocks, not a whole number of pairs.
    let w = weights(&mut r, GgmlType::Q8_0, 4, 96);
    assert!(DecodePacked::pack(&QMatrix::new(GgmlType::Q8_0, 4, 96, &w).unwrap()).is_none());
    // 96 columns: three blocks, not a whole 128-element group.
    let w = weights(&mut r, GgmlType::Q5_0, 4, 96);
    assert!(DecodePacked::pack(&QMatrix::new(GgmlType::Q5_0, 4, 96, &w).unwrap()).is_none());
    let w = weights(&mut r, GgmlType::Q5_0, 4, 128);
    if let Some(p) = DecodePacked::pack(&QMatrix::new(GgmlType::Q5_0, 4, 128, &w).unwrap()) {
        let err = p.matmul(&[0.0; 127], 1, &mut [0.0; 4]).unwrap_err();
        assert!(err.to_string().contains("x has 127"), "{err}");
    }
}
