//! Splitting text on the strings of control, unknown and user-defined tokens before the
//! SentencePiece merge runs, as llama.cpp's `tokenizer_st_partition` does.
//!
//! llama.cpp processes the special tokens one at a time, longest text first, and for each one cuts
//! every raw fragment at its leftmost non-overlapping occurrences. A direct port costs one
//! substring search per special token per fragment, and Gemma has thousands of such tokens. We get
//! the same answer from one pass: a byte trie yields every occurrence of every special string, and
//! sorting those candidates by (token priority, position) then accepting each one whose bytes are
//! still free replays the token-by-token order exactly, because a fragment is precisely a maximal
//! run of bytes that no earlier token (or its stripped whitespace) has claimed.

use crate::TokenType;

/// A special token in priority order (longest text first).
#[derive(Clone, Copy, Debug)]
struct Ranked {
    id: u32,
    len: usize,
    lstrip: bool,
    rstrip: bool,
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// Sorted by byte so lookup is a binary search.
    children: Vec<(u8, u32)>,
    /// Best-priority token ending here when special parsing is on.
    any: Option<u32>,
    /// Best-priority user-defined token ending here; llama.cpp splits these out even when
    /// special parsing is off (as Hugging Face does for non-special added tokens).
    user: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialMatcher {
    nodes: Vec<Node>,
    ranked: Vec<Ranked>,
}

/// One piece of partitioned input: raw text (a byte range) or an already-decided token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(usize, usize),
    Token(u32),
}

/// C's `isspace` in the "C" locale, which is what llama.cpp strips with.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl SpecialMatcher {
    pub(crate) fn new(
        pieces: &[String],
        types: &[TokenType],
        lstrip: &[bool],
        rstrip: &[bool],
    ) -> SpecialMatcher {
        let mut ids: Vec<u32> = (0..pieces.len() as u32)
            .filter(|&id| {
                matches!(
                    types[id as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !pieces[id as usize].is_empty()
            })
            .collect();
        // llama.cpp uses an unstable sort on length alone; among equal lengths we take the lower
        // id first, which only matters when two equal-length special strings overlap in a text.
        ids.sort_by_key(|&id| (std::cmp::Reverse(pieces[id as usize].len()), id));

        let mut m = SpecialMatcher {
            nodes: vec![Node::default()],
            ranked: Vec::with_capacity(ids.len()),
        };
        for (rank, &id) in ids.iter().enumerate() {
            let text = pieces[id as usize].as_bytes();
            m.ranked.push(Ranked {
                id,
                len: text.len(),
                lstrip: lstrip[id as usize],
                rstrip: rstrip[id as usize],
            });
            let mut node = 0usize;
            for &b in text {
                node = match m.nodes[node].children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => m.nodes[node].children[i].1 as usize,
                    Err(i) => {
                        let new = m.nodes.len();
                        m.nodes.push(Node::default());
                        m.nodes[node].children.insert(i, (b, new as u32));
                        new
                    }
                };
            }
            let rank = rank as u32;
            let n = &mut m.nodes[node];
            n.any.get_or_insert(rank);
            if types[id as usize] == TokenType::UserDefined {
                n.user.get_or_insert(rank);
            }
        }
        m
    }

    #[inline]
    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let ch = &self.nodes[node].children;
        ch.binary_search_by_key(&b, |c| c.0)
            .ok()
            .map(|i| ch[i].1 as usize)
    }

    /// Cuts `text` into raw-text ranges and special tokens, in text order.
    pub(crate) fn partition(&self, text: &str, parse_special: bool, out: &mut Vec<Piece>) {
        let bytes = text.as_bytes();
        let n = bytes.len();
        // (priority rank, start byte) of every occurrence of every eligible special string.
        let mut cands: Vec<(u32, usize)> = Vec::new();
        if self.ranked.is_empty() {
            if n > 0 {
                out.push(Piece::Text(0, n));
            }
            return;
        }
        for start in 0..n {
            let mut node = 0usize;
            for &b in &bytes[start..] {
                match self.child(node, b) {
                    Some(c) => node = c,
                    None => break,
                }
                let hit = if parse_special {
                    self.nodes[node].any
                } else {
                    self.nodes[node].user
                };
                if let Some(rank) = hit {
                    cands.push((rank, start));
                }
            }
        }
        if cands.is_empty() {
            if n > 0 {
                out.push(Piece::Text(0, n));
            }
            return;
        }
        cands.sort_unstable();

        let mut claimed = vec![false; n];
        let mut accepted: Vec<(usize, usize, u32)> = Vec::new();
        for (rank, start) in cands {
            let r = self.ranked[rank as usize];
            let end = start + r.len;
            if claimed[start..end].iter().any(|&c| c) {
                continue;
            }
            claimed[start..end].fill(true);
            accepted.push((start, end, r.id));
            if r.lstrip {
                let mut i = start;
                while i > 0 && !claimed[i - 1] && is_c_space(bytes[i - 1]) {
                    i -= 1;
                    claimed[i] = true;
                }
            }
            if r.rstrip {
                let mut i = end;
                while i < n && !claimed[i] && is_c_space(bytes[i]) {
                    claimed[i] = true;
                    i += 1;
                }
            }
        }
        accepted.sort_unstable();

        let emit_free = |from: usize, to: usize, out: &mut Vec<Piece>| {
            let mut i = from;
            while i < to {
                while i < to && claimed[i] {
                    i += 1;
                }
                let s = i;
                while i < to && !claimed[i] {
                    i += 1;
                }
                if i > s {
                    out.push(Piece::Text(s, i));
                }
            }
        };
        let mut pos = 0;
        for (start, end, id) in accepted {
            emit_free(pos, start, out);
            out.push(Piece::Token(id));
            pos = end;
        }
        emit_free(pos, n, out);
    }
}
