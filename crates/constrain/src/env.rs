//! llguidance's view of smolt's tokenizer: a byte trie of the vocabulary plus a canonical
//! re-tokenizer.

use std::sync::Arc;

use smolt_tokenizer::{TokenType, Tokenizer};
use toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::error::ConstrainError;

/// The byte llguidance reserves to mark special tokens in the trie: it never occurs in UTF-8,
/// so no grammar over text can ever match a token that starts with it.
pub const SPECIAL_MARKER: u8 = TokTrie::SPECIAL_TOKEN_MARKER;

/// The bytes a token stands for in the trie llguidance walks.
///
/// Byte tokens `<0xXX>` are that byte and ordinary pieces their text with `▁` as a space (so
/// grammars see exactly what detokenization produces). Control, unknown and unused tokens
/// (`<eos>`, `<start_of_turn>`, `<unused12>`, …) print as their literal name, but they are not
/// text: the model would read `<eos>` spelled out inside a JSON string as a real end of
/// sequence. Prefixing them with [`SPECIAL_MARKER`] keeps every grammar from matching them
/// while still letting llguidance name them (`<[106]>`, `<end_of_turn>` in Lark).
pub fn trie_bytes(tok: &Tokenizer, id: u32) -> Vec<u8> {
    match tok.token_type(id) {
        Some(TokenType::Control | TokenType::Unknown | TokenType::Unused) => {
            let piece = tok.token_piece(id).as_bytes();
            let mut v = Vec::with_capacity(piece.len() + 1);
            v.push(SPECIAL_MARKER);
            v.extend_from_slice(piece);
            v
        }
        _ => tok.token_bytes(id),
    }
}

/// The tokens that end generation and that a grammar may allow only where it is complete:
/// `<eos>` and, for chat models, `<end_of_turn>` (a fine-tuned Gemma ends its answer with it).
pub fn end_tokens(tok: &Tokenizer) -> Vec<u32> {
    let mut v: Vec<u32> = tok.eos_id().into_iter().collect();
    if let Some(eot) = tok.end_of_turn_id() {
        if !v.contains(&eot) {
            v.push(eot);
        }
    }
    v
}

/// [`TokenizerEnv`] over smolt's own SentencePiece tokenizer.
///
/// llguidance only fast-forwards *tokens* (feeding grammar-forced text without sampling) when
/// the environment says its tokenization is canonical, i.e. the ids are exactly what the model
/// saw in training; a greedy trie tokenization would be legal but out of distribution. Our
/// tokenizer is pinned to llama.cpp's ids, so we can say so.
pub struct SmoltTokEnv {
    tok: Arc<Tokenizer>,
    trie: TokTrie,
}

impl SmoltTokEnv {
    /// Builds the trie of the whole vocabulary (≈0.2 s for Gemma's 262k tokens): do it once
    /// per process and share the result.
    pub fn new(tok: Arc<Tokenizer>) -> Result<SmoltTokEnv, ConstrainError> {
        let eos = end_tokens(&tok);
        let Some(&first_eos) = eos.first() else {
            return Err(ConstrainError::Tokenizer(
                "the vocabulary has no end-of-sequence token, so a constraint could never \
                 end generation"
                    .into(),
            ));
        };
        let n = tok.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32).map(|id| trie_bytes(&tok, id)).collect();
        let info = TokRxInfo {
            vocab_size: n as u32,
            tok_eos: first_eos,
            tok_bos: tok.bos_id(),
            tok_pad: tok.pad_id(),
            tok_unk: tok.unk_id(),
            tok_end_of_turn: tok.end_of_turn_id(),
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        Ok(SmoltTokEnv { tok, trie })
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tok
    }
}

impl TokenizerEnv for SmoltTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Canonical ids for `s`: our SentencePiece encode, no BOS, control-token text left as
    /// text. llguidance hands us grammar-forced bytes, which may stop inside a UTF-8
    /// character; such bytes can only be byte tokens, so they become exactly those.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(s.len() / 2 + 1);
        for chunk in s.utf8_chunks() {
            if !chunk.valid().is_empty() {
                self.tok.encode_into(chunk.valid(), false, false, &mut out);
            }
            for &b in chunk.invalid() {
                if let Some(id) = self.trie.token_id(&[b]) {
                    out.push(id);
                }
            }
        }
        out
    }

    fn tokenize_is_canonical(&self) -> bool {
        true
    }
}
