//! The data pipeline with Gemma 3's real tokenizer on real SROIE receipts: the 40 receipt
//! texts and answers that the tokenizer fixture carries (tests never read `shared/`), and the
//! real model fetched through smolt-hub as the binary fetches it.

use std::io::Write;
use std::path::PathBuf;

use smolt_gguf::Gguf;
use smolt_tokenizer::Tokenizer;
use smolt_train::data::load_dataset;
use smolt_train::{TextEncoder, TrainConfig};

/// A JSONL file of `{"input", "output"}` records built from the tokenizer fixture's paired
/// `sroie_input` / `sroie_output_json` cases.
fn sroie_jsonl(dir: &std::path::Path) -> PathBuf {
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tokenizer/tests/fixtures/tokenizer_gemma3.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fx).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let texts = |src: &str| -> Vec<String> {
        cases
            .iter()
            .filter(|c| c["source"] == src)
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect()
    };
    let (inputs, outputs) = (texts("sroie_input"), texts("sroie_output_json"));
    assert_eq!(inputs.len(), 40);
    assert_eq!(outputs.len(), 40);
    let path = dir.join("sroie40.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (input, output) in inputs.iter().zip(&outputs) {
        let output: serde_json::Value = serde_json::from_str(output).unwrap();
        let rec = serde_json::json!({ "input": input, "output": output });
        writeln!(f, "{rec}").unwrap();
    }
    path
}

#[test]
fn sroie_receipts_tokenize_with_answer_only_loss() {
    let model = smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("this test needs Gemma 3 270M: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let data = sroie_jsonl(dir.path());
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let cfg = TrainConfig::default();
    let ds = load_dataset(&data, &cfg, &tok, None).unwrap();
    assert_eq!(ds.stats.records, 40);
    assert_eq!(ds.examples.len() + ds.stats.skipped, 40);
    assert!(!ds.examples.is_empty());
    let bos = tok.bos_id().unwrap();
    let eos = TextEncoder::eos_id(&tok);
    for ex in &ds.examples {
        assert!(ex.len() <= cfg.max_len);
        assert_eq!(ex.ids[0], bos);
        assert_eq!(*ex.ids.last().unwrap(), eos);
        let first_target = ex.loss_mask.iter().position(|&m| m).unwrap();
        assert!(ex.loss_mask[first_target..].iter().all(|&m| m));
        // The answer decodes back to compact JSON.
        let answer = tok.decode(&ex.ids[first_target..ex.len() - 1], true);
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(v.get("company").is_some(), "{answer}");
    }
    eprintln!("{}", ds.describe(cfg.max_len));
}
