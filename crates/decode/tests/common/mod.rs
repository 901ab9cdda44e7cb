//! Shared by the constrained-decoding tests: the real Gemma tokenizer, one engine per test
//! binary (building the engine takes most of a second) and a temperature sampler. The real
//! model as a logit source is the crate's own `ModelLogits`.

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

/// Temperature sampling (softmax over the finite logits) for the corpus test, as it was when
/// the test lived in smolt-constrain (which cannot use this crate): the corpus keeps sampling
/// what it always did, and `smolt_decode::Sampler` draws differently.
pub struct TempSampler {
    pub temperature: f32,
    pub rng: rand::rngs::StdRng,
}

impl TempSampler {
    pub fn new(temperature: f32, seed: u64) -> Self {
        use rand::SeedableRng;
        TempSampler {
            temperature,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        use rand::Rng;
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let w: Vec<f64> = logits
            .iter()
            .map(|&l| (((l - max) / self.temperature) as f64).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let mut r = self.rng.gen::<f64>() * total;
        for (i, &x) in w.iter().enumerate() {
            if x > 0.0 {
                r -= x;
                if r < 0.0 {
                    return i as u32;
                }
            }
        }
        smolt_decode::greedy(logits)
    }
}
