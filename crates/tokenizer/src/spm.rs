//! The SentencePiece merge of llama.cpp's `llm_tokenizer_spm`: start from UTF-8 characters and
//! repeatedly merge the adjacent pair whose concatenation is the highest-scoring vocabulary piece.
//!
//! A binary heap of candidate bigrams with lazy invalidation keeps this O(n log n). Ties in score
//! go to the leftmost pair, exactly as llama.cpp's comparator orders them; any difference here
//! would change ids on real text.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::Tokenizer;

const NONE: usize = usize::MAX;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    /// Zero once merged into its left neighbour.
    len: usize,
    prev: usize,
    next: usize,
}

#[derive(Clone, Copy, Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length when queued; a mismatch later means one side has since changed.
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Scores are NaN-free (sanitised at construction), so this is a total order.
        if self.score < other.score {
            Ordering::Less
        } else if self.score > other.score {
            Ordering::Greater
        } else {
            other.left.cmp(&self.left)
        }
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// Tokenizes one raw fragment whose spaces are already escaped to U+2581.
pub(crate) fn encode(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, ch) in text.char_indices() {
        let i = symbols.len();
        symbols.push(Symbol {
            start,
            len: ch.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: i + 1,
        });
    }
    if let Some(last) = symbols.last_mut() {
        last.next = NONE;
    }

    let mut heap: BinaryHeap<Bigram> = BinaryHeap::with_capacity(symbols.len());
    let try_add = |heap: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left], symbols[right]);
        let size = l.len + r.len;
        if let Some(id) = tok.lookup(&text[l.start..l.start + size]) {
            heap.push(Bigram {
                score: tok.scores[id as usize],
                left,
                right,
                size,
            });
        }
    };

    for i in 1..symbols.len() {
        try_add(&mut heap, &symbols, i - 1, i);
    }

    while let Some(b) = heap.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len = b.size;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if r.next != NONE {
            symbols[r.next].prev = b.left;
        }
        try_add(&mut heap, &symbols, l.prev, b.left);
        try_add(&mut heap, &symbols, b.left, r.next);
    }

    // Every surviving symbol is either a single character or the text of a merged bigram, which
    // is a vocabulary piece by construction; so llama.cpp's `rev_merge` re-segmentation never
    // finds anything and the only fallback needed is to bytes.
    let mut i = 0;
    while i != NONE {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match tok.lookup(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    if let Some(id) = tok.byte_fallback(b) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
