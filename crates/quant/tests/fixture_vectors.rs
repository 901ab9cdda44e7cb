//! Bit-exact checks against `tests/fixtures/dequant_vectors.json` (made with the `gguf`
//! Python package and cross-checked against libggml; see the file's "about").

use serde_json::Value;
use smolt_quant::{dequantize_row, quantize_row, GgmlType};

fn fixture() -> Value {
    let text = include_str!("fixtures/dequant_vectors.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn value_f32(v: &Value) -> f32 {
    match v {
        Value::Number(n) => n.as_f64().unwrap() as f32,
        Value::String(s) => match s.as_str() {
            "nan" => f32::NAN,
            "inf" => f32::INFINITY,
            "-inf" => f32::NEG_INFINITY,
            other => panic!("unexpected value {other}"),
        },
        other => panic!("unexpected value {other}"),
    }
}

fn same_bits(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn types(fx: &Value) -> Vec<(GgmlType, &Value)> {
    fx["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let ty = GgmlType::from_name(name).unwrap_or_else(|| panic!("unknown type {name}"));
            assert_eq!(ty.id() as u64, v["ggml_type_id"].as_u64().unwrap());
            (ty, v)
        })
        .collect()
}

fn assert_decodes(ty: GgmlType, bytes: &[u8], expected: &[f32], what: &str) {
    let mut out = vec![0f32; expected.len()];
    dequantize_row(ty, bytes, &mut out).unwrap();
    for (i, (&got, &want)) in out.iter().zip(expected).enumerate() {
        assert!(
            same_bits(got, want),
            "{ty} {what}: element {i}: got {got:e} ({:#010x}), want {want:e} ({:#010x})",
            got.to_bits(),
            want.to_bits()
        );
    }
}

#[test]
fn every_fixture_block_dequantizes_bit_exactly() {
    let fx = fixture();
    let mut checked = 0;
    for (ty, v) in types(&fx) {
        for (bi, block) in v["blocks"].as_array().unwrap().iter().enumerate() {
            let bytes = hex(block["hex"].as_str().unwrap());
            let expected: Vec<f32> = block["expected"]
                .as_array()
                .unwrap()
                .iter()
                .map(value_f32)
                .collect();
            if let Some(bits) = block.get("expected_f32_bits") {
                for (e, b) in expected.iter().zip(bits.as_array().unwrap()) {
                    let b = u32::from_str_radix(b.as_str().unwrap(), 16).unwrap();
                    assert!(
                        same_bits(*e, f32::from_bits(b)),
                        "{ty}: fixture bits disagree"
                    );
                }
            }
            assert_decodes(
                ty,
                &bytes,
                &expected,
                &format!("block {bi} ({})", block["source"]),
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} blocks checked");
}

#[test]
fn roundtrip_bytes_dequantize_bit_exactly() {
    let fx = fixture();
    for (ty, v) in types(&fx) {
        for (ri, row) in v["roundtrip"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let bytes = hex(row["quantized_hex"].as_str().unwrap());
            let expected: Vec<f32> = row["dequantized"]
                .as_array()
                .unwrap()
                .iter()
                .map(value_f32)
                .collect();
            assert_decodes(ty, &bytes, &expected, &format!("roundtrip row {ri}"));
        }
    }
}

/// Our quantizers are ports of ggml's reference ones, so they must give the same bytes
/// as the fixture for every type (legacy types quantized by `gguf`, which matches
/// libggml; K-quants by libggml's `ggml_quantize_chunk` without imatrix).
#[test]
fn quantize_reproduces_reference_bytes() {
    let fx = fixture();
    for (ty, v) in types(&fx) {
        for (ri, row) in v["roundtrip"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let input: Vec<f32> = row["input_f32"]
                .as_array()
                .unwrap()
                .iter()
                .map(value_f32)
                .collect();
            let want = hex(row["quantized_hex"].as_str().unwrap());
            let mut got = vec![0u8; want.len()];
            quantize_row(ty, &input, &mut got).unwrap();
            assert_eq!(got, want, "{ty} roundtrip row {ri}");
        }
    }
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    let mut out = vec![0f32; 32];
    assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 33], &mut out).is_err());
    assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 35], &mut out).is_err());
    let mut out31 = vec![0f32; 31];
    assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 34], &mut out31).is_err());
    let mut out256 = vec![0f32; 256];
    assert!(dequantize_row(GgmlType::Q4K, &[0u8; 143], &mut out256).is_err());
    assert!(dequantize_row(GgmlType::Q4K, &[0u8; 144], &mut out256).is_ok());
    let mut bytes = vec![0u8; 10];
    assert!(quantize_row(GgmlType::Q6K, &[0f32; 100], &mut bytes).is_err());
    assert!(dequantize_row(GgmlType::F32, &[0u8; 7], &mut [0f32; 2]).is_err());
}
