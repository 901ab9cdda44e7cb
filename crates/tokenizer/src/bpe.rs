//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): GPT-2, Llama 3, Qwen2, SmolLM and most
//! other recent vocabularies, with ids as llama.cpp's `llm_tokenizer_bpe` gives them.
//!
//! Text is cut into words by the pre-tokenizer the GGUF names (`tokenizer.ggml.pre`, see
//! [`crate::pretokenize`]); each word's bytes start as one symbol each (the byte's GPT-2
//! character) and the adjacent pair with the lowest merge rank is merged until no pair has a
//! rank. Ties go to the leftmost pair, as in llama.cpp's queue.
//!
//! # Why not the `tokenizers` crate
//!
//! Hugging Face's `tokenizers` has all the parts (a BPE model from vocab and merges, a `Split`
//! pre-tokenizer with a regex, `ByteLevel`), but it was not taken:
//! - exactness: the reference is llama.cpp, and llama.cpp does not run these regexes. It runs
//!   hand-written scanners over its own Unicode 15.1 tables, chains extra patterns for some
//!   pre-tokenizers (SmolLM isolates every digit first), keeps lookaheads inside the piece
//!   being split, and looks merges up by string even for vocabularies whose merge results are
//!   not tokens. `tokenizers` with `onig` or `fancy-regex` follows the regex engine's Unicode
//!   version and semantics instead; where the two disagree we would have to patch around it.
//! - weight: `tokenizers` 0.22 builds a C regex engine (`onig`) and a C++ suffix-array library
//!   (`esaxx`) by default, and even without them brings `rayon`, `serde` derive,
//!   `derive_builder`, `spm_precompiled`, `unicode-normalization-alignments`, `monostate` and
//!   more, all compiled on every clean CI run on two cores, for one function. This module is a
//!   few hundred lines over `std` plus a 2,270-entry generated table.
//! - speed: the hot loop here works on interned symbol ids and a `(left, right) → (rank,
//!   result)` map of integers, with no string built per merge: about 11 M tokens/s on one core
//!   (`examples/encode_speed.rs`), ten times llama.cpp's own tokenizer through its Python
//!   bindings. `tokenizers` is fast too (it caches words), so speed decided nothing.
//!
//! # Symbols
//!
//! Every string that can occur as a symbol (the vocabulary's tokens, the GPT-2 character of each
//! byte, both halves and the result of each merge) is interned once at load: vocabulary
//! strings keep their token id, the rest get ids past the end of the vocabulary. Merging then
//! compares integers, and a symbol below `n_vocab` is a token by construction. A symbol past
//! it (only a malformed vocabulary produces one) falls back, as in llama.cpp, to the tokens of
//! its single-byte characters, dropping bytes that have none.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::fxhash::FxHashMap;
use crate::pretokenize::{PreConfig, Scratch};
use crate::unicode::{byte_to_char, char_to_byte};

#[derive(Clone, Debug)]
pub(crate) struct Bpe {
    config: PreConfig,
    n_vocab: u32,
    /// The symbol of each byte's one-character spelling.
    byte_sym: [u32; 256],
    /// `(left << 32) | right` → (rank, merged symbol); the first listing of a pair wins, as
    /// in llama.cpp's `bpe_ranks.emplace`.
    merges: FxHashMap<u64, (u32, u32)>,
    /// For `ignore_merges`: a word's raw bytes → the token spelling exactly that word.
    whole: FxHashMap<Box<[u8]>, u32>,
    /// The token of each printable-ASCII byte's one-character string, for the fallback.
    ascii_token: [Option<u32>; 128],
}

/// One symbol of a word being merged.
#[derive(Clone, Copy, Debug)]
struct Sym {
    id: u32,
    /// Byte offset in the word and length; length zero once merged into its left neighbour.
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// A candidate merge in the queue: (rank, left index, left symbol, right symbol, merged
/// symbol), lowest rank first, then leftmost. The symbol ids recognise entries whose symbols
/// have changed since they were queued.
type Candidate = Reverse<(u32, u32, u32, u32, u32)>;

impl Bpe {
    /// `piece_to_id` maps every token's GGUF text to its id (the last id for a repeated text).
    pub(crate) fn new(
        pieces: &[String],
        piece_to_id: &FxHashMap<Box<str>, u32>,
        merges: &[String],
        config: PreConfig,
    ) -> Bpe {
        let n_vocab = pieces.len() as u32;
        let mut extra: FxHashMap<String, u32> = FxHashMap::default();
        let mut sym = |s: &str| -> u32 {
            if let Some(&id) = piece_to_id.get(s) {
                return id;
            }
            let next = n_vocab + extra.len() as u32;
            *extra.entry(s.to_string()).or_insert(next)
        };

        let mut byte_sym = [0u32; 256];
        for (b, slot) in byte_sym.iter_mut().enumerate() {
            *slot = sym(byte_to_char(b as u8).encode_utf8(&mut [0; 4]));
        }

        let mut map: FxHashMap<u64, (u32, u32)> =
            FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a merge may start
            // with a space character; one without such a space never matches a symbol pair.
            let Some(at) = m.as_bytes().iter().skip(1).position(|&b| b == b' ') else {
                continue;
            };
            let (left, right) = (&m[..at + 1], &m[at + 2..]);
            if left.is_empty() || right.is_empty() {
                continue;
            }
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let (l, r, j) = (sym(left), sym(right), sym(&joined));
            map.entry(pair(l, r)).or_insert((rank as u32, j));
        }

        let mut whole = FxHashMap::default();
        if config.ignore_merges {
            for (id, p) in pieces.iter().enumerate() {
                // Only tokens spelled entirely in byte characters can equal an encoded word.
                let bytes: Option<Vec<u8>> = p.chars().map(char_to_byte).collect();
                if let Some(bytes) = bytes {
                    // Later duplicates win, as in llama.cpp's `token_to_id`.
                    whole.insert(bytes.into_boxed_slice(), id as u32);
                }
            }
        }

        let mut ascii_token = [None; 128];
        for (b, slot) in ascii_token.iter_mut().enumerate() {
            let s = [b as u8];
            if let Ok(s) = std::str::from_utf8(&s) {
                *slot = piece_to_id.get(s).copied();
            }
        }

        Bpe {
            config,
            n_vocab,
            byte_sym,
            merges: map,
            whole,
            ascii_token,
        }
    }

    /// Tokenizes one fragment of raw text (special tokens already split out).
    pub(crate) fn encode(&self, text: &str, work: &mut Work, out: &mut Vec<u32>) {
        work.words.clear();
        self.config
            .pre
            .split(text, &mut work.scratch, &mut work.words);
        let words = std::mem::take(&mut work.words);
        for &(a, b) in &words {
            self.encode_word(&text.as_bytes()[a..b], work, out);
        }
        work.words = words;
    }

    fn encode_word(&self, word: &[u8], work: &mut Work, out: &mut Vec<u32>) {
        if self.config.ignore_merges {
            if let Some(&id) = self.whole.get(word) {
                out.push(id);
                return;
            }
        }
        if let [b] = word {
            self.emit(self.byte_sym[*b as usize], word, out);
            return;
        }
        let syms = &mut work.syms;
        let queue = &mut work.queue;
        syms.clear();
        queue.clear();
        let n = word.len() as u32;
        for (i, &b) in word.iter().enumerate() {
            let i = i as u32;
            syms.push(Sym {
                id: self.byte_sym[b as usize],
                start: i,
                len: 1,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            });
        }
        for i in 1..n {
            self.push_candidate(syms, queue, i - 1, i);
        }
        while let Some(Reverse((_, left, lid, rid, merged))) = queue.pop() {
            let l = syms[left as usize];
            let right = l.next;
            // Stale: the left symbol was absorbed or has grown, or its right neighbour has.
            // (A symbol's text only grows, so an unchanged id means unchanged text, which is
            // llama.cpp's test.)
            if l.len == 0 || l.id != lid || right == NONE || syms[right as usize].id != rid {
                continue;
            }
            let r = syms[right as usize];
            let s = &mut syms[left as usize];
            s.id = merged;
            s.len += r.len;
            s.next = r.next;
            syms[right as usize].len = 0;
            if r.next != NONE {
                syms[r.next as usize].prev = left;
            }
            if l.prev != NONE {
                self.push_candidate(syms, queue, l.prev, left);
            }
            if r.next != NONE {
                self.push_candidate(syms, queue, left, r.next);
            }
        }
        let mut i = 0;
        while i != NONE {
            let s = syms[i as usize];
            self.emit(
                s.id,
                &word[s.start as usize..(s.start + s.len) as usize],
                out,
            );
            i = s.next;
        }
    }

    #[inline]
    fn push_candidate(&self, syms: &[Sym], queue: &mut BinaryHeap<Candidate>, l: u32, r: u32) {
        let (lid, rid) = (syms[l as usize].id, syms[r as usize].id);
        if let Some(&(rank, merged)) = self.merges.get(&pair(lid, rid)) {
            queue.push(Reverse((rank, l, lid, rid, merged)));
        }
    }

    #[inline]
    fn emit(&self, sym: u32, bytes: &[u8], out: &mut Vec<u32>) {
        if sym < self.n_vocab {
            out.push(sym);
            return;
        }
        // Not a token: llama.cpp looks up each byte of the symbol's *encoded* text as a
        // one-byte string; only printable ASCII encodes to a single byte.
        for &b in bytes {
            if let Some(Some(id)) = self.ascii_token.get(b as usize) {
                out.push(*id);
            }
        }
    }
}

#[inline]
fn pair(l: u32, r: u32) -> u64 {
    (u64::from(l) << 32) | u64::from(r)
}

/// Buffers reused across the words of one `encode` call.
#[derive(Default)]
pub(crate) struct Work {
    scratch: Scratch,
    words: Vec<(usize, usize)>,
    syms: Vec<Sym>,
    queue: BinaryHeap<Candidate>,
}
