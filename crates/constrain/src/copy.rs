//! Copying from the input: string fields whose answer is a span of the prompt.
//!
//! An extraction model mostly copies (a company name, an address) and its errors are often
//! small departures from the text in front of it: a letter dropped, "MALAYSLA" for the
//! "MALAYSIA" it read. A schema marks such fields with `"x-smolt-copy": true` on the property
//! (or `smolt eval`'s `copy = [...]` setting marks them); while the model writes one of their
//! string values, only tokens that keep the value a substring of the prompt stay allowed.
//! Whitespace is ignored on both sides — line breaks in the input become spaces in an
//! answer, and where a comma takes a space is the model's to choose — so the value's
//! non-whitespace bytes must appear, in order and adjacent, among the prompt's. Closing the
//! string is always allowed.
//!
//! A value that has already left the text (a forced token, a rolled-back draft) is not held
//! any further: the rule narrows, it never strands the decoder.

use serde_json::Value;

/// The property annotation that marks a string field as a copy of the input.
pub const COPY_KEYWORD: &str = "x-smolt-copy";

/// Names of the properties that `schema` marks with [`COPY_KEYWORD`], at any depth.
pub fn copy_fields(schema: &Value) -> Vec<String> {
    let mut names = Vec::new();
    collect(schema, &mut names);
    names.sort();
    names.dedup();
    names
}

fn collect(v: &Value, names: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    if prop.get(COPY_KEYWORD) == Some(&Value::Bool(true)) {
                        names.push(name.clone());
                    }
                }
            }
            map.values().for_each(|x| collect(x, names));
        }
        Value::Array(items) => items.iter().for_each(|x| collect(x, names)),
        _ => {}
    }
}

/// Marks the properties named in `fields` (at any depth) with [`COPY_KEYWORD`]. Names no
/// property has are returned, so a caller can say which setting matched nothing.
pub fn mark_copy_fields(schema: &mut Value, fields: &[String]) -> Vec<String> {
    let mut found = vec![false; fields.len()];
    mark(schema, fields, &mut found);
    fields
        .iter()
        .zip(found)
        .filter(|(_, f)| !f)
        .map(|(n, _)| n.clone())
        .collect()
}

fn mark(v: &mut Value, fields: &[String], found: &mut [bool]) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if let (Some(i), Value::Object(p)) =
                        (fields.iter().position(|f| f == name), prop)
                    {
                        p.insert(COPY_KEYWORD.into(), Value::Bool(true));
                        found[i] = true;
                    }
                }
            }
            map.values_mut().for_each(|x| mark(x, fields, found));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| mark(x, fields, found)),
        _ => {}
    }
}

/// Every substring of a text, without its whitespace, as a suffix automaton: following a
/// byte is one lookup, and a walk fails exactly when the bytes so far are not a substring.
#[derive(Clone, Debug)]
pub(crate) struct Substrings {
    /// Per state, its outgoing bytes (a handful each; a linear scan beats a map).
    next: Vec<Vec<(u8, u32)>>,
    link: Vec<Option<u32>>,
    len: Vec<u32>,
}

impl Substrings {
    pub(crate) fn new(text: &[u8]) -> Substrings {
        let mut sa = Substrings {
            next: vec![Vec::new()],
            link: vec![None],
            len: vec![0],
        };
        let mut last = 0u32;
        for &c in text.iter().filter(|b| !b.is_ascii_whitespace()) {
            last = sa.extend(last, c);
        }
        sa
    }

    fn add(&mut self, len: u32, next: Vec<(u8, u32)>, link: Option<u32>) -> u32 {
        self.next.push(next);
        self.link.push(link);
        self.len.push(len);
        (self.len.len() - 1) as u32
    }

    fn set(&mut self, state: u32, c: u8, to: u32) {
        let edges = &mut self.next[state as usize];
        match edges.iter_mut().find(|(b, _)| *b == c) {
            Some(e) => e.1 = to,
            None => edges.push((c, to)),
        }
    }

    /// The textbook online construction (Blumer et al.): one new state per byte, and a clone
    /// where a state would otherwise stand for suffixes of two different lengths.
    fn extend(&mut self, last: u32, c: u8) -> u32 {
        let cur = self.add(self.len[last as usize] + 1, Vec::new(), None);
        let mut p = Some(last);
        while let Some(s) = p {
            if self.step(s, c).is_some() {
                break;
            }
            self.set(s, c, cur);
            p = self.link[s as usize];
        }
        let Some(p) = p else {
            self.link[cur as usize] = Some(0);
            return cur;
        };
        let q = self.step(p, c).expect("the loop stopped on an edge");
        if self.len[p as usize] + 1 == self.len[q as usize] {
            self.link[cur as usize] = Some(q);
            return cur;
        }
        let clone = self.add(
            self.len[p as usize] + 1,
            self.next[q as usize].clone(),
            self.link[q as usize],
        );
        let mut p = Some(p);
        while let Some(s) = p {
            if self.step(s, c) != Some(q) {
                break;
            }
            self.set(s, c, clone);
            p = self.link[s as usize];
        }
        self.link[q as usize] = Some(clone);
        self.link[cur as usize] = Some(clone);
        cur
    }

    /// The state after `c`, if the bytes so far followed by `c` are still a substring.
    pub(crate) fn step(&self, state: u32, c: u8) -> Option<u32> {
        self.next[state as usize]
            .iter()
            .find(|(b, _)| *b == c)
            .map(|e| e.1)
    }
}

/// Where a walk over a string value's bytes (as written in JSON) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Still a copy: the automaton state, and whether a backslash escape is open.
    At(u32, bool),
    /// The string closed (what follows is the grammar's business).
    Closed,
    /// The value left the text, or holds an escape the rule does not follow (`\u`).
    Free,
}

/// Follows `bytes` of a JSON string's content from `at`. Whitespace (raw or as `\n`, `\t`,
/// `\r`) is skipped; `\"`, `\\` and `\/` stand for their character.
pub(crate) fn follow(text: &Substrings, at: Walk, bytes: &[u8]) -> Walk {
    let Walk::At(mut state, mut escaped) = at else {
        return at;
    };
    for &b in bytes {
        let c = if escaped {
            escaped = false;
            match b {
                b'n' | b't' | b'r' | b'b' | b'f' => continue,
                b'"' | b'\\' | b'/' => b,
                _ => return Walk::Free,
            }
        } else {
            match b {
                b'\\' => {
                    escaped = true;
                    continue;
                }
                b'"' => return Walk::Closed,
                b if b.is_ascii_whitespace() => continue,
                b => b,
            }
        };
        match text.step(state, c) {
            Some(s) => state = s,
            None => return Walk::Free,
        }
    }
    Walk::At(state, escaped)
}

/// Whether a token's `bytes` may follow a value that stands at `at`: it keeps the value a
/// copy or closes it. A value already free takes anything.
pub(crate) fn continues(text: &Substrings, at: Walk, bytes: &[u8]) -> bool {
    match at {
        Walk::At(..) => follow(text, at, bytes) != Walk::Free,
        Walk::Closed | Walk::Free => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn is_copy(text: &str, value: &str) -> bool {
        let sa = Substrings::new(text.as_bytes());
        matches!(
            follow(&sa, Walk::At(0, false), value.as_bytes()),
            Walk::At(..) | Walk::Closed
        )
    }

    /// The automaton against the obvious definition: every substring of a short text (and
    /// a sample of strings that are not) answered as `str::contains` answers.
    #[test]
    fn substrings_are_exactly_the_substrings() {
        let text = "abracadabra cadabra aab";
        let plain: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let sa = Substrings::new(text.as_bytes());
        let alphabet = ['a', 'b', 'c', 'd', 'r', 'x'];
        // All strings over the alphabet up to length 5, plus every real substring.
        let mut probes: Vec<String> = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = probes
                .iter()
                .filter(|p| p.len() == probes.last().unwrap().len())
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            probes.extend(longer);
        }
        for i in 0..plain.len() {
            for j in i..=plain.len() {
                probes.push(plain[i..j].to_string());
            }
        }
        for p in &probes {
            let walked = p.bytes().try_fold(0u32, |s, b| sa.step(s, b)).is_some();
            assert_eq!(walked, plain.contains(p.as_str()), "{p:?}");
        }
    }

    #[test]
    fn whitespace_and_escapes_are_read_as_json() {
        let text = "NO.53,JALAN BESAR,\n45600 BATANG";
        assert!(is_copy(text, "NO. 53, JALAN BESAR, 45600"));
        assert!(is_copy(text, "BESAR,\\n45600 BAT"));
        assert!(is_copy(text, "BESAR\""), "a closing quote ends the value");
        assert!(!is_copy(text, "BESAR, 45601"));
        assert!(!is_copy(text, "JALAN BESAR, TAMAN"));
        assert!(is_copy("say \"hi\" \\o/", "\\\"hi\\\" \\\\o\\/"));
        let sa = Substrings::new(b"abc");
        assert_eq!(follow(&sa, Walk::At(0, false), b"a\\u0062"), Walk::Free);
        assert_eq!(follow(&sa, Walk::At(0, false), b"a\\"), Walk::At(1, true));
    }

    #[test]
    fn tokens_that_close_or_continue_are_allowed() {
        let sa = Substrings::new(b"KUALA LUMPUR");
        let at = follow(&sa, Walk::At(0, false), b"KUALA L");
        assert!(continues(&sa, at, b"UMP"));
        assert!(continues(&sa, at, b"\","), "closing");
        assert!(!continues(&sa, at, b"UMB"));
        assert!(continues(&sa, Walk::Free, b"anything"));
    }

    #[test]
    fn fields_are_marked_and_found_at_any_depth() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "company": {"type": "string"},
                "total": {"type": "number"},
                "items": {"type": "array", "items": {"type": "object",
                    "properties": {"name": {"type": "string"}}}}
            }
        });
        assert!(copy_fields(&schema).is_empty());
        let unknown = mark_copy_fields(
            &mut schema,
            &["company".into(), "name".into(), "adress".into()],
        );
        assert_eq!(unknown, vec!["adress".to_string()]);
        assert_eq!(copy_fields(&schema), vec!["company", "name"]);
        assert_eq!(schema["properties"]["company"][COPY_KEYWORD], json!(true));
    }
}
