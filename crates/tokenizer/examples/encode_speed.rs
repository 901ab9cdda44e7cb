//! Encoding speed of the byte-level BPE tokenizer (Qwen2.5-Coder) beside the SentencePiece one
//! (Gemma 3) on the same text: the receipts, code and prose of the BPE fixture.
//!
//! ```text
//! cargo run --release -p smolt-tokenizer --example encode_speed
//! ```
//!
//! Both models come from smolt-hub (fetched on first use, or `SMOLT_MODEL` /
//! `SMOLT_QWEN_MODEL`). One thread; the best of five passes is reported, since a shared
//! machine only ever makes a pass slower.

use std::time::Instant;

use smolt_gguf::Gguf;
use smolt_tokenizer::Tokenizer;

fn main() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/tokenizer_bpe.json"))
            .expect("fixture JSON");
    let texts: Vec<&str> = fixture["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| {
            matches!(
                c[1].as_str(),
                Some("receipt" | "receipt_long" | "code" | "words")
            )
        })
        .map(|c| c[0].as_str().expect("text"))
        .collect();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    println!(
        "text: {} strings, {:.1} KB (synthetic receipts, code, prose)",
        texts.len(),
        bytes as f64 / 1e3
    );

    let load = |path: std::path::PathBuf| {
        let started = Instant::now();
        let gguf = Gguf::open(&path).expect("open GGUF");
        let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
        (tok, started.elapsed().as_secs_f64())
    };
    let gemma = smolt_hub::model_for_tests().expect("Gemma 3 270M (SMOLT_MODEL, or fetched)");
    let qwen =
        smolt_hub::qwen_for_tests().expect("Qwen2.5-Coder-0.5B (SMOLT_QWEN_MODEL, or fetched)");
    for (name, path) in [
        ("Gemma 3 (SentencePiece)", gemma),
        ("Qwen2.5 (byte-level BPE)", qwen),
    ] {
        let (tok, load_s) = load(path);
        let mut best = f64::INFINITY;
        let mut n_tokens = 0;
        for _ in 0..5 {
            let started = Instant::now();
            n_tokens = 0;
            for t in &texts {
                n_tokens += std::hint::black_box(tok.encode(t, false, true)).len();
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{name:26} {n_tokens:7} tokens  {:9.0} tokens/s  {:6.2} MB/s  (vocabulary loaded in {:.0} ms)",
            n_tokens as f64 / best,
            bytes as f64 / best / 1e6,
            load_s * 1e3
        );
    }
}
