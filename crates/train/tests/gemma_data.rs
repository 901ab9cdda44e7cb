//! The data pipeline with Gemma 3's real tokenizer on the SROIE receipts. Both inputs live
//! outside the repository (the model in ~/.cache/smolt/models or $SMOLT_MODEL, the data in
//! shared/data), so the test says so and passes when either is missing.

use std::path::PathBuf;

use smolt_gguf::Gguf;
use smolt_tokenizer::Tokenizer;
use smolt_train::data::load_dataset;
use smolt_train::{TextEncoder, TrainConfig};

fn model_path() -> PathBuf {
    if let Ok(p) = std::env::var("SMOLT_MODEL") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/smolt/models/gemma-3-270m-q4_k_m.gguf")
}

fn sroie_path() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sroie/train.jsonl");
    p.canonicalize().unwrap_or(p)
}

#[test]
fn sroie_receipts_tokenize_with_answer_only_loss() {
    let (model, data) = (model_path(), sroie_path());
    if !model.exists() || !data.exists() {
        eprintln!("skipped: needs {} and {}", model.display(), data.display());
        return;
    }
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let cfg = TrainConfig::default();
    let ds = load_dataset(&data, &cfg, &tok, None).unwrap();
    assert_eq!(ds.stats.records, 626);
    assert_eq!(ds.examples.len() + ds.stats.skipped, 626);
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
