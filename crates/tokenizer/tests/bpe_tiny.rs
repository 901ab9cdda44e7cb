//! Byte-level BPE on hand-built vocabularies, where every expected id can be worked out by
//! hand from the merge list. (The real vocabularies are checked against llama.cpp in
//! `bpe_llamacpp.rs`.)

use smolt_tokenizer::{BpeSpec, TokenType, Tokenizer, TokenizerError, VocabSpec};

/// GPT-2's byte → character table, written out from its definition (encoder.py).
fn gpt2_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (0x21..=0x7E)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).unwrap();
    }
    table
}

// Ids 0..256 are the bytes (id = byte value), then these.
const AB: u32 = 256;
const BC: u32 = 257;
const ABC: u32 = 258;
const SP_A: u32 = 259;
const AA: u32 = 260;
const END: u32 = 261;
const USER: u32 = 262;
const HELLO: u32 = 263;

fn spec(pre: Option<&str>, merges: &[&str]) -> VocabSpec {
    let mut tokens: Vec<String> = gpt2_chars().iter().map(|c| c.to_string()).collect();
    let mut types = vec![TokenType::Normal; 256];
    for (t, ty) in [
        ("ab", TokenType::Normal),
        ("bc", TokenType::Normal),
        ("abc", TokenType::Normal),
        ("Ġa", TokenType::Normal),
        ("aa", TokenType::Normal),
        ("<|end|>", TokenType::Control),
        ("<u>", TokenType::UserDefined),
        // Reachable by no merge: only a pre-tokenizer with ignore_merges emits it.
        ("hello", TokenType::Normal),
    ] {
        tokens.push(t.to_string());
        types.push(ty);
    }
    let n = tokens.len();
    VocabSpec {
        eos_id: Some(END),
        bpe: Some(BpeSpec {
            merges: merges.iter().map(|m| m.to_string()).collect(),
            pre: pre.map(str::to_string),
        }),
        ..VocabSpec::new(tokens, vec![0.0; n], types)
    }
}

const MERGES: &[&str] = &["b c", "a b", "a bc", "Ġ a", "a a"];

fn tok(pre: &str) -> Tokenizer {
    Tokenizer::new(spec(Some(pre), MERGES)).expect("tiny BPE vocabulary")
}

fn bytes(s: &str) -> Vec<u32> {
    s.bytes().map(u32::from).collect()
}

#[test]
fn lowest_rank_merges_first() {
    let t = tok("qwen2");
    // (b,c) has rank 0 and beats (a,b) at rank 1; then (a,bc) makes "abc".
    assert_eq!(t.encode("abc", false, false), [ABC]);
    assert_eq!(t.encode("ab", false, false), [AB]);
    assert_eq!(t.encode("bcb", false, false), [BC, u32::from(b'b')]);
    // Space joins the word after it; "Ġ a" is a merge.
    assert_eq!(t.encode("x a", false, false), [u32::from(b'x'), SP_A]);
    // No merge applies: one byte token each, including the space's "Ġ".
    assert_eq!(t.encode("zz y", false, false), bytes("zz y"));
}

#[test]
fn equal_ranks_merge_leftmost_first() {
    let t = tok("qwen2");
    assert_eq!(t.encode("aaa", false, false), [AA, u32::from(b'a')]);
    assert_eq!(t.encode("abab", false, false), [AB, AB]);
}

#[test]
fn first_listing_of_a_pair_counts() {
    // "b c" listed again after "a b": its first rank (0) still wins, so "abc" → a + bc → abc.
    let mut merges = MERGES.to_vec();
    merges.push("b c");
    let t = Tokenizer::new(spec(Some("qwen2"), &merges)).unwrap();
    assert_eq!(t.encode("abc", false, false), [ABC]);
    // Listed first only at the end: now "a b" wins and "ab" + "c" has no merge.
    let t = Tokenizer::new(spec(Some("qwen2"), &["a b", "b c", "a bc"])).unwrap();
    assert_eq!(t.encode("abc", false, false), [AB, u32::from(b'c')]);
}

#[test]
fn a_merge_result_outside_the_vocabulary_falls_back_to_byte_tokens() {
    // "c d" makes "cd", which is no token; llama.cpp emits the single-character tokens of
    // its bytes instead.
    let t = Tokenizer::new(spec(Some("qwen2"), &["c d"])).unwrap();
    assert_eq!(t.encode("cd", false, false), bytes("cd"));
    // Lines that are not pairs are skipped, as llama.cpp never matches them.
    let t = Tokenizer::new(spec(Some("qwen2"), &["nospace", "", " x", "a b"])).unwrap();
    assert_eq!(t.encode("ab", false, false), [AB]);
}

#[test]
fn ignore_merges_emits_whole_word_tokens() {
    // Llama 3's pre-tokenizer looks the whole word up first; Qwen2's does not.
    assert_eq!(tok("llama-bpe").encode("hello", false, false), [HELLO]);
    assert_eq!(tok("qwen2").encode("hello", false, false), bytes("hello"));
}

#[test]
fn specials_split_out_and_decode_back() {
    let t = tok("qwen2");
    let ids = t.encode("ab<|end|>abc<u>", false, true);
    assert_eq!(ids, [AB, END, ABC, USER]);
    // Without special parsing the control token is text; the user-defined one still splits.
    let plain = t.encode("ab<|end|><u>", false, false);
    assert_eq!(plain.last(), Some(&USER));
    assert!(!plain.contains(&END));
    assert_eq!(t.decode(&plain, false), "ab<|end|><u>");
    assert_eq!(t.decode(&ids, false), "ab<|end|>abc<u>");
    assert_eq!(t.decode(&ids, true), "ababc<u>");
    assert!(t.is_end_of_generation(END));
}

#[test]
fn token_bytes_undo_the_byte_map() {
    let t = tok("qwen2");
    let chars = gpt2_chars();
    for b in 0..=255u8 {
        assert_eq!(t.token_bytes(u32::from(b)), [b], "byte {b:#x}");
        assert_eq!(t.token_piece(u32::from(b)), chars[b as usize].to_string());
    }
    assert_eq!(t.token_bytes(SP_A), b" a");
    assert_eq!(t.token_piece(SP_A), "Ġa");
    assert_eq!(t.id_of("Ġa"), Some(SP_A));
    assert_eq!(t.token_bytes(END), b"<|end|>");
    assert!(t.token_bytes(9999).is_empty());
    // Bytes of one character split over tokens join back; a lone lead byte is one U+FFFD.
    let e = "é".as_bytes();
    assert_eq!(t.decode(&[u32::from(e[0]), u32::from(e[1])], false), "é");
    assert_eq!(
        t.decode(&[u32::from(e[0]), u32::from(b'a')], false),
        "\u{FFFD}a"
    );
}

#[test]
fn every_pre_tokenizer_round_trips() {
    let text = "I'm  42\tfoo(bar);\r\n  x1234 日本 😀 <u>";
    for pre in ["qwen2", "llama-bpe", "smollm", "gpt-2", "default"] {
        let t = tok(pre);
        assert_eq!(t.decode(&t.encode(text, false, true), false), text, "{pre}");
    }
    let t = Tokenizer::new(spec(None, MERGES)).unwrap();
    assert_eq!(t.decode(&t.encode(text, false, true), false), text);
}

#[test]
fn bad_vocabularies_are_errors_not_panics() {
    let e = Tokenizer::new(spec(Some("tekken"), MERGES)).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::UnsupportedPre { pre, .. } if pre == "tekken"),
        "{e:?}"
    );
    assert!(e.to_string().contains("qwen2, deepseek-r1-qwen"), "{e}");

    let mut s = spec(Some("qwen2"), MERGES);
    s.types.pop();
    assert!(matches!(
        Tokenizer::new(s),
        Err(TokenizerError::LengthMismatch { .. })
    ));

    let mut s = spec(Some("qwen2"), MERGES);
    s.eog_ids.push(100_000);
    let e = Tokenizer::new(s).unwrap_err();
    assert!(e.to_string().contains("end-of-generation"), "{e}");
}
