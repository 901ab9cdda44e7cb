//! Bounds that keep a JSON answer from rambling until the token limit.
//!
//! A JSON Schema's `number` without bounds is unbounded in the grammar, and a small model at
//! temperature 1.0 can fall into "7777…" or "1000000.0000…" inside one; a string value can
//! loop ("GUEST CHECK GUEST CHECK …"). Either runs to the token limit and leaves an invalid,
//! truncated answer. The guard narrows llguidance's mask at such points — it only ever
//! removes tokens, so everything it lets through is still valid under the schema:
//!
//! - **numbers**: at most [`NumberCaps::DEFAULT`] digits in the integral, fractional and
//!   exponent parts (16, 16 and 3: llama.cpp's JSON-Schema bounds, with an exponent an f64 can
//!   hold); a schema whose
//!   own bounds need more digits switches the integral cap off ("the schema's limits win");
//! - **string loops**: once a string value ends in one unit repeated [`LOOP_REPEATS`] times
//!   over at least [`LOOP_MIN_BYTES`] bytes, only tokens that close the string stay allowed;
//! - **item loops**: once the output ends in the same array item (of [`ITEM_MIN_BYTES`] or
//!   more) [`ITEM_REPEATS`] times, no token may start another item of that array, so it
//!   closes after the current one. Receipts do list one article several times, so this takes
//!   more repeats than a string.
//! - **copies** ([`crate::copy`]): where the caller gave the prompt, a schema's copy fields
//!   keep to spans of it.
//!
//! Where narrowing would leave nothing allowed (a schema `pattern` that cannot end here, say)
//! the mask is left as the grammar gave it. Every intervention is logged per committed token,
//! so speculative drafts that are rolled back take their interventions with them.

use serde_json::Value;
use toktrie::{SimpleVob, TokTrie};

use crate::copy::{continues, follow, Substrings, Walk};

/// A string value has looped once its tail is one unit repeated this many times…
pub const LOOP_REPEATS: usize = 4;
/// …over at least this many bytes (so "1111" or "----" in a value is not a loop).
pub const LOOP_MIN_BYTES: usize = 32;
/// The longest repeated unit looked for, in bytes.
const LOOP_MAX_UNIT: usize = 64;
/// An array has looped once it ends in one item (with its separator) repeated this many
/// times…
pub const ITEM_REPEATS: usize = 6;
/// …where the item and separator take at least this many bytes (so `[0, 0, 0, …]` is not a
/// loop).
pub const ITEM_MIN_BYTES: usize = 8;
/// The longest repeated item looked for, in bytes.
const ITEM_MAX_BYTES: usize = 256;

/// Most digits per part of a JSON number (`None`: no cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumberCaps {
    pub integral: Option<u32>,
    pub fractional: Option<u32>,
    pub exponent: Option<u32>,
}

impl NumberCaps {
    /// llama.cpp's bound for schema numbers, 16 integral and 16 fractional digits; 3 in an
    /// exponent, all an f64 can use (llama.cpp allows 16 there, which no parser can read).
    pub const DEFAULT: NumberCaps = NumberCaps {
        integral: Some(16),
        fractional: Some(16),
        exponent: Some(3),
    };

    /// The default caps, less any a schema's own limits need lifted: a `minimum`/`maximum`
    /// (exclusive or not) of 10^16 or more in magnitude lifts the integral cap, a
    /// `multipleOf` finer than 10^-16 the fractional one.
    pub fn for_schema(schema: &Value) -> NumberCaps {
        let mut caps = NumberCaps::DEFAULT;
        walk(schema, &mut caps);
        caps
    }

    fn cap(&self, part: Part) -> Option<u32> {
        match part {
            Part::Integral => self.integral,
            Part::Fractional => self.fractional,
            Part::Exponent => self.exponent,
        }
    }
}

fn walk(v: &Value, caps: &mut NumberCaps) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let n = x.as_f64();
                match (k.as_str(), n) {
                    ("minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum", Some(n))
                        if n.abs() >= 1e16 =>
                    {
                        caps.integral = None
                    }
                    ("multipleOf", Some(n)) if n > 0.0 && n < 1e-16 => caps.fractional = None,
                    _ => walk(x, caps),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| walk(x, caps)),
        _ => {}
    }
}

/// How many times the guard stepped in over one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardCounts {
    /// Numbers whose digits reached a cap (each counted once).
    pub numbers_capped: usize,
    /// String values and arrays closed because they had looped.
    pub loops_stopped: usize,
    /// Values of copy fields ([`crate::copy`]) decoded under the copy rule (a mask it
    /// narrowed; whether the model's own pick was among the tokens removed is not known here).
    pub copies_held: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Integral,
    Fractional,
    Exponent,
}

/// Where a byte stream stands lexically in JSON: enough to know whether the next bytes extend
/// a number or a string, and by how much.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Scan {
    in_string: bool,
    escaped: bool,
    /// Inside a number: its part, that part's digit count, and where the number started.
    number: Option<(Part, u32, usize)>,
    /// Where the current (or last) string's content starts.
    string_start: usize,
    /// Open containers, innermost in bit 0: 1 an array, 0 an object (64 levels are plenty
    /// for an answer; deeper ones are followed by depth only).
    stack: u64,
    depth: u32,
    /// The last byte outside strings that was not whitespace (`"` once a string closed).
    prev: u8,
    /// Where the last closed string's content was, and the key of the latest `key:`.
    last_string: (usize, usize),
    key: (usize, usize),
    /// The open (or last) string is a value — after `:`, or an array's item — not a key.
    value_string: bool,
}

impl Scan {
    /// Advances over byte `b` at position `pos` of the output.
    fn step(&mut self, b: u8, pos: usize) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                self.last_string = (self.string_start, pos);
                self.prev = b'"';
            }
            return;
        }
        if b.is_ascii_whitespace() {
            self.number = None;
            return;
        }
        if b == b':' {
            self.key = self.last_string;
        }
        match b {
            b'[' | b'{' => {
                self.stack = self.stack << 1 | (b == b'[') as u64;
                self.depth += 1;
            }
            b']' | b'}' => {
                self.stack >>= 1;
                self.depth = self.depth.saturating_sub(1);
            }
            _ => {}
        }
        self.number = match (self.number, b) {
            (_, b'"') => {
                self.in_string = true;
                self.string_start = pos + 1;
                self.value_string = self.prev == b':'
                    || (self.stack & 1 == 1 && self.depth > 0 && matches!(self.prev, b'[' | b','));
                None
            }
            (None, b'-') => Some((Part::Integral, 0, pos)),
            (None, b'0'..=b'9') => Some((Part::Integral, 1, pos)),
            (Some((part, n, start)), b'0'..=b'9') => Some((part, n + 1, start)),
            (Some((Part::Integral, _, start)), b'.') => Some((Part::Fractional, 0, start)),
            (Some((Part::Integral | Part::Fractional, _, start)), b'e' | b'E') => {
                Some((Part::Exponent, 0, start))
            }
            (Some((Part::Exponent, 0, start)), b'+' | b'-') => Some((Part::Exponent, 0, start)),
            _ => None,
        };
        self.prev = b;
    }

    /// The depth of the innermost open array (1 = outermost container), if any.
    fn array_depth(&self) -> Option<u32> {
        let levels = self.depth.min(64);
        (0..levels)
            .find(|&i| self.stack >> i & 1 == 1)
            .map(|i| self.depth - i)
    }

    /// Whether feeding `bytes` would put a comma directly in the array at `depth`: start
    /// another item there.
    fn adds_item(mut self, bytes: &[u8], depth: u32) -> bool {
        for &b in bytes {
            if b == b',' && !self.in_string && self.depth == depth {
                return true;
            }
            self.step(b, 0);
            if self.depth < depth {
                return false; // the array closed
            }
        }
        false
    }

    /// Whether feeding `bytes` from `pos` on would push a number part past its cap.
    fn exceeds(mut self, bytes: &[u8], pos: usize, caps: &NumberCaps) -> bool {
        for (i, &b) in bytes.iter().enumerate() {
            self.step(b, pos + i);
            if let Some((part, n, _)) = self.number {
                if caps.cap(part).is_some_and(|c| n > c) {
                    return true;
                }
            }
        }
        false
    }
}

/// How the guard narrowed the mask at one position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Step {
    /// A number starting at this position reached a cap.
    capped: Option<usize>,
    /// A looping string was made to close.
    string_closed: bool,
    /// A looping list was kept from starting another item.
    list_stopped: bool,
    /// A copy field's value (starting at this position) was kept to the prompt's text.
    copy_held: Option<usize>,
}

/// The fields whose string values must be copies of the prompt, and the prompt's text.
#[derive(Clone, Debug)]
pub(crate) struct CopyRule {
    pub(crate) fields: Vec<String>,
    pub(crate) text: Substrings,
}

impl CopyRule {
    /// Whether the value whose key is `key` (its raw JSON bytes) is a copy field.
    fn applies(&self, key: &[u8]) -> bool {
        self.fields.iter().any(|f| f.as_bytes() == key)
    }
}

/// The guard for one sequence: follows the committed bytes and narrows masks.
#[derive(Clone, Debug)]
pub(crate) struct RambleGuard {
    caps: NumberCaps,
    out: Vec<u8>,
    scan: Scan,
    /// `ends[i]`: output length after committed token i, for rollback.
    ends: Vec<usize>,
    /// Per committed token, how the mask it was chosen from had been narrowed.
    log: Vec<Step>,
    /// The narrowing of the current mask, taken by the next commit.
    pending: Step,
    copy: Option<CopyRule>,
}

impl RambleGuard {
    pub(crate) fn new(caps: NumberCaps) -> RambleGuard {
        RambleGuard {
            caps,
            out: Vec::new(),
            scan: Scan::default(),
            ends: Vec::new(),
            log: Vec::new(),
            pending: Step::default(),
            copy: None,
        }
    }

    /// Also keeps the values of `rule`'s fields to copies of its text.
    pub(crate) fn with_copy(mut self, rule: CopyRule) -> RambleGuard {
        self.copy = Some(rule);
        self
    }

    /// Narrows `mask` (llguidance's, for the position after everything committed).
    pub(crate) fn narrow(&mut self, mask: &mut SimpleVob, trie: &TokTrie) {
        self.pending = Step::default();
        let pos = self.out.len();
        let scan = self.scan;
        if let Some((_, _, start)) = scan.number {
            let caps = self.caps;
            if keep_only(mask, |id| !scan.exceeds(trie.token(id), pos, &caps)) {
                self.pending.capped = Some(start);
            }
        }
        if scan.in_string {
            if let Some(rule) = self
                .copy
                .as_ref()
                .filter(|r| scan.value_string && r.applies(&self.out[scan.key.0..scan.key.1]))
            {
                let at = follow(
                    &rule.text,
                    Walk::At(0, false),
                    &self.out[scan.string_start..],
                );
                if at != Walk::Free
                    && keep_only(mask, |id| continues(&rule.text, at, trie.token(id)))
                {
                    self.pending.copy_held = Some(scan.string_start);
                }
            }
            if !scan.escaped
                && looped(
                    &self.out[scan.string_start..],
                    1,
                    LOOP_MAX_UNIT,
                    LOOP_REPEATS,
                )
                && keep_only(mask, |id| trie.token(id).first() == Some(&b'"'))
            {
                self.pending.string_closed = true;
            }
        } else if let Some(depth) = scan.array_depth() {
            // Mid-item too (a token such as `},{"` finishes one item and starts the next):
            // whatever ends the current item stays allowed, another item does not.
            if looped(&self.out, ITEM_MIN_BYTES, ITEM_MAX_BYTES, ITEM_REPEATS)
                && keep_only(mask, |id| !scan.adds_item(trie.token(id), depth))
            {
                self.pending.list_stopped = true;
            }
        }
    }

    /// Follows a committed token's bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.scan.step(b, self.out.len());
            self.out.push(b);
        }
        self.ends.push(self.out.len());
        self.log.push(std::mem::take(&mut self.pending));
    }

    /// Forgets the last `n` committed tokens.
    pub(crate) fn rollback(&mut self, n: usize) {
        let keep = self.ends.len().saturating_sub(n);
        self.ends.truncate(keep);
        self.log.truncate(keep);
        self.out.truncate(self.ends.last().copied().unwrap_or(0));
        self.pending = Step::default();
        self.scan = Scan::default();
        for (pos, &b) in self.out.iter().enumerate() {
            self.scan.step(b, pos);
        }
    }

    pub(crate) fn counts(&self) -> GuardCounts {
        let mut c = GuardCounts::default();
        let mut last_capped = None;
        let mut last_held = None;
        let mut stopping_list = false;
        for step in &self.log {
            if step.copy_held.is_some() && step.copy_held != last_held {
                c.copies_held += 1;
                last_held = step.copy_held;
            }
            if let Some(start) = step.capped {
                if last_capped != Some(start) {
                    c.numbers_capped += 1;
                    last_capped = Some(start);
                }
            }
            c.loops_stopped += step.string_closed as usize;
            // One list is held back over several positions (the rest of its item, then the
            // close); count it once.
            c.loops_stopped += (step.list_stopped && !stopping_list) as usize;
            stopping_list = step.list_stopped;
        }
        c
    }
}

/// Clears the allowed tokens that fail `keep`, unless that would clear them all. Returns
/// whether anything was cleared.
fn keep_only(mask: &mut SimpleVob, keep: impl Fn(u32) -> bool) -> bool {
    let mut drop = Vec::new();
    let mut kept = 0usize;
    mask.iter_set_entries(|i| {
        if keep(i as u32) {
            kept += 1;
        } else {
            drop.push(i as u32);
        }
    });
    if drop.is_empty() || kept == 0 {
        return false;
    }
    for id in drop {
        mask.disallow_token(id);
    }
    true
}

/// Whether `s` ends in one unit of `min_unit..=max_unit` bytes repeated `repeats` times, over
/// at least [`LOOP_MIN_BYTES`] bytes. The unit is the shortest that repeats: forty `0, ` are
/// a 3-byte unit, not a 9-byte one, whatever `min_unit` says.
pub(crate) fn looped(s: &[u8], min_unit: usize, max_unit: usize, repeats: usize) -> bool {
    let shortest = (1..=max_unit).find(|&unit| {
        let span = (unit * repeats).max(LOOP_MIN_BYTES);
        span <= s.len() && {
            let tail = &s[s.len() - span..];
            (unit..span).all(|i| tail[i] == tail[i - unit])
        }
    });
    shortest.is_some_and(|u| u >= min_unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scan(text: &str) -> Scan {
        let mut s = Scan::default();
        for (i, b) in text.bytes().enumerate() {
            s.step(b, i);
        }
        s
    }

    #[test]
    fn scan_follows_numbers_and_strings() {
        let s = scan(r#"{"total": 12.5"#);
        assert_eq!(s.number, Some((Part::Fractional, 1, 10)));
        let s = scan(r#"{"a": "12.5"#);
        assert!(s.in_string && s.number.is_none());
        let s = scan(r#"{"a": "x\"1"#);
        assert!(s.in_string, "an escaped quote does not end the string");
        let s = scan(r#"{"a": -1.5e+0"#);
        assert_eq!(s.number, Some((Part::Exponent, 1, 6)));
        let s = scan(r#"{"a": 1, "#);
        assert_eq!(s.number, None);
    }

    #[test]
    fn scan_knows_which_array_a_comma_extends() {
        let s = scan(r#"{"items": [{"name": "A", "price": 1.5"#);
        assert_eq!((s.depth, s.array_depth()), (3, Some(2)));
        assert!(!s.adds_item(b", \"n\": 2", 2), "a comma inside the item");
        assert!(s.adds_item(b"}, {", 2), "a comma between items");
        assert!(
            !s.adds_item(b"}], \"total\": 1", 2),
            "a comma after the array closed"
        );
        assert!(!s.adds_item(b"}]", 2));
        let s = scan(r#"{"a": "[x""#);
        assert_eq!(s.array_depth(), None, "brackets in strings do not count");
    }

    #[test]
    fn scan_tells_keys_from_values() {
        let t = r#"{"note": "a:b", "address": "12"#;
        let s = scan(t);
        assert!(s.in_string && s.value_string);
        assert_eq!(
            &t[s.key.0..s.key.1],
            "address",
            "a colon in a string is not a key's"
        );
        let s = scan(r#"{"note": "x", "ad"#);
        assert!(s.in_string && !s.value_string, "a key");
        let t = r#"{"tags": ["a", "b"#;
        let s = scan(t);
        assert!(s.value_string, "an array's item");
        assert_eq!(&t[s.key.0..s.key.1], "tags");
    }

    #[test]
    fn caps_count_each_part() {
        let caps = NumberCaps::DEFAULT;
        let at = |t: &str| (scan(t), t.len());
        let (s, p) = at(&format!("[{}", "7".repeat(15)));
        assert!(!s.exceeds(b"7", p, &caps), "16 integral digits are fine");
        assert!(s.exceeds(b"77", p, &caps), "17 are not");
        assert!(
            !s.exceeds(b".5", p, &caps),
            "a new part starts its own count"
        );
        let (s, p) = at(&format!("[1.{}", "0".repeat(16)));
        assert!(s.exceeds(b"0", p, &caps));
        assert!(!s.exceeds(b"]", p, &caps));
    }

    #[test]
    fn schema_limits_win() {
        assert_eq!(
            NumberCaps::for_schema(&json!({"type": "number"})),
            NumberCaps::DEFAULT
        );
        let big = json!({"properties": {"n": {"type": "integer", "maximum": 1e20}}});
        assert_eq!(NumberCaps::for_schema(&big).integral, None);
        assert_eq!(NumberCaps::for_schema(&big).fractional, Some(16));
        let fine = json!({"items": [{"type": "number", "multipleOf": 1e-20}]});
        assert_eq!(NumberCaps::for_schema(&fine).fractional, None);
    }

    #[test]
    fn loops_need_repeats_and_length() {
        let string = |s: &[u8]| looped(s, 1, LOOP_MAX_UNIT, LOOP_REPEATS);
        assert!(string(
            b"12 JALAN GUEST CHECK GUEST CHECK GUEST CHECK GUEST CHECK "
        ));
        assert!(
            !string(b"GUEST CHECK GUEST CHECK GUEST CHECK "),
            "three repeats"
        );
        assert!(!string(b"1111111111"), "too short to call a loop");
        assert!(string("7".repeat(40).as_bytes()));
        assert!(!string(
            b"NO. 12, JALAN PERMAS 10/7, BANDAR BARU PERMAS JAYA, 81750 JOHOR"
        ));

        let items = |s: &str| looped(s.as_bytes(), ITEM_MIN_BYTES, ITEM_MAX_BYTES, ITEM_REPEATS);
        let item = r#"{"name": "TEA", "price": 1.5}"#;
        let list = |n: usize| format!("{{\"items\": [{}", vec![item; n].join(", "));
        assert!(
            !items(&list(5)),
            "five identical items can be a real receipt"
        );
        assert!(items(&list(7)));
        let zeros = format!("[{}", vec!["0"; 40].join(", "));
        assert!(!items(&zeros), "short scalars are not");
    }

    #[test]
    fn rollback_forgets_steps() {
        let mut g = RambleGuard::new(NumberCaps::DEFAULT);
        g.push(b"[1");
        g.pending.capped = Some(1);
        g.push(b"2");
        assert_eq!(g.counts().numbers_capped, 1);
        g.rollback(1);
        assert_eq!(g.counts(), GuardCounts::default());
        assert_eq!(g.scan, scan("[1"));
    }
}
