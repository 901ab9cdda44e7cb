//! Per-field confidence of a JSON answer: for each top-level field, the lowest probability the
//! model gave a token it chose freely inside the field's value. Tokens the grammar forced
//! (braces, keys, quotes it alone allows) say nothing about the model's certainty and do not
//! count; a field whose value held no free choice is certain by construction (1.0).
//!
//! The lowest, not the mean: one unsure digit makes a total wrong, however sure the others.

/// Each top-level field of the JSON object the tokens spell, in order, with its confidence.
/// `token_bytes` are the output tokens' bytes (the tokenizer's `token_bytes`) and `probs` their
/// probabilities as [`ConstrainedOutput::probs`](crate::ConstrainedOutput::probs) gives them.
/// A token counts for a field when any of its bytes lies inside the field's value. An answer
/// that is not an object gives what could be read before the fault; tokens that are not UTF-8
/// together, or without one probability each (an unconstrained answer has none), give nothing.
pub fn field_confidence<B: AsRef<[u8]>>(
    token_bytes: &[B],
    probs: &[Option<f32>],
) -> Vec<(String, f32)> {
    if probs.len() != token_bytes.len() {
        return Vec::new();
    }
    let all: Vec<u8> = token_bytes
        .iter()
        .flat_map(|b| b.as_ref())
        .copied()
        .collect();
    let Ok(text) = std::str::from_utf8(&all) else {
        return Vec::new();
    };
    let mut starts = Vec::with_capacity(token_bytes.len());
    let mut at = 0;
    for b in token_bytes {
        starts.push(at);
        at += b.as_ref().len();
    }
    value_spans(text)
        .into_iter()
        .map(|(key, lo, hi)| {
            let lowest = starts
                .iter()
                .zip(token_bytes)
                .zip(probs)
                .filter(|((&s, b), _)| s < hi && s + b.as_ref().len() > lo)
                .filter_map(|(_, p)| *p)
                .fold(1.0f32, f32::min);
            (key, lowest)
        })
        .collect()
}

/// The byte range `[lo, hi)` of each top-level value of a JSON object, with its key.
fn value_spans(text: &str) -> Vec<(String, usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return out;
        }
        let Some(key_end) = string_end(b, i) else {
            return out;
        };
        let key = unescape(&text[i + 1..key_end - 1]);
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return out;
        }
        let lo = skip_ws(b, i + 1);
        let Some(hi) = value_end(b, lo) else {
            return out;
        };
        out.push((key, lo, hi));
        i = skip_ws(b, hi);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return out,
        }
    }
}

/// A key's text without JSON escapes (`\uXXXX` kept as written: keys are names a schema
/// gives, ASCII in practice).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('u') => out.push_str("\\u"),
                Some(e) => out.push(e),
                None => {}
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// One past the closing quote of the string opening at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// One past the end of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_each_value_whatever_its_kind() {
        let t = r#"{"a": "x\"}", "b\"2":12.5,"c" : {"d": [1, "]"]}, "e": null}"#;
        let spans: Vec<(String, &str)> = value_spans(t)
            .into_iter()
            .map(|(k, lo, hi)| (k, &t[lo..hi]))
            .collect();
        assert_eq!(
            spans,
            [
                ("a".to_string(), r#""x\"}""#),
                ("b\"2".to_string(), "12.5"),
                ("c".to_string(), r#"{"d": [1, "]"]}"#),
                ("e".to_string(), "null"),
            ]
        );
        assert!(value_spans("[1]").is_empty());
        assert_eq!(value_spans(r#"{"a": 1, "b": "cut"#).len(), 1);
    }

    #[test]
    fn a_field_takes_its_lowest_free_choice_and_forced_tokens_do_not_count() {
        // Tokens: `{"total": ` forced, `12` p=0.9, `.` forced, `5` p=0.4, `, "name": "` forced,
        // `Bob` p=0.99, `"}` forced.
        let tokens: [&[u8]; 7] = [
            b"{\"total\": ",
            b"12",
            b".",
            b"5",
            b", \"name\": \"",
            b"Bob",
            b"\"}",
        ];
        let probs = [None, Some(0.9), None, Some(0.4), None, Some(0.99), None];
        let got = field_confidence(&tokens, &probs);
        assert_eq!(
            got,
            [("total".to_string(), 0.4), ("name".to_string(), 0.99)]
        );
        // All forced: certain by construction.
        let got = field_confidence(&tokens, &[None; 7]);
        assert_eq!(got[0].1, 1.0);
        assert!(field_confidence(&[&b"{\"a\": \"\xff\"}"[..]], &[Some(0.5)]).is_empty());
        assert!(field_confidence(&tokens, &[]).is_empty());
    }
}
