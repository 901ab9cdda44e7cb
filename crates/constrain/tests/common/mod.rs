//! Shared by the integration tests: the real Gemma tokenizer and one engine per test binary
//! (building the engine takes most of a second).

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use smolt_constrain::{ConstraintEngine, JsonLayout};
use smolt_tokenizer::Tokenizer;

pub fn model_path() -> std::path::PathBuf {
    smolt_hub::model_for_tests().expect("the real model (smolt-hub)")
}

pub fn tokenizer() -> Arc<Tokenizer> {
    static TOK: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let gguf = smolt_gguf::Gguf::open(model_path()).expect("open gguf");
        Arc::new(Tokenizer::from_gguf(&gguf).expect("tokenizer"))
    })
    .clone()
}

pub fn engine() -> Arc<ConstraintEngine> {
    static ENGINE: OnceLock<Arc<ConstraintEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| ConstraintEngine::new(tokenizer()).expect("engine"))
        .clone()
}

/// Qwen 2.5's byte-level BPE vocabulary, with compact JSON (`,` and `:`), so that tests run
/// on a second tokenizer and a second layout.
pub fn qwen_engine() -> Arc<ConstraintEngine> {
    static ENGINE: OnceLock<Arc<ConstraintEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = smolt_hub::qwen_for_tests().expect("the Qwen model (smolt-hub)");
            let gguf = smolt_gguf::Gguf::open(path).expect("open gguf");
            let tok = Arc::new(Tokenizer::from_gguf(&gguf).expect("tokenizer"));
            let layout = JsonLayout {
                item_separator: ",".into(),
                key_separator: ":".into(),
                whitespace_flexible: false,
            };
            ConstraintEngine::with_json_layout(tok, layout).expect("engine")
        })
        .clone()
}
