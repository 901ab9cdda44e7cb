//! Byte-level BPE against llama.cpp: the fixture `tokenizer_bpe.json`
//! (`scripts/tokenizer_reference.py`) holds llama.cpp's ids for 1,057 strings on
//! Qwen2.5-Coder-0.5B's vocabulary with its own pre-tokenizer (`qwen2`) and with `pre`
//! rewritten to `llama-bpe`, `smollm`, `gpt-2` and `default`, and on a tiny damaged vocabulary.
//!
//! The model comes from `smolt_hub::qwen_for_tests` (`SMOLT_QWEN_MODEL`, else fetched and
//! cached as `--model qwen2.5-0.5b` does); without it these tests fail, never skip.

use std::sync::OnceLock;

use serde_json::Value;
use smolt_gguf::{Gguf, GgufWriter, Value as GValue, ValueType};
use smolt_tokenizer::{TokenType, Tokenizer, TokenizerError};

fn qwen_gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| {
        let path = smolt_hub::qwen_for_tests()
            .unwrap_or_else(|e| panic!("the BPE tests need Qwen2.5-Coder-0.5B: {e}"));
        Gguf::open(&path).expect("open the Qwen GGUF")
    })
}

/// The vocabulary as declared, as llama.cpp builds it: what the parity fixture pins.
fn qwen() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf_vocab(qwen_gguf()).expect("build the Qwen tokenizer"))
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        serde_json::from_str(include_str!("fixtures/tokenizer_bpe.json")).expect("fixture JSON")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("id")).expect("u32 id"))
        .collect()
}

fn texts() -> Vec<&'static str> {
    fixture()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c[0].as_str().expect("text"))
        .collect()
}

/// A GGUF holding only the tokenizer metadata of `base`, with `changes` applied (`None`
/// removes a key), as the reference script's vocab-only copies.
fn rewrite(base: &Gguf, changes: &[(&str, Option<GValue>)]) -> Gguf {
    let mut w = GgufWriter::new();
    for (k, v) in base.metadata() {
        if k.starts_with("tokenizer.") && !changes.iter().any(|c| c.0 == k) {
            w.set(k.clone(), v.clone());
        }
    }
    for (k, v) in changes {
        if let Some(v) = v {
            w.set(*k, v.clone());
        }
    }
    Gguf::from_bytes(w.to_bytes()).expect("rewritten GGUF")
}

fn string(s: &str) -> Option<GValue> {
    Some(GValue::String(s.to_string()))
}

fn tiny_gguf(pre: &str) -> Gguf {
    let t = &fixture()["tiny"];
    let strings = |v: &Value| {
        GValue::Array(
            ValueType::String,
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| GValue::String(s.as_str().unwrap().to_string()))
                .collect(),
        )
    };
    let types = GValue::Array(
        ValueType::I32,
        t["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| GValue::I32(x.as_i64().unwrap() as i32))
            .collect(),
    );
    let mut w = GgufWriter::new();
    w.set("tokenizer.ggml.model", GValue::String("gpt2".into()))
        .set("tokenizer.ggml.pre", GValue::String(pre.into()))
        .set("tokenizer.ggml.tokens", strings(&t["tokens"]))
        .set("tokenizer.ggml.token_type", types)
        .set("tokenizer.ggml.merges", strings(&t["merges"]))
        .set(
            "tokenizer.ggml.bos_token_id",
            GValue::U32(t["bos"].as_u64().unwrap() as u32),
        )
        .set(
            "tokenizer.ggml.eos_token_id",
            GValue::U32(t["eos"].as_u64().unwrap() as u32),
        )
        .set(
            "tokenizer.ggml.add_bos_token",
            GValue::Bool(pre == "llama-bpe"),
        );
    Gguf::from_bytes(w.to_bytes()).expect("tiny GGUF")
}

/// The tokenizer for one of the fixture's vocabularies, built the way the script built its GGUF.
fn vocab(name: &str) -> Tokenizer {
    let g = match name {
        "qwen2" => return qwen().clone(),
        "llama-bpe" => rewrite(
            qwen_gguf(),
            &[
                ("tokenizer.ggml.pre", string("llama-bpe")),
                ("tokenizer.ggml.add_bos_token", None),
            ],
        ),
        "default" => rewrite(qwen_gguf(), &[("tokenizer.ggml.pre", None)]),
        "smollm" | "gpt-2" => rewrite(qwen_gguf(), &[("tokenizer.ggml.pre", string(name))]),
        "tiny-qwen2" => tiny_gguf("qwen2"),
        "tiny-llama-bpe" => tiny_gguf("llama-bpe"),
        other => panic!("fixture names an unknown vocabulary {other}"),
    };
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn qwen_metadata() {
    let t = qwen();
    assert!(t.is_byte_level());
    assert_eq!(t.vocab_size(), 151_936);
    assert_eq!(t.bos_id(), Some(151_643));
    assert_eq!(t.eos_id(), Some(151_645));
    assert_eq!(t.pad_id(), Some(151_643));
    assert_eq!(t.unk_id(), None);
    assert_eq!(t.end_of_turn_id(), Some(151_645));
    assert!(!t.add_bos_token());
    assert!(t.chat_template().unwrap().contains("<|im_start|>"));
    assert_eq!(t.id_of("<|im_start|>"), Some(151_644));
    assert!(t.is_control(151_644) && t.is_control(151_643));
    assert_eq!(t.token_type(151_657), Some(TokenType::UserDefined)); // <tool_call>
    assert_eq!(t.token_type(151_665), Some(TokenType::Unused)); // [PAD151665]
                                                                // llama.cpp's end-of-generation set: EOS, <|endoftext|>, the FIM pad/repo/file separators.
    for id in [151_645, 151_643, 151_662, 151_663, 151_664] {
        assert!(t.is_end_of_generation(id), "{id}");
    }
    assert!(!t.is_end_of_generation(151_644));
    // Pieces are GPT-2 characters; bytes are what they stand for.
    assert_eq!(t.id_of("Ġworld"), Some(1879));
    assert_eq!(t.token_piece(1879), "Ġworld");
    assert_eq!(t.token_bytes(1879), b" world");
    assert_eq!(t.token_bytes(198), b"\n");
    assert_eq!(t.token_piece(198), "Ċ");
    assert_eq!(t.token_bytes(151_644), b"<|im_start|>");
    assert_eq!(t.token_bytes(151_657), b"<tool_call>");
    assert!(
        t.token_bytes(151_665).is_empty(),
        "unused tokens print nothing"
    );
    assert!(t.token_bytes(151_936).is_empty());
    // Every byte has a one-byte token, and token_bytes inverts the byte map for all of them.
    for b in 0..=255u8 {
        let ids = t.encode(std::str::from_utf8(&[b]).unwrap_or(""), false, false);
        if b < 0x80 {
            assert_eq!(ids.len(), 1, "byte {b:#x}");
            assert_eq!(t.token_bytes(ids[0]), [b]);
        }
    }
}

/// Every fixture vocabulary, every case, special parsing on and off, BOS as the GGUF says.
#[test]
fn ids_match_llamacpp() {
    let texts = texts();
    assert!(texts.len() >= 1000, "{} cases", texts.len());
    let mut failures = Vec::new();
    let mut checked = 0usize;
    let mut per_vocab = Vec::new();
    for (name, r) in fixture()["ids"].as_object().expect("ids") {
        let t = vocab(name);
        assert_eq!(
            t.add_bos_token(),
            r["add_bos"].as_bool().unwrap(),
            "{name}: add_bos"
        );
        let cases = r["cases"].as_array().unwrap();
        let special = r["special"].as_array().unwrap();
        assert_eq!(cases.len(), special.len(), "{name}");
        let plain = r["plain_where_different"].as_object().unwrap();
        let mut n = 0;
        for (c, want) in cases.iter().zip(special) {
            let i = c.as_u64().unwrap() as usize;
            let text = texts[i];
            let want = ids(want);
            let want_plain = plain.get(&i.to_string()).map_or_else(|| want.clone(), ids);
            for (parse, want) in [(true, want), (false, want_plain)] {
                let got = t.encode(text, t.add_bos_token(), parse);
                n += 1;
                if got != want {
                    failures.push(format!(
                        "{name} case {i} (parse_special={parse}) {:?}\n  want {want:?}\n  got  {got:?}",
                        text.chars().take(80).collect::<String>()
                    ));
                }
            }
        }
        per_vocab.push(format!("{name}: {n}"));
        checked += n;
    }
    eprintln!("checked {checked} encodings ({})", per_vocab.join(", "));
    assert!(
        failures.is_empty(),
        "{} of {checked} differ from llama.cpp:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(per_vocab.len(), 7);
}

/// decode(encode(s)) == s on every case for the real vocabulary and its variants, and the
/// reference ids themselves decode to the text (so decode is checked on ids we did not make).
#[test]
fn decode_inverts_encode() {
    let texts = texts();
    for name in ["qwen2", "llama-bpe", "smollm", "gpt-2", "default"] {
        let t = vocab(name);
        let r = &fixture()["ids"][name];
        for (c, want) in r["cases"]
            .as_array()
            .unwrap()
            .iter()
            .zip(r["special"].as_array().unwrap())
        {
            let text = texts[c.as_u64().unwrap() as usize];
            for parse in [true, false] {
                let got = t.decode(&t.encode(text, false, parse), false);
                assert_eq!(got, text, "{name} parse_special={parse}");
            }
            let mut reference = ids(want);
            if t.add_bos_token() {
                assert_eq!(reference.first(), t.bos_id().as_ref(), "{name}");
                reference.remove(0);
            }
            assert_eq!(t.decode(&reference, false), text, "{name} reference ids");
        }
    }
}

/// What smolt feeds the model: Qwen2.5-Coder-0.5B's `<tool_call>` / `</tool_call>` rows are
/// the fillers' (untrained), so their text is spelled with ordinary pieces, which round-trip.
#[test]
fn untrained_added_tokens_are_spelled_with_pieces() {
    let t = Tokenizer::from_gguf(qwen_gguf()).unwrap();
    assert_eq!(t.untrained_tokens(), [151_657, 151_658]);
    assert_eq!(t.token_type(151_657), Some(TokenType::Unused));
    // Trained added tokens stay tokens.
    assert_eq!(t.token_type(151_644), Some(TokenType::Control));
    assert!(qwen().untrained_tokens().is_empty());
    let text = "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\"}\n</tool_call><|im_end|>";
    let ids = t.encode(text, false, true);
    assert_eq!(ids[0], 151_644);
    assert!(
        !ids.contains(&151_657) && !ids.contains(&151_658),
        "{ids:?}"
    );
    assert_eq!(t.decode(&ids, false), text);
    // The declared vocabulary matches them, as llama.cpp does.
    assert!(qwen().encode(text, false, true).contains(&151_657));
}

#[test]
fn decode_skips_specials_and_replaces_broken_utf8() {
    let t = qwen();
    let ids = t.encode("<|im_start|>user\nhi<|im_end|><tool_call>", false, true);
    assert_eq!(t.decode(&ids, true), "user\nhi<tool_call>");
    // "日" is three bytes; its first byte alone is invalid UTF-8 (one U+FFFD, as HF's
    // ByteLevel decoder and String::from_utf8_lossy give).
    let byte_e6 = t.id_of("æ").expect("the GPT-2 character of byte 0xE6");
    assert_eq!(t.token_bytes(byte_e6), [0xE6]);
    let hello = t.encode("hello", false, false);
    let mut mixed = vec![byte_e6];
    mixed.extend(&hello);
    assert_eq!(t.decode(&mixed, false), "\u{FFFD}hello");
    // Ids outside the vocabulary are ignored.
    assert_eq!(
        t.decode(&[u32::MAX, hello[0]], false),
        t.decode(&hello[..1], false)
    );
}

#[test]
fn hostile_text_never_panics_and_round_trips() {
    use rand::{Rng, SeedableRng};
    let t = qwen();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for _ in 0..300 {
        let len = rng.gen_range(0..64);
        let s: String = (0..len)
            .map(|_| loop {
                if let Some(c) = char::from_u32(rng.gen_range(0..0x11_0000)) {
                    break c;
                }
            })
            .collect();
        for parse in [true, false] {
            assert_eq!(t.decode(&t.encode(&s, true, parse), true), s);
        }
        let ids: Vec<u32> = (0..len).map(|_| rng.gen_range(0..200_000)).collect();
        let _ = t.decode(&ids, false);
    }
    // Long runs stress the merge queue; they must stay exact and fast.
    for s in [
        "a".repeat(20_000),
        " ".repeat(20_000),
        "9".repeat(20_000),
        "<|im_end|>".repeat(2_000),
    ] {
        let ids = t.encode(&s, false, true);
        assert_eq!(t.decode(&ids, false), s);
    }
}

#[test]
fn unknown_pre_and_model_are_clear_errors() {
    let g = rewrite(qwen_gguf(), &[("tokenizer.ggml.pre", string("gpt2"))]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(matches!(e, TokenizerError::UnsupportedPre { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("`gpt2`") && msg.contains("gpt-2") && msg.contains("qwen2"),
        "{msg}"
    );

    let g = rewrite(qwen_gguf(), &[("tokenizer.ggml.model", string("bert"))]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("`bert`"), "{e}");

    let g = rewrite(qwen_gguf(), &[("tokenizer.ggml.merges", None)]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");

    let g = rewrite(qwen_gguf(), &[("tokenizer.ggml.pre", Some(GValue::U32(7)))]);
    let e = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.pre"), "{e}");
}
