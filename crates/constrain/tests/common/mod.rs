//! Shared by the integration tests: the real Gemma tokenizer and one engine per test binary
//! (building the engine takes most of a second).

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use smolt_constrain::ConstraintEngine;
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
