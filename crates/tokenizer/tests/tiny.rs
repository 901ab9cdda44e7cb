//! Behaviour on hand-built vocabularies, where every expected id can be worked out by hand.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smolt_gguf::{Gguf, GgufWriter, Value, ValueType};
use smolt_tokenizer::{TokenType, Tokenizer, TokenizerError, VocabSpec};

const PAD: u32 = 0;
const EOS: u32 = 1;
const BOS: u32 = 2;
const UNK: u32 = 3;

/// `<pad> <eos> <bos> <unk>`, the 256 byte tokens (ids 4..260), then `extra`.
fn spec(extra: &[(&str, f32, TokenType)]) -> VocabSpec {
    let mut tokens = vec![
        "<pad>".to_string(),
        "<eos>".into(),
        "<bos>".into(),
        "<unk>".into(),
    ];
    let mut scores = vec![0.0; 4];
    let mut types = vec![
        TokenType::Control,
        TokenType::Control,
        TokenType::Control,
        TokenType::Unknown,
    ];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(TokenType::Byte);
    }
    for &(t, s, ty) in extra {
        tokens.push(t.to_string());
        scores.push(s);
        types.push(ty);
    }
    VocabSpec {
        bos_id: Some(BOS),
        eos_id: Some(EOS),
        unk_id: Some(UNK),
        pad_id: Some(PAD),
        add_bos: true,
        ..VocabSpec::new(tokens, scores, types)
    }
}

fn byte(b: u8) -> u32 {
    4 + b as u32
}

use TokenType::{Control, Normal, UserDefined};

fn tiny() -> Tokenizer {
    Tokenizer::new(spec(&[
        ("\u{2581}", -1.0, Normal),
        ("a", -2.0, Normal),
        ("b", -2.0, Normal),
        ("c", -2.0, Normal),
        ("ab", -1.5, Normal),
        ("bc", -1.0, Normal),
        ("\u{2581}a", -0.5, Normal),
        ("<tag>", 0.0, UserDefined),
        ("  ", 0.0, UserDefined),
        ("<start_of_turn>", 0.0, Control),
        ("<end_of_turn>", 0.0, Control),
    ]))
    .expect("tiny vocab")
}

fn id(t: &Tokenizer, piece: &str) -> u32 {
    t.id_of(piece)
        .unwrap_or_else(|| panic!("{piece:?} not in vocab"))
}

#[test]
fn merges_follow_scores() {
    let t = tiny();
    // "bc" (-1.0) outranks "ab" (-1.5), so "abc" becomes a + bc.
    assert_eq!(
        t.encode("abc", false, false),
        vec![id(&t, "a"), id(&t, "bc")]
    );
    // With "ab" better than "bc" the other split wins.
    let mut s = spec(&[
        ("a", -2.0, Normal),
        ("b", -2.0, Normal),
        ("c", -2.0, Normal),
        ("ab", -1.0, Normal),
        ("bc", -1.5, Normal),
    ]);
    s.add_bos = false;
    let t2 = Tokenizer::new(s).unwrap();
    assert_eq!(
        t2.encode("abc", false, false),
        vec![id(&t2, "ab"), id(&t2, "c")]
    );
    // Spaces become U+2581 and merge like any other character.
    assert_eq!(
        t.encode(" a b", false, false),
        vec![id(&t, "\u{2581}a"), id(&t, "\u{2581}"), id(&t, "b")]
    );
}

#[test]
fn equal_scores_merge_leftmost_first() {
    let t = Tokenizer::new(spec(&[("a", -2.0, Normal), ("aa", -1.0, Normal)])).unwrap();
    // "aaa": both pairs score the same; the left one merges, leaving a trailing "a".
    assert_eq!(
        t.encode("aaa", false, false),
        vec![id(&t, "aa"), id(&t, "a")]
    );
}

#[test]
fn merges_build_longer_pieces_through_intermediates() {
    let t = Tokenizer::new(spec(&[
        ("h", -5.0, Normal),
        ("e", -5.0, Normal),
        ("l", -5.0, Normal),
        ("o", -5.0, Normal),
        ("he", -3.0, Normal),
        ("ll", -2.0, Normal),
        ("llo", -2.5, Normal),
        ("hello", -1.0, Normal),
    ]))
    .unwrap();
    assert_eq!(t.encode("hello", false, false), vec![id(&t, "hello")]);
    assert_eq!(
        t.encode("helo", false, false),
        vec![id(&t, "he"), id(&t, "l"), id(&t, "o")]
    );
}

#[test]
fn unknown_characters_fall_back_to_bytes() {
    let t = tiny();
    assert_eq!(
        t.encode("a\u{2615}", false, false),
        vec![id(&t, "a"), byte(0xE2), byte(0x98), byte(0x95)]
    );
    assert_eq!(
        t.decode(&t.encode("a\u{2615}z", false, false), false),
        "a\u{2615}z"
    );
    // Without byte tokens, an unknown character becomes <unk>.
    let no_bytes = Tokenizer::new(VocabSpec {
        unk_id: Some(0),
        ..VocabSpec::new(
            vec!["<unk>".into(), "a".into()],
            vec![0.0, -1.0],
            vec![TokenType::Unknown, Normal],
        )
    })
    .unwrap();
    assert_eq!(no_bytes.encode("a\u{e9}", false, false), vec![1, 0, 0]);
}

#[test]
fn special_tokens_split_only_when_parsing_specials() {
    let t = tiny();
    let sot = id(&t, "<start_of_turn>");
    let eot = id(&t, "<end_of_turn>");
    assert_eq!(
        t.encode("<start_of_turn>ab<end_of_turn>", true, true),
        vec![BOS, sot, id(&t, "ab"), eot]
    );
    let off = t.encode("<start_of_turn>", false, false);
    assert!(!off.contains(&sot), "control text must stay text: {off:?}");
    assert_eq!(t.decode(&off, false), "<start_of_turn>");
    assert_eq!(t.encode("<bos><unk>", false, true), vec![BOS, UNK]);
}

#[test]
fn user_defined_tokens_split_even_without_special_parsing() {
    let t = tiny();
    let tag = id(&t, "<tag>");
    let two = id(&t, "\u{2581}\u{2581}");
    assert_eq!(
        t.encode("a<tag>b", false, false),
        vec![id(&t, "a"), tag, id(&t, "b")]
    );
    // Raw-space user tokens (Gemma stores its whitespace runs this way) win over merges.
    assert_eq!(
        t.encode("a  b", false, false),
        vec![id(&t, "a"), two, id(&t, "b")]
    );
    assert_eq!(
        t.encode("a   b", false, false),
        vec![id(&t, "a"), two, id(&t, "\u{2581}"), id(&t, "b")]
    );
    assert_eq!(t.token_piece(two), "\u{2581}\u{2581}");
    assert_eq!(t.token_bytes(two), b"  ");
}

#[test]
fn longer_special_tokens_claim_text_first() {
    // llama.cpp handles special tokens longest first, so "xyz" beats the earlier "wx" in "wxyz".
    let t = Tokenizer::new(spec(&[
        ("w", -1.0, Normal),
        ("z", -1.0, Normal),
        ("wx", 0.0, UserDefined),
        ("xyz", 0.0, UserDefined),
    ]))
    .unwrap();
    assert_eq!(
        t.encode("wxyz", false, false),
        vec![id(&t, "w"), id(&t, "xyz")]
    );
    assert_eq!(
        t.encode("wxwxyz", false, false),
        vec![id(&t, "wx"), id(&t, "w"), id(&t, "xyz")]
    );
}

#[test]
fn lstrip_and_rstrip_swallow_ascii_whitespace() {
    let mut s = spec(&[
        ("a", -1.0, Normal),
        ("b", -1.0, Normal),
        ("\u{2581}", -1.0, Normal),
        ("<mask>", 0.0, Control),
    ]);
    let mask = (s.tokens.len() - 1) as u32;
    s.lstrip = vec![mask];
    s.rstrip = vec![mask];
    let t = Tokenizer::new(s).unwrap();
    assert_eq!(
        t.encode("a \t<mask>\n b", false, true),
        vec![id(&t, "a"), mask, id(&t, "b")]
    );
    assert_eq!(t.encode(" <mask> ", false, true), vec![mask]);
}

#[test]
fn space_prefix_when_the_vocab_asks_for_it() {
    let mut s = spec(&[
        ("\u{2581}a", -0.5, Normal),
        ("a", -1.0, Normal),
        ("<start_of_turn>", 0.0, Control),
    ]);
    s.add_space_prefix = true;
    let t = Tokenizer::new(s).unwrap();
    let sot = id(&t, "<start_of_turn>");
    assert_eq!(t.encode("a", false, false), vec![id(&t, "\u{2581}a")]);
    assert_eq!(
        t.encode("a<start_of_turn>a", true, true),
        vec![BOS, id(&t, "\u{2581}a"), sot, id(&t, "\u{2581}a")]
    );
}

#[test]
fn bos_only_when_asked() {
    let t = tiny();
    assert_eq!(t.encode("", false, true), Vec::<u32>::new());
    assert_eq!(t.encode("", true, true), vec![BOS]);
    assert_eq!(t.encode("a", true, true), vec![BOS, id(&t, "a")]);
}

#[test]
fn decode_follows_hf_byte_fallback() {
    let t = tiny();
    // A valid run of byte tokens becomes its character, even across a skipped special token.
    assert_eq!(
        t.decode(&[byte(0xE2), BOS, byte(0x98), byte(0x95)], true),
        "\u{2615}"
    );
    assert_eq!(
        t.decode(&[byte(0xE2), BOS, byte(0x98), byte(0x95)], false),
        "\u{FFFD}<bos>\u{FFFD}\u{FFFD}"
    );
    // An invalid run gives one replacement character per byte token, as HF does.
    assert_eq!(
        t.decode(&[byte(0xE2), byte(0x98), id(&t, "a")], false),
        "\u{FFFD}\u{FFFD}a"
    );
    assert_eq!(
        t.decode(&[id(&t, "\u{2581}a"), UNK, 999_999], false),
        " a<unk>"
    );
    assert_eq!(t.decode(&[id(&t, "\u{2581}a"), UNK, 999_999], true), " a");
    assert_eq!(t.token_bytes(byte(0xFF)), vec![0xFF]);
    assert_eq!(t.token_bytes(999_999), Vec::<u8>::new());
    assert_eq!(t.token_piece(999_999), "");
}

/// llama.cpp's `tokenizer_st_partition`, ported literally (one pass per special token, longest
/// first), as an oracle for the single-pass version.
fn reference_partition(
    specials: &[(&str, bool, bool, u32)],
    text: &str,
) -> Vec<Result<u32, String>> {
    #[derive(Clone)]
    enum Frag {
        Raw(usize, usize),
        Tok(u32),
    }
    let mut order: Vec<_> = specials.to_vec();
    order.sort_by_key(|s| (std::cmp::Reverse(s.0.len()), s.3));
    let mut buf = if text.is_empty() {
        vec![]
    } else {
        vec![Frag::Raw(0, text.len())]
    };
    let bytes = text.as_bytes();
    let sp = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    for (st, lstrip, rstrip, tid) in order {
        let mut next = Vec::new();
        for f in buf {
            let Frag::Raw(mut off, mut len) = f else {
                next.push(f);
                continue;
            };
            loop {
                let Some(m) = text[off..off + len].find(st).map(|m| m + off) else {
                    next.push(Frag::Raw(off, len));
                    break;
                };
                if m > off {
                    let mut l = m - off;
                    if lstrip {
                        while l > 0 && sp(bytes[off + l - 1]) {
                            l -= 1;
                        }
                    }
                    if l > 0 {
                        next.push(Frag::Raw(off, l));
                    }
                }
                next.push(Frag::Tok(tid));
                let end = off + len;
                let mut r = m + st.len();
                if r >= end {
                    break;
                }
                if rstrip {
                    while r < end && sp(bytes[r]) {
                        r += 1;
                    }
                }
                off = r;
                len = end - r;
                if len == 0 {
                    break;
                }
            }
        }
        buf = next;
    }
    buf.into_iter()
        .map(|f| match f {
            Frag::Raw(o, l) => Err(text[o..o + l].to_string()),
            Frag::Tok(t) => Ok(t),
        })
        .collect()
}

#[test]
fn partition_matches_llama_cpp_reference_on_random_text() {
    // Overlapping specials over a 4-letter alphabet plus whitespace stress the priority rules.
    let defs: &[(&str, bool, bool)] = &[
        ("ab", false, false),
        ("ba", false, false),
        ("abc", true, false),
        ("bca", false, true),
        ("c c", true, true),
        ("aaaa", false, false),
        ("d", false, false),
    ];
    let mut extra: Vec<(&str, f32, TokenType)> = vec![
        ("a", -1.0, Normal),
        ("b", -1.0, Normal),
        ("c", -1.0, Normal),
        ("\u{2581}", -1.0, Normal),
    ];
    extra.extend(defs.iter().map(|d| (d.0, 0.0, UserDefined)));
    let mut s = spec(&extra);
    let first = (s.tokens.len() - defs.len()) as u32;
    let specials: Vec<(&str, bool, bool, u32)> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.0, d.1, d.2, first + i as u32))
        .collect();
    s.lstrip = specials.iter().filter(|d| d.1).map(|d| d.3).collect();
    s.rstrip = specials.iter().filter(|d| d.2).map(|d| d.3).collect();
    let t = Tokenizer::new(s).unwrap();
    let alphabet = ['a', 'b', 'c', 'd', ' ', '\n'];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..3000 {
        let len = rng.gen_range(0..24);
        let text: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let mut want = Vec::new();
        for frag in reference_partition(&specials, &text) {
            match frag {
                Ok(tid) => want.push(tid),
                Err(raw) => want.extend(t.encode(&raw, false, false)),
            }
        }
        assert_eq!(t.encode(&text, false, true), want, "text {text:?}");
    }
}

#[test]
fn decode_inverts_encode_on_random_unicode() {
    let t = tiny();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let pools: [&[char]; 3] = [
        &['a', 'b', 'c', ' ', '\n', '<', '>', 't', 'g'],
        &[
            '\u{e9}',
            '\u{2615}',
            '\u{1F600}',
            '\u{65e5}',
            '\u{0}',
            '\u{FFFD}',
            '\u{200d}',
        ],
        &[],
    ];
    for _ in 0..2000 {
        let len = rng.gen_range(0..40);
        let s: String = (0..len)
            .map(|_| match rng.gen_range(0..3) {
                0 => pools[0][rng.gen_range(0..pools[0].len())],
                1 => pools[1][rng.gen_range(0..pools[1].len())],
                _ => loop {
                    // Any scalar value except U+2581, which SentencePiece cannot tell from a space.
                    if let Some(c) = char::from_u32(rng.gen_range(0..0x11_0000)) {
                        if c != '\u{2581}' {
                            break c;
                        }
                    }
                },
            })
            .collect();
        let ids = t.encode(&s, false, false);
        assert_eq!(t.decode(&ids, false), s, "ids {ids:?}");
        assert_eq!(t.decode(&ids, true), s);
    }
}

#[test]
fn vector_constructor_rejects_inconsistent_input() {
    let bad = |s: VocabSpec| Tokenizer::new(s).unwrap_err().to_string();
    let ok = || {
        VocabSpec::new(
            vec!["a".into(), "b".into()],
            vec![0.0, 0.0],
            vec![Normal, Normal],
        )
    };
    assert!(bad(VocabSpec::new(vec![], vec![], vec![])).contains("no tokens"));
    let e = bad(VocabSpec {
        scores: vec![0.0],
        ..ok()
    });
    assert!(
        e.contains("tokenizer.ggml.scores has 1 entries") && e.contains("2 tokens"),
        "{e}"
    );
    let e = bad(VocabSpec {
        types: vec![Normal; 3],
        ..ok()
    });
    assert!(e.contains("token_type has 3"), "{e}");
    let e = bad(VocabSpec {
        bos_id: Some(2),
        ..ok()
    });
    assert!(e.contains("BOS token id is 2"), "{e}");
    let e = bad(VocabSpec {
        lstrip: vec![7],
        ..ok()
    });
    assert!(e.contains("token id 7"), "{e}");
}

fn gguf_with(edit: impl FnOnce(&mut GgufWriter)) -> Gguf {
    let strs = |v: &[&str]| {
        Value::Array(
            ValueType::String,
            v.iter().map(|s| Value::String(s.to_string())).collect(),
        )
    };
    let mut w = GgufWriter::new();
    w.set("tokenizer.ggml.model", Value::String("llama".into()));
    w.set(
        "tokenizer.ggml.tokens",
        strs(&["<unk>", "<s>", "</s>", "a", "\u{2581}a"]),
    );
    w.set(
        "tokenizer.ggml.scores",
        Value::Array(
            ValueType::F32,
            [0.0f32, 0.0, 0.0, -1.0, -0.5]
                .iter()
                .map(|&x| Value::F32(x))
                .collect(),
        ),
    );
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(
            ValueType::I32,
            [2, 3, 3, 1, 1].iter().map(|&x| Value::I32(x)).collect(),
        ),
    );
    edit(&mut w);
    Gguf::from_bytes(w.to_bytes()).expect("valid GGUF")
}

#[test]
fn from_gguf_applies_llama_cpp_defaults() {
    let t = Tokenizer::from_gguf(&gguf_with(|_| {})).unwrap();
    // Missing keys: BOS 1, EOS 2, UNK 0, add BOS, add a space prefix (Llama 2 behaviour).
    assert_eq!(
        (t.bos_id(), t.eos_id(), t.unk_id(), t.pad_id()),
        (Some(1), Some(2), Some(0), None)
    );
    assert!(t.add_bos_token() && !t.add_eos_token());
    assert_eq!(t.encode("a", true, true), vec![1, 4]);
    let t = Tokenizer::from_gguf(&gguf_with(|w| {
        w.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    }))
    .unwrap();
    assert_eq!(t.encode("a", false, true), vec![3]);
}

#[test]
fn from_gguf_errors_name_the_problem() {
    let err = |edit: fn(&mut GgufWriter)| -> String {
        match Tokenizer::from_gguf(&gguf_with(edit)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        }
    };
    let e = err(|w| {
        w.set("tokenizer.ggml.model", Value::String("bert".into()));
    });
    assert!(e.contains("`bert`") && e.contains("`gpt2`"), "{e}");
    // A byte-level BPE vocabulary needs its merges.
    let e = err(|w| {
        w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    });
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");
    let e = err(|w| {
        w.set("tokenizer.ggml.scores", Value::String("x".into()));
    });
    assert!(e.contains("tokenizer.ggml.scores"), "{e}");
    let e = err(|w| {
        w.set(
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, vec![Value::F32(0.0)]),
        );
    });
    assert!(e.contains("scores has 1 entries"), "{e}");
    let e = err(|w| {
        w.set("tokenizer.ggml.bos_token_id", Value::U32(99));
    });
    assert!(e.contains("BOS") && e.contains("99"), "{e}");
    let e = err(|w| {
        w.set("tokenizer.ggml.eos_token_id", Value::String("2".into()));
    });
    assert!(e.contains("tokenizer.ggml.eos_token_id"), "{e}");
    let e = err(|w| {
        w.set("tokenizer.ggml.add_bos_token", Value::U8(1));
    });
    assert!(
        e.contains("tokenizer.ggml.add_bos_token") && e.contains("boolean"),
        "{e}"
    );
    let no_tokens = GgufWriter::new().to_bytes();
    let e = Tokenizer::from_gguf(&Gguf::from_bytes(no_tokens).unwrap()).unwrap_err();
    assert!(
        matches!(e, TokenizerError::Gguf(_)) && e.to_string().contains("tokenizer.ggml.model"),
        "{e}"
    );
}

#[test]
fn tokenizer_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
}
