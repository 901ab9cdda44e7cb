//! The vocabulary, its special ids and flags, and the encode/decode entry points.
//!
//! Two vocabulary kinds share everything but the merge step: SentencePiece-style (`llama`,
//! Gemma; [`crate::spm`]) and byte-level BPE (`gpt2`, Qwen2 and Llama 3; [`crate::bpe`]).
//! Special-token splitting, ids, flags and the public API are common, so callers need not know
//! which kind a model has.

use smolt_gguf::{Gguf, Value};

use crate::bpe::{Bpe, Work};
use crate::error::TokenizerError;
use crate::fxhash::FxHashMap;
use crate::pretokenize::PreConfig;
use crate::special::{Piece, SpecialMatcher};
use crate::unicode::char_to_byte;

/// SentencePiece token kinds as stored in `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// Any value outside 1..=6 (llama.cpp's "undefined"); treated like a normal piece.
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// Maps the GGUF integer code; unknown codes become `Undefined` rather than an error
    /// because llama.cpp accepts them too.
    pub fn from_code(code: i64) -> TokenType {
        match code {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Everything needed to build a [`Tokenizer`] without a GGUF file (tests, other formats).
#[derive(Clone, Debug, Default)]
pub struct VocabSpec {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<TokenType>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// End of a chat turn (`<end_of_turn>` for Gemma).
    pub eot_id: Option<u32>,
    /// Whether the model expects BOS; [`Tokenizer::encode`] still takes an explicit flag.
    pub add_bos: bool,
    pub add_eos: bool,
    /// SentencePiece's "dummy prefix": a space before text that starts the input or follows
    /// a special token. Llama 2 wants it, Gemma does not.
    pub add_space_prefix: bool,
    /// Special tokens that swallow ASCII whitespace to their left when split out of text.
    pub lstrip: Vec<u32>,
    /// Special tokens that swallow ASCII whitespace to their right.
    pub rstrip: Vec<u32>,
    /// The model's chat template (Jinja source), if it ships one.
    pub chat_template: Option<String>,
    /// Ends of generation besides EOS and end-of-turn (llama.cpp's EOG set: `<|endoftext|>`
    /// and the FIM padding/separator tokens for Qwen).
    pub eog_ids: Vec<u32>,
    /// `Some` for a byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`); `scores`
    /// are then unused.
    pub bpe: Option<BpeSpec>,
}

/// What a byte-level BPE vocabulary adds to [`VocabSpec`].
#[derive(Clone, Debug, Default)]
pub struct BpeSpec {
    /// `tokenizer.ggml.merges`: "left right" in rank order, spelled in GPT-2's byte characters.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre`: the pre-tokenizer name (`qwen2`, `llama-bpe`, `smollm`, `gpt-2`,
    /// ...); `None` means llama.cpp's `default`.
    pub pre: Option<String>,
}

impl VocabSpec {
    /// A spec with no special ids and every flag off, to be filled in field by field.
    pub fn new(tokens: Vec<String>, scores: Vec<f32>, types: Vec<TokenType>) -> VocabSpec {
        VocabSpec {
            tokens,
            scores,
            types,
            ..VocabSpec::default()
        }
    }
}

/// A tokenizer whose ids match llama.cpp's and whose decoding matches Hugging Face's, for
/// SentencePiece-style and byte-level BPE vocabularies alike. Immutable after construction, so
/// one instance can be shared across threads.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    /// The byte-level BPE model; `None` for a SentencePiece-style vocabulary.
    bpe: Option<Box<Bpe>>,
    pieces: Vec<String>,
    /// SentencePiece spelling (U+2581 for a space) of the few pieces the GGUF stores with raw
    /// spaces (Gemma's user-defined whitespace runs), so `token_piece` agrees with HF's vocab.
    sp_spelling: FxHashMap<u32, String>,
    pub(crate) scores: Vec<f32>,
    types: Vec<TokenType>,
    piece_to_id: FxHashMap<Box<str>, u32>,
    byte_to_id: [Option<u32>; 256],
    specials: SpecialMatcher,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    eot: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    chat_template: Option<String>,
    /// User-defined tokens the model's weights never learned, retyped [`TokenType::Unused`]:
    /// see [`Tokenizer::untrained_tokens`].
    untrained: Vec<u32>,
}

const SPACE_ESCAPE: &str = "\u{2581}";

/// Chat-turn terminators llama.cpp recognises by text when no explicit id is given.
const EOT_TEXTS: &[&str] = &[
    "<end_of_turn>",
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
];

/// Token texts llama.cpp treats as ends of generation (llama-vocab.cpp, `special_eog_ids`), and
/// forces to control type so that they parse as special.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
    // Fill-in-the-middle padding, repository and file separators also end generation.
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Further texts llama.cpp forces to control type without ending generation: the other
/// fill-in-the-middle markers.
const FORCED_CONTROL_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\u{ff5c}fim\u{2581}begin\u{ff5c}>",
    "<PRE>",
    "\u{2581}<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<\u{ff5c}fim\u{2581}hole\u{ff5c}>",
    "<SUF>",
    "\u{2581}<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<\u{ff5c}fim\u{2581}end\u{ff5c}>",
    "<MID>",
    "\u{2581}<MID>",
    "<|code_middle|>",
    "<|middle|>",
];

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata, applying llama.cpp's defaults for
    /// absent optional keys so that the same file tokenizes the same way in both programs. The
    /// chat template (`tokenizer.chat_template`) is kept as it is, see [`Tokenizer::chat_template`].
    ///
    /// Added tokens the model never learned ([`Tokenizer::untrained_tokens`]) are treated as
    /// unused; [`Tokenizer::from_gguf_vocab`] keeps them, exactly as llama.cpp does.
    pub fn from_gguf(gguf: &Gguf) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::build(gguf, true)
    }

    /// The tokenizer exactly as the metadata declares it, as llama.cpp builds it: every added
    /// token matched, whether or not the weights learned it (the llama.cpp parity tests).
    pub fn from_gguf_vocab(gguf: &Gguf) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::build(gguf, false)
    }

    fn build(gguf: &Gguf, retire_untrained: bool) -> Result<Tokenizer, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        let is_bpe = match model {
            "llama" => false,
            "gpt2" => true,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let tokens: Vec<String> = gguf
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        // BPE vocabularies usually carry no scores; llama.cpp reads them as zeros.
        let scores = if is_bpe && gguf.get("tokenizer.ggml.scores").is_none() {
            vec![0.0; tokens.len()]
        } else {
            gguf.get_f32_array("tokenizer.ggml.scores")?
        };
        let types = match gguf.get("tokenizer.ggml.token_type") {
            Some(_) => gguf
                .get_i64_array("tokenizer.ggml.token_type")?
                .into_iter()
                .map(TokenType::from_code)
                .collect(),
            None => vec![TokenType::Normal; tokens.len()],
        };
        let bpe = if is_bpe {
            let pre = match gguf.get("tokenizer.ggml.pre") {
                None => None,
                Some(_) => Some(gguf.get_str("tokenizer.ggml.pre")?.to_string()),
            };
            let merges = gguf
                .get_str_array("tokenizer.ggml.merges")?
                .into_iter()
                .map(str::to_string)
                .collect();
            Some(BpeSpec { merges, pre })
        } else {
            None
        };
        let pre_config = match &bpe {
            Some(b) => Some(pre_config(b.pre.as_deref())?),
            None => None,
        };

        // llama.cpp's defaults for absent keys differ by vocabulary kind; for BPE a default that
        // falls outside the vocabulary is dropped (llama.cpp warns and disables it).
        let n_tokens = tokens.len();
        let default = |spm: Option<u32>, bpe: Option<u32>| -> Option<u32> {
            if is_bpe {
                bpe.filter(|&i| (i as usize) < n_tokens)
            } else {
                spm
            }
        };
        let id = |key: &'static str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            match gguf.get(key) {
                None => Ok(default),
                Some(_) => {
                    let v = gguf.get_u64(key)?;
                    u32::try_from(v)
                        .map(Some)
                        .map_err(|_| TokenizerError::BadSpecialId {
                            what: key,
                            id: v,
                            n_tokens: tokens.len(),
                        })
                }
            }
        };
        let flag = |key: &'static str, default: bool| -> Result<bool, TokenizerError> {
            match gguf.get(key) {
                None => Ok(default),
                Some(v) => v.as_bool().ok_or_else(|| TokenizerError::NotABool {
                    key,
                    found: describe(v),
                }),
            }
        };

        let mut spec = VocabSpec {
            bos_id: id("tokenizer.ggml.bos_token_id", default(Some(1), Some(11)))?,
            eos_id: id("tokenizer.ggml.eos_token_id", default(Some(2), Some(11)))?,
            unk_id: id("tokenizer.ggml.unknown_token_id", default(Some(0), None))?,
            pad_id: id("tokenizer.ggml.padding_token_id", None)?,
            eot_id: id("tokenizer.ggml.eot_token_id", None)?,
            add_bos: flag(
                "tokenizer.ggml.add_bos_token",
                pre_config.is_none_or(|c| c.add_bos),
            )?,
            add_eos: flag("tokenizer.ggml.add_eos_token", false)?,
            // The BPE path never adds a space prefix, whatever the file says.
            add_space_prefix: !is_bpe && flag("tokenizer.ggml.add_space_prefix", true)?,
            chat_template: gguf.chat_template()?.map(str::to_string),
            bpe,
            ..VocabSpec::new(tokens, scores, types)
        };
        if spec.eot_id.is_none() {
            spec.eot_id = EOT_TEXTS
                .iter()
                .find_map(|t| spec.tokens.iter().rposition(|p| p == t).map(|i| i as u32));
        }
        // llama.cpp forces the turn terminator to control type so it is parsed as special.
        if let Some(eot) = spec.eot_id {
            if let Some(t) = spec.types.get_mut(eot as usize) {
                *t = TokenType::Control;
            }
        }
        if is_bpe {
            // llama.cpp also recognises ends of generation and fill-in-the-middle markers by
            // their text and makes them control tokens. The SentencePiece path keeps its
            // narrower rule, which the Gemma fixture pins.
            for (i, p) in spec.tokens.iter().enumerate() {
                let eog = EOG_TEXTS.contains(&p.as_str());
                if eog || FORCED_CONTROL_TEXTS.contains(&p.as_str()) {
                    // A short type list is reported by `Tokenizer::new`, not here.
                    if let Some(t) = spec.types.get_mut(i) {
                        *t = TokenType::Control;
                    }
                }
                if eog {
                    spec.eog_ids.push(i as u32);
                }
            }
        }
        // Tokens whose rows nobody trained are not tokens to this model: their text is encoded
        // with ordinary pieces, and constrained decoding never offers them.
        let untrained = if retire_untrained {
            crate::untrained::untrained_added_tokens(gguf, &spec.types)
        } else {
            Vec::new()
        };
        for &id in &untrained {
            spec.types[id as usize] = TokenType::Unused;
        }
        let mut tok = Tokenizer::new(spec)?;
        tok.untrained = untrained;
        Ok(tok)
    }

    /// The user-defined tokens of the vocabulary whose output-head row is byte-identical to a
    /// filler token's, i.e. that the model was never trained on (Qwen2.5-Coder-0.5B's
    /// `<tool_call>` and `</tool_call>`). smolt treats them as unused: their text is encoded
    /// with ordinary pieces — the spelling the model knows — so it differs from llama.cpp's
    /// tokenization exactly there, and they are never generated under a constraint.
    pub fn untrained_tokens(&self) -> &[u32] {
        &self.untrained
    }

    /// Why [`Tokenizer::untrained_tokens`] are written with pieces: the one wording of the
    /// commands that name them (`smolt inspect`, `smolt tokenize`).
    pub const UNTRAINED_WHY: &'static str = "the model never learned it (its output row is a \
        filler's), so smolt spells its text with ordinary pieces where llama.cpp uses its id";

    /// Builds the tokenizer from plain vectors, checking them as carefully as a GGUF.
    pub fn new(spec: VocabSpec) -> Result<Tokenizer, TokenizerError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::TooManyTokens(n));
        }
        for (what, got) in [
            ("tokenizer.ggml.scores", spec.scores.len()),
            ("tokenizer.ggml.token_type", spec.types.len()),
        ] {
            if got != n {
                return Err(TokenizerError::LengthMismatch {
                    what,
                    got,
                    expected: n,
                });
            }
        }
        let check = |what: &'static str, id: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            match id {
                Some(i) if i as usize >= n => Err(TokenizerError::BadSpecialId {
                    what,
                    id: i as u64,
                    n_tokens: n,
                }),
                other => Ok(other),
            }
        };
        let bos = check("the BOS token id", spec.bos_id)?;
        let eos = check("the EOS token id", spec.eos_id)?;
        let unk = check("the unknown token id", spec.unk_id)?;
        let pad = check("the padding token id", spec.pad_id)?;
        let eot = check("the end-of-turn token id", spec.eot_id)?;
        let mut eog = Vec::with_capacity(spec.eog_ids.len());
        for &id in &spec.eog_ids {
            eog.extend(check("an end-of-generation token id", Some(id))?);
        }
        let pre = match &spec.bpe {
            Some(b) => Some(pre_config(b.pre.as_deref())?),
            None => None,
        };

        let mut lstrip = vec![false; n];
        let mut rstrip = vec![false; n];
        for (ids, flags) in [(&spec.lstrip, &mut lstrip), (&spec.rstrip, &mut rstrip)] {
            for &id in ids {
                *flags
                    .get_mut(id as usize)
                    .ok_or(TokenizerError::BadTokenId { id, n_tokens: n })? = true;
            }
        }

        // llama.cpp renames empty pieces so they can never match (and never vanish from the map).
        let pieces: Vec<String> = spec
            .tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t
                }
            })
            .collect();
        // A NaN score would make the merge order undefined; treat it as "never preferred".
        let scores: Vec<f32> = spec
            .scores
            .into_iter()
            .map(|s| if s.is_nan() { f32::NEG_INFINITY } else { s })
            .collect();

        let mut piece_to_id: FxHashMap<Box<str>, u32> =
            FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (i, p) in pieces.iter().enumerate() {
            // Later duplicates win, as in llama.cpp's `token_to_id[word] = i`.
            piece_to_id.insert(p.as_str().into(), i as u32);
        }

        let mut byte_to_id = [None; 256];
        for (b, slot) in byte_to_id.iter_mut().enumerate() {
            *slot = piece_to_id
                .get(format!("<0x{b:02X}>").as_str())
                .copied()
                .or_else(|| {
                    // llama.cpp falls back to the byte itself as a one-character piece.
                    let s = [b as u8];
                    std::str::from_utf8(&s)
                        .ok()
                        .and_then(|s| piece_to_id.get(s).copied())
                })
                .or(unk);
        }

        // Byte-level vocabularies spell a space as `Ġ`; a raw space in one of their tokens is
        // just a character.
        let sp_spelling = if spec.bpe.is_some() {
            FxHashMap::default()
        } else {
            pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| p.contains(' '))
                .map(|(i, p)| (i as u32, p.replace(' ', SPACE_ESCAPE)))
                .collect()
        };
        let specials = SpecialMatcher::new(&pieces, &spec.types, &lstrip, &rstrip);
        let bpe = match (spec.bpe, pre) {
            (Some(b), Some(config)) => {
                Some(Box::new(Bpe::new(&pieces, &piece_to_id, &b.merges, config)))
            }
            _ => None,
        };
        Ok(Tokenizer {
            bpe,
            pieces,
            sp_spelling,
            scores,
            types: spec.types,
            piece_to_id,
            byte_to_id,
            specials,
            bos,
            eos,
            unk,
            pad,
            eot,
            eog,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            add_space_prefix: spec.add_space_prefix,
            chat_template: spec.chat_template,
            untrained: Vec::new(),
        })
    }

    #[inline]
    pub(crate) fn lookup(&self, piece: &str) -> Option<u32> {
        self.piece_to_id.get(piece).copied()
    }

    #[inline]
    pub(crate) fn byte_fallback(&self, b: u8) -> Option<u32> {
        self.byte_to_id[b as usize]
    }

    /// Token ids for `text`, as llama.cpp's `llama_tokenize` gives them.
    ///
    /// `add_bos` prepends the BOS id (when the vocabulary has one) regardless of the GGUF's
    /// `add_bos_token` flag, so callers decide; see [`Tokenizer::add_bos_token`]. With
    /// `parse_special`, the text of control tokens such as `<start_of_turn>` becomes that token;
    /// user-defined tokens are split out either way, as llama.cpp does.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_into(text, add_bos, parse_special, &mut out);
        out
    }

    /// [`Tokenizer::encode`] appending to an existing buffer, for building packed sequences
    /// without a copy.
    pub fn encode_into(&self, text: &str, add_bos: bool, parse_special: bool, out: &mut Vec<u32>) {
        if add_bos {
            out.extend(self.bos);
        }
        let mut parts = Vec::new();
        self.specials.partition(text, parse_special, &mut parts);
        if let Some(bpe) = &self.bpe {
            let mut work = Work::default();
            for part in parts {
                match part {
                    Piece::Token(id) => out.push(id),
                    Piece::Text(s, e) => bpe.encode(&text[s..e], &mut work, out),
                }
            }
            return;
        }
        let mut escaped = String::new();
        let mut prev_special = true;
        for part in parts {
            match part {
                Piece::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Piece::Text(s, e) => {
                    escaped.clear();
                    if self.add_space_prefix && prev_special {
                        escaped.push_str(SPACE_ESCAPE);
                    }
                    for ch in text[s..e].chars() {
                        if ch == ' ' {
                            escaped.push_str(SPACE_ESCAPE);
                        } else {
                            escaped.push(ch);
                        }
                    }
                    crate::spm::encode(self, &escaped, out);
                    prev_special = false;
                }
            }
        }
    }

    /// Text for `ids` exactly as Hugging Face's `decode(..., clean_up_tokenization_spaces=False)`
    /// gives it: U+2581 becomes a space, runs of byte tokens are joined and read as UTF-8 (a run
    /// that is not valid UTF-8 gives one U+FFFD per byte, as HF's ByteFallback does), nothing
    /// is added or stripped. For a byte-level BPE vocabulary all tokens' bytes are joined and
    /// read as UTF-8 with U+FFFD for each invalid sequence, as HF's ByteLevel decoder does.
    /// `skip_special` drops control and unknown tokens. Ids outside the vocabulary are ignored
    /// rather than failing a whole generation.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        if self.bpe.is_some() {
            let mut bytes = Vec::with_capacity(ids.len() * 4);
            for &id in ids {
                let Some(&ty) = self.types.get(id as usize) else {
                    continue;
                };
                if skip_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                    continue;
                }
                self.bpe_token_bytes(id, &mut bytes);
            }
            return match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
        }
        let mut out = String::new();
        let mut run: Vec<u8> = Vec::new();
        let flush = |run: &mut Vec<u8>, out: &mut String| {
            if run.is_empty() {
                return;
            }
            match std::str::from_utf8(run) {
                Ok(s) => out.push_str(s),
                Err(_) => {
                    for _ in 0..run.len() {
                        out.push(char::REPLACEMENT_CHARACTER);
                    }
                }
            }
            run.clear();
        };
        for &id in ids {
            let Some(&ty) = self.types.get(id as usize) else {
                continue;
            };
            if skip_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            if let Some(b) = self.byte_value(id) {
                run.push(b);
                continue;
            }
            flush(&mut run, &mut out);
            push_unescaped(&self.pieces[id as usize], &mut out);
        }
        flush(&mut run, &mut out);
        out
    }

    /// The raw byte a byte-fallback token stands for.
    fn byte_value(&self, id: u32) -> Option<u8> {
        if self.types.get(id as usize) != Some(&TokenType::Byte) {
            return None;
        }
        let p = self.pieces[id as usize].as_bytes();
        if p.len() == 6 && p.starts_with(b"<0x") && p[5] == b'>' {
            let hex = std::str::from_utf8(&p[3..5]).ok()?;
            u8::from_str_radix(hex, 16).ok()
        } else {
            None
        }
    }

    /// A byte-level token's bytes, as llama.cpp's `token_to_piece` gives them with specials
    /// shown: control, user-defined and unknown tokens as their literal text, normal tokens
    /// through GPT-2's character → byte map, `<0xXX>` byte tokens as that byte, and nothing
    /// for unused or undefined ones. A character outside the byte map (only a malformed
    /// vocabulary has one) stands for its own UTF-8, as in Hugging Face's ByteLevel decoder.
    fn bpe_token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let (Some(piece), Some(&ty)) = (self.pieces.get(id as usize), self.types.get(id as usize))
        else {
            return;
        };
        match ty {
            TokenType::Control | TokenType::UserDefined | TokenType::Unknown => {
                out.extend_from_slice(piece.as_bytes())
            }
            TokenType::Normal => {
                for c in piece.chars() {
                    match char_to_byte(c) {
                        Some(b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
            }
            TokenType::Byte => out.extend(self.byte_value(id)),
            TokenType::Unused | TokenType::Undefined => {}
        }
    }

    /// The bytes this token adds to decoded output: one raw byte for a byte token, otherwise its
    /// piece with U+2581 as a space (control tokens give their literal text); for a byte-level
    /// BPE vocabulary, the bytes its GPT-2 characters stand for. Empty for an id outside the
    /// vocabulary. Constrained decoding builds its token trie from these.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if self.bpe.is_some() {
            let mut out = Vec::new();
            self.bpe_token_bytes(id, &mut out);
            return out;
        }
        if let Some(b) = self.byte_value(id) {
            return vec![b];
        }
        let mut s = String::new();
        if let Some(p) = self.pieces.get(id as usize) {
            push_unescaped(p, &mut s);
        }
        s.into_bytes()
    }

    /// The vocabulary string as Hugging Face shows it: in SentencePiece form (U+2581 for every
    /// space, even where the GGUF stores raw spaces), or for byte-level BPE in GPT-2's byte
    /// characters (`Ġworld`); empty for an id outside the vocabulary.
    pub fn token_piece(&self, id: u32) -> &str {
        if let Some(s) = self.sp_spelling.get(&id) {
            return s;
        }
        self.pieces.get(id as usize).map_or("", String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// Control tokens steer the model (BOS, turn markers) and are not part of the text.
    pub fn is_control(&self, id: u32) -> bool {
        self.token_type(id) == Some(TokenType::Control)
    }

    /// Whether generation should stop at this token (EOS, end of turn, or one of llama.cpp's
    /// other ends of generation, such as Qwen's `<|endoftext|>`).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        Some(id) == self.eos || Some(id) == self.eot || self.eog.contains(&id)
    }

    /// Whether this is a byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`) rather
    /// than a SentencePiece-style one.
    pub fn is_byte_level(&self) -> bool {
        self.bpe.is_some()
    }

    /// The id whose piece is exactly `piece` (the last one, if the vocabulary repeats it),
    /// in either the GGUF's spelling or the SentencePiece one that [`Tokenizer::token_piece`]
    /// returns.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        self.lookup(piece).or_else(|| {
            let raw = piece.replace(SPACE_ESCAPE, " ");
            self.lookup(&raw)
                .filter(|id| self.sp_spelling.get(id).is_some_and(|s| s == piece))
        })
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.eot
    }

    /// The model's own preference (GGUF `add_bos_token`), for callers of [`Tokenizer::encode`].
    pub fn add_bos_token(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos_token(&self) -> bool {
        self.add_eos
    }

    /// The model's chat template (Jinja source from the GGUF's `tokenizer.chat_template`),
    /// `None` when the file has none. Rendering it is left to the caller (smolt-train's `chat`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}

fn pre_config(name: Option<&str>) -> Result<PreConfig, TokenizerError> {
    PreConfig::from_name(name).ok_or_else(|| TokenizerError::UnsupportedPre {
        pre: name.unwrap_or("").to_string(),
        supported: PreConfig::supported(),
    })
}

fn push_unescaped(piece: &str, out: &mut String) {
    let mut rest = piece;
    while let Some(i) = rest.find(SPACE_ESCAPE) {
        out.push_str(&rest[..i]);
        out.push(' ');
        rest = &rest[i + SPACE_ESCAPE.len()..];
    }
    out.push_str(rest);
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{:?}", v.value_type())
    } else {
        format!("{:?} {s}", v.value_type())
    }
}
