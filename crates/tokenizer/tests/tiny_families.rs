//! The vocabularies of the tiny `llama`, `qwen3` and SmolLM2 reference models (smolt-model's
//! fixtures/tiny_*.gguf): `gpt2` with 256 byte tokens (id = byte value) and an EMPTY merges
//! array, pre-tokenizers `llama-bpe`, `qwen2` and `smollm`, `add_bos_token = false`. Without
//! merges every text is its UTF-8 bytes; llama.cpp gives [82, 101, 99, 101, 105, 112, 116, 58,
//! 32, 104, 101, 108, 108, 111] for "Receipt: hello" on each (the fixtures' `llama_cpp_check`).

use smolt_gguf::Gguf;
use smolt_tokenizer::Tokenizer;

fn tokenizer(family: &str) -> Tokenizer {
    let path = format!(
        "{}/../model/tests/fixtures/tiny_{family}.gguf",
        env!("CARGO_MANIFEST_DIR")
    );
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        g.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        0,
        "the fixture's merges are empty"
    );
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{family}: {e}"))
}

#[test]
fn byte_vocabularies_with_empty_merges_load_and_encode_bytes() {
    let texts = [
        "Receipt: hello",
        "",
        "Total: RM 23.40\nDate: 05/03/2024 10:15\n",
        "  two  spaces\t\ttabs\r\n",
        "12345678901234567890",
        "naïve café — 日本語 😀 عربى",
        "fn main() { println!(\"{}\", x[0] + 1); }",
        "<|im_end|> <s> </s>",
    ];
    for family in ["llama", "qwen3", "smollm2"] {
        let t = tokenizer(family);
        assert!(t.is_byte_level(), "{family}");
        assert_eq!(t.vocab_size(), 256, "{family}");
        assert!(!t.add_bos_token(), "{family}");
        assert_eq!((t.bos_id(), t.eos_id()), (Some(0), Some(0)), "{family}");
        assert_eq!(
            t.encode("Receipt: hello", false, false),
            [82, 101, 99, 101, 105, 112, 116, 58, 32, 104, 101, 108, 108, 111],
            "{family}: llama.cpp's ids"
        );
        for text in texts {
            for parse_special in [false, true] {
                let ids = t.encode(text, false, parse_special);
                let want: Vec<u32> = text.bytes().map(u32::from).collect();
                assert_eq!(ids, want, "{family}: {text:?}");
                assert_eq!(t.decode(&ids, false), text, "{family}: {text:?}");
            }
        }
        assert_eq!(t.encode("ab", true, false), [0, 97, 98], "{family}");
    }
}
