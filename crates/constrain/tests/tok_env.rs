//! The tokenizer environment llguidance sees, checked against smolt's tokenizer on the real
//! Gemma 3 vocabulary.

mod common;

use smolt_constrain::{trie_bytes, ConstraintSpec, SPECIAL_MARKER};
use smolt_tokenizer::TokenType;
use toktrie::TokenizerEnv;

#[test]
fn every_token_has_the_bytes_it_decodes_to() {
    let tok = common::tokenizer();
    let env = common::engine();
    let trie = env.tok_env().tok_trie();
    assert_eq!(trie.vocab_size(), tok.vocab_size());
    let (mut bytes, mut special, mut text) = (0, 0, 0);
    for id in 0..tok.vocab_size() as u32 {
        let b = trie.token(id);
        assert_eq!(b, trie_bytes(&tok, id).as_slice(), "token {id}");
        match tok.token_type(id).unwrap() {
            TokenType::Byte => {
                let piece = tok.token_piece(id);
                let v = u8::from_str_radix(&piece[3..5], 16).unwrap();
                assert_eq!(b, [v], "byte token {piece}");
                bytes += 1;
            }
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                assert_eq!(b[0], SPECIAL_MARKER, "token {id} {:?}", tok.token_piece(id));
                assert_eq!(&b[1..], tok.token_piece(id).as_bytes());
                assert!(trie.is_special_token(id));
                special += 1;
            }
            _ => {
                assert_eq!(b, tok.decode(&[id], false).as_bytes(), "token {id}");
                assert!(!b.is_empty() && b[0] != SPECIAL_MARKER, "token {id}");
                text += 1;
            }
        }
    }
    assert_eq!(bytes, 256);
    eprintln!("{bytes} byte tokens, {special} special, {text} text");
    assert!(special > 100 && text > 250_000);
}

#[test]
fn spot_checks() {
    let tok = common::tokenizer();
    let env = common::engine();
    let trie = env.tok_env().tok_trie();
    let id = |p: &str| tok.id_of(p).unwrap_or_else(|| panic!("no {p}"));
    assert_eq!(trie.token(id("<0x0A>")), b"\n");
    assert_eq!(trie.token(id("<0x41>")), b"A");
    assert_eq!(trie.token(id("<0xE2>")), [0xE2]);
    assert_eq!(trie.token(id("▁the")), b" the");
    assert_eq!(trie.token(id("▁")), b" ");
    assert_eq!(trie.token(id("{\"")), b"{\"");
    // Gemma's user-defined whitespace runs are stored raw in the GGUF.
    let ws: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&i| tok.token_type(i) == Some(TokenType::UserDefined))
        .filter(|&i| tok.token_bytes(i).iter().all(u8::is_ascii_whitespace))
        .collect();
    assert!(ws.len() > 50, "{} whitespace tokens", ws.len());
    for &i in &ws {
        assert_eq!(trie.token(i), tok.token_bytes(i).as_slice());
        assert!(!trie.is_special_token(i));
    }
    let two_spaces = tok.encode("  ", false, false);
    assert_eq!(two_spaces.len(), 1);
    assert_eq!(trie.token(two_spaces[0]), b"  ");
    // Control tokens are marked, and llguidance finds them by name.
    for name in [
        "<bos>",
        "<eos>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<pad>",
    ] {
        let i = id(name);
        let mut want = vec![SPECIAL_MARKER];
        want.extend_from_slice(name.as_bytes());
        assert_eq!(trie.token(i), want.as_slice(), "{name}");
        assert_eq!(trie.get_special_token(name), Some(i), "{name}");
    }
    assert_eq!(id("<end_of_turn>"), 106);
}

#[test]
fn eos_set_is_eos_and_end_of_turn() {
    let tok = common::tokenizer();
    let env = common::engine();
    let want = vec![tok.eos_id().unwrap(), tok.end_of_turn_id().unwrap()];
    assert_eq!(want, [1, 106]);
    assert_eq!(env.end_tokens(), want.as_slice());
    assert_eq!(env.tok_env().tok_trie().eos_tokens(), want.as_slice());
    assert_eq!(env.tok_env().eos_token(), 1);
}

#[test]
fn canonical_tokenization_agrees_with_the_tokenizer() {
    let tok = common::tokenizer();
    let env = common::engine();
    let tenv = env.tok_env();
    assert!(tenv.tokenize_is_canonical());
    let mut cases: Vec<String> = [
        "",
        " ",
        "   ",
        "\n",
        "\n\n\t  x",
        "{\"company\": \"ACME Sdn Bhd\", \"date\": \"2018-03-12\", \"total\": \"12.50\"}",
        "{\"items\": [{\"name\": \"Coffee\", \"qty\": 2, \"price\": 3.5}], \"paid\": true}",
        "\", \"",
        "\": ",
        "null",
        "-12.5e+3",
        "Ünïcödé ✓ 日本語 🎉 emoji",
        "<start_of_turn>user literal text, not a control token",
        "tabs\tand\r\nCRLF",
        "a\u{0}b",
        "    indented = 4",
        "JALAN PUTRA 1, 81100 JOHOR BAHRU",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Pseudo-random strings over a JSON-ish alphabet.
    let alphabet: Vec<char> = "abcXYZ019 \"{}[]:,.-_\n\t\\éü€日".chars().collect();
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for len in 1..200 {
        let mut s = String::new();
        for _ in 0..len % 40 + 1 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        cases.push(s);
    }
    for s in &cases {
        let ids = tenv.tokenize_bytes(s.as_bytes());
        assert_eq!(ids, tok.encode(s, false, false), "{s:?}");
        assert_eq!(tenv.tok_trie().decode(&ids), s.as_bytes(), "{s:?}");
    }
    // Bytes cut inside a UTF-8 character end in byte tokens.
    let s = "€".as_bytes();
    let ids = tenv.tokenize_bytes(&s[..2]);
    assert_eq!(tenv.tok_trie().decode(&ids), &s[..2]);
    let mut head = tok.encode("ab", false, false);
    head.push(tok.id_of("<0xE2>").unwrap());
    assert_eq!(tenv.tokenize_bytes(b"ab\xE2"), head);
}

#[test]
fn forced_text_becomes_canonical_tokens() {
    let tok = common::tokenizer();
    let c = common::engine()
        .compile(&ConstraintSpec::Regex(
            "The answer is (yes|no)\\.".to_string(),
        ))
        .unwrap();
    let mut st = c.start();
    let forced = st.forced_tokens();
    assert!(!forced.is_empty(), "a fixed prefix should force tokens");
    let text = tok.decode(&forced, false);
    assert!("The answer is ".starts_with(&text), "{text:?}");
    assert_eq!(forced, tok.encode(&text, false, false));
}
