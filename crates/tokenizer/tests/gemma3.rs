//! Real-model checks against the Gemma 3 fixture (ids from llama.cpp, strings from Hugging Face).
//!
//! These use `$SMOLT_MODEL` or the default model (fetched on first use) and
//! fail loudly without it: a silently skipped tokenizer test is how id drift ships.

use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;
use smolt_gguf::Gguf;
use smolt_tokenizer::{TokenType, Tokenizer};

fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = smolt_hub::model_for_tests()
            .unwrap_or_else(|e| panic!("the real-model tests need Gemma 3 270M: {e}"));
        let gguf = Gguf::open(&path).expect("open GGUF");
        Tokenizer::from_gguf(&gguf).expect("build tokenizer")
    })
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/tokenizer_gemma3.json")).expect("fixture JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn metadata_matches_gemma3() {
    let t = tok();
    assert_eq!(t.vocab_size(), 262_144);
    assert_eq!(t.bos_id(), Some(2));
    assert_eq!(t.eos_id(), Some(1));
    assert_eq!(t.unk_id(), Some(3));
    assert_eq!(t.pad_id(), Some(0));
    assert_eq!(t.end_of_turn_id(), Some(106));
    assert_eq!(t.id_of("<start_of_turn>"), Some(105));
    assert!(t.is_control(105) && t.is_control(106) && t.is_control(2));
    assert!(t.add_bos_token());
    assert_eq!(t.token_type(464), Some(TokenType::Byte));
    assert_eq!(t.token_bytes(464), vec![0xE2]);
    assert_eq!(t.token_bytes(1902), b" world".to_vec());
    assert_eq!(t.token_piece(1902), "\u{2581}world");
    assert_eq!(t.token_bytes(105), b"<start_of_turn>".to_vec());
    assert!(t.is_end_of_generation(1) && t.is_end_of_generation(106));
    // Gemma's whitespace runs are user-defined tokens stored with raw spaces in the GGUF.
    assert_eq!(t.token_type(138), Some(TokenType::UserDefined));
    assert_eq!(t.token_piece(138), "\u{2581}\u{2581}");
    assert_eq!(t.id_of("\u{2581}\u{2581}"), Some(138));
    assert_eq!(t.id_of("  "), Some(138));
    assert_eq!(t.id_of("\u{2581}"), Some(236743));
    assert_eq!(t.token_bytes(138), b"  ".to_vec());
}

#[test]
fn fixture_encode_cases() {
    let t = tok();
    let f = fixture();
    let cases = f["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 105);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, c) in cases.iter().enumerate() {
        let text = c["text"].as_str().expect("text");
        let mut check = |what: &str, want: Vec<u32>, got: Vec<u32>| {
            checked += 1;
            if want != got {
                failures.push(format!(
                    "case {i} ({what}) {:?}\n  want {want:?}\n  got  {got:?}",
                    text.chars().take(60).collect::<String>()
                ));
            }
        };
        check("no_bos", ids(&c["no_bos"]), t.encode(text, false, true));
        check("with_bos", ids(&c["with_bos"]), t.encode(text, true, true));
        if let Some(v) = c.get("no_parse_special_no_bos") {
            check("no_parse_special", ids(v), t.encode(text, false, false));
        } else {
            // Where the fixture gives no separate list, parsing specials changes nothing.
            check(
                "no_parse_special=no_bos",
                ids(&c["no_bos"]),
                t.encode(text, false, false),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 315);
}

#[test]
fn fixture_decode_checks() {
    let t = tok();
    let f = fixture();
    let checks = f["decode"].as_array().expect("decode");
    assert_eq!(checks.len(), 11);
    for c in checks {
        let what = c["what"].as_str().unwrap_or("?");
        let id_list = ids(&c["ids"]);
        assert_eq!(
            t.decode(&id_list, false),
            c["decoded"].as_str().unwrap(),
            "{what}"
        );
        assert_eq!(
            t.decode(&id_list, true),
            c["decoded_skip_special"].as_str().unwrap(),
            "{what} (skip special)"
        );
        let strings: Vec<&str> = c["token_strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let pieces: Vec<&str> = id_list.iter().map(|&id| t.token_piece(id)).collect();
        assert_eq!(pieces, strings, "{what} pieces");
    }
}

#[test]
fn fixture_round_trips() {
    // Decoding the reference ids gives back the text, so the fixture exercises decode broadly.
    let t = tok();
    for c in fixture()["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(t.decode(&ids(&c["no_bos"]), false), text);
    }
}

#[test]
fn throughput_on_long_receipts() {
    let t = tok();
    let f = fixture();
    let mut texts: Vec<&str> = f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "sroie_input")
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    texts.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let longest = t.encode(texts[0], true, true).len();
    let start = Instant::now();
    let mut n_tokens = 0usize;
    let mut n_bytes = 0usize;
    let reps = 5;
    for _ in 0..reps {
        for s in &texts {
            n_tokens += t.encode(s, true, true).len();
            n_bytes += s.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let per_longest = {
        let s = Instant::now();
        for _ in 0..10 {
            std::hint::black_box(t.encode(texts[0], true, true));
        }
        s.elapsed().as_secs_f64() / 10.0
    };
    eprintln!(
        "encode throughput: {:.0} tokens/s ({:.1} MB/s) over {} receipts x{reps}; \
         longest receipt {} tokens in {:.3} ms",
        n_tokens as f64 / secs,
        n_bytes as f64 / secs / 1e6,
        texts.len(),
        longest,
        per_longest * 1e3
    );
    // Generous bound that still catches quadratic behaviour on a shared 2-core box.
    assert!(per_longest < 0.05, "longest receipt took {per_longest:.3}s");
}

#[test]
fn never_panics_on_hostile_text() {
    use rand::{Rng, SeedableRng};
    let t = tok();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..200 {
        let len = rng.gen_range(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = t.encode(&s, true, true);
        let ids: Vec<u32> = (0..len).map(|_| rng.gen_range(0..300_000)).collect();
        let _ = t.decode(&ids, false);
    }
    let many_specials = "<start_of_turn>  <end_of_turn>\u{2581}<unk>".repeat(500);
    let got = t.encode(&many_specials, false, true);
    assert_eq!(
        t.decode(&got, false),
        many_specials.replace('\u{2581}', " ")
    );
    let huge = "The total is 12.50 RM. ".repeat(20_000);
    let got = t.encode(&huge, false, false);
    assert_eq!(t.decode(&got, false), huge);
}

#[test]
fn decode_inverts_encode_on_random_unicode() {
    use rand::{Rng, SeedableRng};
    let t = tok();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let common: Vec<char> =
        "abcXYZ019 .,:;/-\n\t\r€éßöçñ—“”…日本語中文한국어Привет😀👍🏽\u{200d}\u{301}"
            .chars()
            .collect();
    for _ in 0..300 {
        let len = rng.gen_range(0..80);
        let s: String = (0..len)
            .map(|_| {
                if rng.gen_bool(0.8) {
                    common[rng.gen_range(0..common.len())]
                } else {
                    // Any scalar value but U+2581, which SentencePiece cannot tell from a space.
                    loop {
                        if let Some(c) = char::from_u32(rng.gen_range(0..0x11_0000)) {
                            if c != '\u{2581}' {
                                break c;
                            }
                        }
                    }
                }
            })
            .collect();
        let ids = t.encode(&s, false, false);
        assert_eq!(t.decode(&ids, false), s, "ids {ids:?}");
    }
}
