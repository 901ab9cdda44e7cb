//! The opt-in AMX panel path (`SMOLT_AMX=1`) against the scalar path. Its own test binary,
//! so the switch, read once per process, is set before any matmul runs; on CPUs without
//! AMX this exercises the AVX-512 fallback instead.

mod common;

use common::*;
use smolt_quant::{matmul_q, matmul_q_on, GgmlType, QMatrix, SimdPath};

#[test]
fn amx_panels_match_scalar() {
    std::env::set_var("SMOLT_AMX", "1");
    let mut r = rng(21);
    for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
        let k = if ty.block_size() == 32 { 640 } else { 512 };
        for n in [5usize, 16, 35] {
            let wf = normals(&mut r, n * k, 0.05);
            let rb = k / ty.block_size() * ty.type_size();
            let mut w = vec![0u8; n * rb];
            for (src, dst) in wf.chunks(k).zip(w.chunks_mut(rb)) {
                smolt_quant::quantize_row(ty, src, dst).unwrap();
            }
            let qm = QMatrix::new(ty, n, k, &w).unwrap();
            for m in [16usize, 35, 64] {
                let x = normals(&mut r, m * k, 1.0);
                let mut want = vec![0f32; m * n];
                matmul_q_on(SimdPath::Scalar, &qm, &x, m, &mut want).unwrap();
                let mut got = vec![0f32; m * n];
                matmul_q(&qm, &x, m, &mut got).unwrap();
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
                        "{ty} n={n} m={m}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
