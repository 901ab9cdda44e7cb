//! Log-probabilities of output tokens: computed here, once per token, for both endpoints and
//! both of OpenAI's formats (chat's `logprobs.content`, completions' `tokens` /
//! `token_logprobs` / `top_logprobs` / `text_offset`).
//!
//! The numbers are the log-softmax of the logits the sampler drew the token from: before
//! temperature, top-k and top-p (those shape how a token is drawn, not what the model thinks of
//! it; OpenAI and vLLM report the same), but AFTER a `response_format`'s grammar removed the
//! tokens it forbids. Two reasons for the mask: where the grammar allows few tokens the engine
//! scores only those rows of the head, so the unmasked distribution does not exist at that
//! step; and the masked one is what the answer was really drawn from. So under a constraint the
//! alternatives are the allowed tokens only, and a token the grammar forced (the only one
//! allowed, committed without a forward pass) has log-probability 0. Without a constraint the
//! numbers are the model's own distribution, as OpenAI's are.

use serde_json::{json, Map, Value};
use smolt_tokenizer::Tokenizer;

/// OpenAI's stand-in for "no probability at all": JSON has no `-inf`.
const FLOOR: f32 = -9999.0;

/// One output token's log-probability and the `top` most likely tokens of its step.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    /// Most likely first (lowest id on a tie); masked tokens never appear.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// `id` drawn from `logits` (`-inf` where masked), with the `top` best of them.
    pub fn sampled(logits: &[f32], id: u32, top: usize) -> TokenLogprob {
        let live = |l: &f32| *l > f32::NEG_INFINITY;
        let max = logits
            .iter()
            .copied()
            .filter(live)
            .fold(f32::NEG_INFINITY, f32::max);
        // In f64: over a 262k vocabulary an f32 sum drops the tail's mass.
        let sum: f64 = logits
            .iter()
            .filter(|l| live(l))
            .map(|&l| f64::from(l - max).exp())
            .sum();
        let lse = max + sum.ln() as f32;
        let logprob = |l: f32| {
            if live(&l) && lse.is_finite() {
                (l - lse).max(FLOOR)
            } else {
                FLOOR
            }
        };
        // A sorted handful kept by insertion: k is at most 20, and after the first few
        // thousand entries almost none beats the smallest kept.
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
        if top > 0 {
            for (i, &l) in logits.iter().enumerate() {
                if !live(&l) || (best.len() == top && l <= best[top - 1].1) {
                    continue;
                }
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i as u32, l));
                best.truncate(top);
            }
        }
        TokenLogprob {
            id,
            logprob: logprob(
                logits
                    .get(id as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY),
            ),
            top: best.into_iter().map(|(i, l)| (i, logprob(l))).collect(),
        }
    }

    /// A token the grammar forced: the only one allowed, so certain.
    pub fn forced(id: u32, top: usize) -> TokenLogprob {
        TokenLogprob {
            id,
            logprob: 0.0,
            top: if top > 0 { vec![(id, 0.0)] } else { Vec::new() },
        }
    }
}

/// A token as OpenAI shows it: its text where its bytes are UTF-8 on their own, else
/// `bytes:\xNN…` (a piece of a character); and the bytes.
fn token_text(tok: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let bytes = tok.token_bytes(id);
    let text = match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            format!("bytes:{hex}")
        }
    };
    (text, bytes)
}

/// Chat's `choices[].logprobs` for these tokens.
pub fn chat(tok: &Tokenizer, tokens: &[TokenLogprob]) -> Value {
    let entry = |id: u32, logprob: f32| {
        let (token, bytes) = token_text(tok, id);
        json!({"token": token, "logprob": logprob, "bytes": bytes})
    };
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(t.id, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|&(i, l)| entry(i, l)).collect();
            e
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Where each token starts in a completion's text, counted in characters as Python counts
/// them (the legacy `text_offset`), across the chunks of a stream.
#[derive(Debug, Default)]
pub struct TextOffsets {
    chars: usize,
    /// The start of a character whose other bytes are in later tokens.
    partial: Vec<u8>,
}

impl TextOffsets {
    /// The offset of a token with these bytes, which then count as read.
    fn next(&mut self, bytes: &[u8]) -> usize {
        let at = self.chars;
        self.partial.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    self.chars += s.chars().count();
                    self.partial.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.chars += std::str::from_utf8(&self.partial[..valid])
                        .map_or(0, |s| s.chars().count());
                    match e.error_len() {
                        // Bytes that can never be a character: the text shows U+FFFD each.
                        Some(n) => {
                            self.chars += n;
                            self.partial.drain(..valid + n);
                        }
                        None => {
                            self.partial.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        at
    }
}

/// Completions' `choices[].logprobs` for these tokens. As OpenAI does, each step's
/// `top_logprobs` also holds the chosen token, so it may have one entry more than asked.
pub fn completion(tok: &Tokenizer, tokens: &[TokenLogprob], offsets: &mut TextOffsets) -> Value {
    let mut texts = Vec::with_capacity(tokens.len());
    let mut logprobs = Vec::with_capacity(tokens.len());
    let mut tops = Vec::with_capacity(tokens.len());
    let mut starts = Vec::with_capacity(tokens.len());
    for t in tokens {
        let (text, bytes) = token_text(tok, t.id);
        starts.push(offsets.next(&bytes));
        let mut top = Map::new();
        for &(i, l) in t.top.iter().chain([(t.id, t.logprob)].iter()) {
            // Two ids can read the same; the first, more likely, one stands.
            top.entry(token_text(tok, i).0).or_insert(json!(l));
        }
        texts.push(text);
        logprobs.push(t.logprob);
        tops.push(Value::Object(top));
    }
    json!({
        "tokens": texts,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": starts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn log_softmax_of_the_sampled_token_and_the_best_others() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, f32::NEG_INFINITY];
        let lse = (1f32.exp() + 3f32.exp() + 2f32.exp() + 3f32.exp()).ln();
        let t = TokenLogprob::sampled(&logits, 2, 3);
        assert!(close(t.logprob, 2.0 - lse), "{t:?}");
        // Ties in id order, then the next best; the masked entry never appears.
        assert_eq!(t.top.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3, 2]);
        assert!(close(t.top[0].1, 3.0 - lse));
        let probs: f32 = logits.iter().map(|&l| (l - lse).exp()).sum();
        assert!(close(probs, 1.0));
        // More asked than allowed: only the allowed ones.
        assert_eq!(TokenLogprob::sampled(&logits, 1, 20).top.len(), 4);
        assert!(TokenLogprob::sampled(&logits, 1, 0).top.is_empty());
        // A masked id (never sampled) still gives a number JSON can carry.
        assert_eq!(TokenLogprob::sampled(&logits, 4, 1).logprob, FLOOR);
    }

    #[test]
    fn forced_tokens_are_certain() {
        assert_eq!(
            TokenLogprob::forced(7, 2),
            TokenLogprob {
                id: 7,
                logprob: 0.0,
                top: vec![(7, 0.0)]
            }
        );
        assert!(TokenLogprob::forced(7, 0).top.is_empty());
    }

    #[test]
    fn offsets_count_characters_across_split_tokens() {
        let mut o = TextOffsets::default();
        assert_eq!(o.next(b"ab"), 0);
        // "é" split over two tokens: the second starts inside it, at the character it ends.
        assert_eq!(o.next(&[0xC3]), 2);
        assert_eq!(o.next(&[0xA9]), 2);
        assert_eq!(o.next(b"c"), 3);
        // A byte that is never UTF-8 counts as the one U+FFFD it decodes to.
        assert_eq!(o.next(&[0xFF]), 4);
        assert_eq!(o.next(b"d"), 5);
    }
}
