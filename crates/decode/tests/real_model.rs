//! `generate` on the real Gemma 3 270M file, end to end through the public API. Fails (never
//! skips) without the model, saying how to get it.

use smolt_decode::{generate, GenerateOptions, StopReason};
use smolt_model::{Model, Precision};
use std::path::PathBuf;

fn model_path() -> PathBuf {
    let path = std::env::var_os("SMOLT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf".into());
    assert!(
        path.is_file(),
        "the Gemma 3 270M model is not at {}: get it with `cargo run -p smolt -- fetch` (it \
         caches to ~/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf), or point SMOLT_MODEL at a copy",
        path.display()
    );
    path
}

#[test]
fn greedy_fast_continues_like_llama_cpp_and_knows_gemmas_stop_tokens() {
    let model = Model::load(model_path(), Precision::Fast).unwrap();
    // <eos> and <end_of_turn>, found by text in the vocabulary.
    assert_eq!(model.special.end_of_generation, vec![1, 106]);
    assert_eq!(model.special.bos, Some(2));
    // "The capital of France is": llama.cpp (Q4_K_M, greedy) continues " the capital of the
    // country" (greedy_gemma3.json, prompt a); its first near-tie is at step 4, so the first
    // four tokens must match.
    let prompt = [2, 818, 5279, 529, 7001, 563];
    let opts = GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let mut streamed = Vec::new();
    let out = generate(&model, &prompt, &opts, |id| {
        streamed.push(id);
        true
    })
    .unwrap();
    assert_eq!(out.ids, [506, 5279, 529, 506]);
    assert_eq!(out.stop, StopReason::MaxTokens);
    assert_eq!(streamed, out.ids);
}
