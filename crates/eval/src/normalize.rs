//! Normalisers: when do two printed values mean the same thing?
//!
//! A model that answers "RM 9.00" where the truth says 9 has read the receipt correctly; a metric
//! that calls it wrong measures formatting, not extraction. Each field picks the normaliser that
//! matches what "the same" means for it; the report shows exact and normalised scores side by
//! side, so formatting slips stay visible without hiding real reading errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a field is compared. Deserialises from lowercase names (`"case"`, `"number"`, …) so a
/// task config can say `total = "number"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalizer {
    /// JSON equality, except that numbers compare by value (`9` equals `9.0`).
    Exact,
    /// Runs of whitespace collapse to one space; ends trimmed.
    Whitespace,
    /// `Whitespace` plus case-insensitive (Unicode lowercase).
    Case,
    /// Only letters and digits survive, case-insensitive: "Main St." = "MAIN ST".
    Alnum,
    /// Parsed as a decimal ("RM 9.00", "$1,234.50", "1.234,50", "(5.00)") and compared within the
    /// config's tolerance (half a cent by default).
    Number,
    /// Parsed as a calendar date in many printed formats; compared as dates.
    Date,
    /// Date plus time of day to the minute (seconds only when both sides have them).
    Datetime,
    /// Not scored: for fields that are informative but not part of the task.
    #[serde(alias = "ignore")]
    None,
}

impl Normalizer {
    /// Whether `pred` and `truth` are equal under this normaliser. Values that cannot be parsed
    /// (a number field holding "N/A") fall back to `Whitespace` equality, so two identical
    /// non-numbers still match and a non-number never matches a number.
    pub fn equal(self, pred: &Value, truth: &Value, tolerance: f64) -> bool {
        match self {
            Normalizer::None => true,
            Normalizer::Exact => json_equal(pred, truth),
            Normalizer::Whitespace => collapse(&text(pred)) == collapse(&text(truth)),
            Normalizer::Case => fold_case(&text(pred)) == fold_case(&text(truth)),
            Normalizer::Alnum => alnum(&text(pred)) == alnum(&text(truth)),
            Normalizer::Number => match (number(pred), number(truth)) {
                (Some(a), Some(b)) => (a - b).abs() <= tolerance + 1e-9,
                (None, None) => Normalizer::Whitespace.equal(pred, truth, tolerance),
                _ => false,
            },
            Normalizer::Date => match (parse_date(&text(pred)), parse_date(&text(truth))) {
                (a, b) if !a.is_empty() && !b.is_empty() => a.iter().any(|d| b.contains(d)),
                (a, b) if a.is_empty() && b.is_empty() => {
                    Normalizer::Whitespace.equal(pred, truth, tolerance)
                }
                _ => false,
            },
            Normalizer::Datetime => {
                match (parse_datetime(&text(pred)), parse_datetime(&text(truth))) {
                    (a, b) if !a.is_empty() && !b.is_empty() => {
                        a.iter().any(|x| b.iter().any(|y| x.same_moment(y)))
                    }
                    (a, b) if a.is_empty() && b.is_empty() => {
                        Normalizer::Whitespace.equal(pred, truth, tolerance)
                    }
                    _ => false,
                }
            }
        }
    }

    /// The canonical form this normaliser compares (for display and for spotting duplicates);
    /// `None` when the value does not parse.
    pub fn canonical(self, v: &Value) -> Option<String> {
        match self {
            Normalizer::None | Normalizer::Exact => Some(v.to_string()),
            Normalizer::Whitespace => Some(collapse(&text(v))),
            Normalizer::Case => Some(fold_case(&text(v))),
            Normalizer::Alnum => Some(alnum(&text(v))),
            Normalizer::Number => number(v).map(|x| format!("{x:.2}")),
            Normalizer::Date => parse_date(&text(v)).first().map(|d| d.iso()),
            Normalizer::Datetime => parse_datetime(&text(v)).first().map(|d| d.iso()),
        }
    }
}

/// A scalar's text: strings as they are, numbers and booleans as JSON writes them, null as "".
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// JSON equality with numbers compared by value, recursively.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Collapses whitespace runs (any Unicode whitespace) to one space and trims.
pub fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fold_case(s: &str) -> String {
    collapse(&s.to_lowercase())
}

fn alnum(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// Parses a printed amount: currency symbols and codes around the digits are ignored, `,` and
/// `.` are told apart as thousands or decimal separators, and `-5`, `(5.00)` and `5.00-` are
/// negative. Anything else inside the digits (letters, colons, a second decimal point) is not a
/// number, so "12:30" and "1.2.3" give `None` rather than a wrong value.
///
/// Ambiguity rule: one `,` followed by exactly three digits is a thousands separator ("1,234"),
/// as on receipts in most of the world; one `.` is always a decimal point ("1.234" = 1.234).
pub fn parse_number(s: &str) -> Option<f64> {
    let chars: Vec<char> = s.trim().chars().collect();
    let first = chars.iter().position(|c| c.is_ascii_digit())?;
    let last = chars.iter().rposition(|c| c.is_ascii_digit())?;
    // A separator right before the first digit belongs to the number (".50").
    let start = if first > 0 && matches!(chars[first - 1], '.' | ',') {
        first - 1
    } else {
        first
    };
    let (prefix, core, suffix) = (&chars[..start], &chars[start..=last], &chars[last + 1..]);
    let outside_ok =
        |c: &char| c.is_alphabetic() || c.is_whitespace() || "$£€¥₹₩+-()%.:".contains(*c);
    if !prefix.iter().all(outside_ok) || !suffix.iter().all(outside_ok) {
        return None;
    }
    if prefix
        .iter()
        .chain(suffix)
        .filter(|c| c.is_alphabetic())
        .count()
        > 4
    {
        return None; // "twelve 3" is not an amount
    }
    let negative = prefix.contains(&'-')
        || suffix.first() == Some(&'-')
        || (prefix.contains(&'(') && suffix.contains(&')'));
    // Digits and separators only; spaces and apostrophes may group thousands.
    let mut seps: Vec<(usize, char)> = Vec::new(); // (digit count before it, separator)
    let mut digits = String::new();
    for &c in core {
        match c {
            '0'..='9' => digits.push(c),
            '.' | ',' => seps.push((digits.len(), c)),
            ' ' | '\u{a0}' | '\u{202f}' | '\'' => seps.push((digits.len(), ' ')),
            _ => return None,
        }
    }
    // Decide which separator is decimal.
    let kinds: Vec<char> = {
        let mut k: Vec<char> = seps.iter().map(|s| s.1).filter(|&c| c != ' ').collect();
        k.dedup();
        k
    };
    let decimal: Option<char> = match kinds.as_slice() {
        [] => None,
        [only] => {
            let count = seps.iter().filter(|s| s.1 == *only).count();
            let (pos, _) = *seps.iter().rfind(|s| s.1 == *only).unwrap();
            let after = digits.len() - pos;
            let lead = &digits[..seps.iter().find(|s| s.1 == *only).unwrap().0];
            if count > 1
                || (*only == ',' && after == 3 && !lead.is_empty() && !lead.starts_with('0'))
            {
                None // 1,234,567 or 1.234.567; 1,234
            } else {
                Some(*only)
            }
        }
        _ => {
            // Both present: the last one is the decimal separator, and it occurs once.
            let last = seps.iter().rev().find(|s| s.1 != ' ').unwrap().1;
            if seps.iter().filter(|s| s.1 == last).count() > 1 {
                return None;
            }
            Some(last)
        }
    };
    // Validate grouping: every thousands separator is followed by a group of exactly 3 digits
    // up to the next separator (or the decimal point / end), and the lead group has 1–3 digits.
    let dec_pos = decimal.and_then(|d| seps.iter().find(|s| s.1 == d).map(|s| s.0));
    let int_end = dec_pos.unwrap_or(digits.len());
    let groups: Vec<usize> = seps
        .iter()
        .filter(|s| Some(s.1) != decimal && s.0 <= int_end)
        .map(|s| s.0)
        .collect();
    if seps.iter().any(|s| Some(s.1) != decimal && s.0 > int_end) {
        return None; // a thousands separator after the decimal point
    }
    if !groups.is_empty() {
        let mut bounds = groups.clone();
        bounds.push(int_end);
        if bounds[0] == 0 || bounds[0] > 3 || bounds.windows(2).any(|w| w[1] - w[0] != 3) {
            return None;
        }
    }
    let (int, frac) = digits.split_at(int_end);
    let value: f64 = format!(
        "{}.{}",
        if int.is_empty() { "0" } else { int },
        if frac.is_empty() { "0" } else { frac }
    )
    .parse()
    .ok()?;
    Some(if negative { -value } else { value })
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub y: i32,
    pub m: u32,
    pub d: u32,
}

impl Date {
    pub fn iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.y, self.m, self.d)
    }
    fn new(y: i32, m: u32, d: u32) -> Option<Date> {
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        ((1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1] && (1000..=9999).contains(&y))
            .then_some(Date { y, m, d })
    }
}

/// A date with a time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hh: u32,
    pub mm: u32,
    pub ss: Option<u32>,
}

impl DateTime {
    pub fn iso(&self) -> String {
        match self.ss {
            Some(s) => format!("{}T{:02}:{:02}:{:02}", self.date.iso(), self.hh, self.mm, s),
            None => format!("{}T{:02}:{:02}", self.date.iso(), self.hh, self.mm),
        }
    }
    fn same_moment(&self, o: &DateTime) -> bool {
        self.date == o.date
            && self.hh == o.hh
            && self.mm == o.mm
            && match (self.ss, o.ss) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month_of(word: &str) -> Option<u32> {
    let w = word.to_lowercase();
    // German and Malay spellings that differ in the first three letters.
    let w = match w.as_str() {
        "mär" | "märz" | "maerz" | "mac" => "mar".to_string(),
        "mai" | "mei" => "may".to_string(),
        "okt" | "oktober" => "oct".to_string(),
        "dez" | "dezember" | "dis" | "disember" => "dec".to_string(),
        "ogos" => "aug".to_string(),
        "julai" => "jul".to_string(),
        "jun" | "juni" => "jun".to_string(),
        "januari" | "januar" | "jänner" => "jan".to_string(),
        "februari" | "februar" => "feb".to_string(),
        _ => w,
    };
    if w.chars().count() < 3 {
        return None;
    }
    let prefix: String = w.chars().take(3).collect();
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "sept",
        "october",
        "november",
        "december",
    ];
    let i = MONTHS.iter().position(|m| *m == prefix)?;
    // The word must be the abbreviation or a prefix of the full name ("sept", "nov."), not any
    // word that happens to start with three month letters ("mayor", "decor").
    let ok = w.len() == 3 || full.iter().any(|f| f.starts_with(w.as_str()));
    ok.then_some(i as u32 + 1)
}

fn year_of(tok: &str) -> Option<i32> {
    let n: i32 = tok.parse().ok()?;
    match tok.len() {
        4 => Some(n),
        2 => Some(if n < 70 { 2000 + n } else { 1900 + n }),
        _ => None,
    }
}

/// Splits a time of day ("14:02", "2:02 PM", "14:02:11", "2.02pm", "14h02") out of `s`, returning
/// it and the rest of the text.
/// Hours, minutes and seconds when printed.
type Hms = (u32, u32, Option<u32>);

fn split_time(s: &str) -> Option<(Hms, String)> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let num = |mut j: usize| {
            let start = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            (b[start..j].iter().collect::<String>(), j)
        };
        let (h, j) = num(i);
        if h.len() <= 2
            && j + 1 < b.len()
            && matches!(b[j], ':' | 'h' | 'H' | '.')
            && b[j + 1].is_ascii_digit()
        {
            let (m, k) = num(j + 1);
            // "12.50" alone is a price or a date part, so '.' needs an am/pm after it.
            let mut end = k;
            let mut sec = None;
            if m.len() == 2
                && b[j] != '.'
                && k + 1 < b.len()
                && b[k] == ':'
                && b[k + 1].is_ascii_digit()
            {
                let (s2, e) = num(k + 1);
                if s2.len() == 2 {
                    sec = s2.parse().ok();
                    end = e;
                }
            }
            let rest: String = b[end..].iter().collect();
            let trimmed = rest.trim_start().to_lowercase();
            let ampm = if trimmed.starts_with("am") || trimmed.starts_with("a.m.") {
                Some(false)
            } else if trimmed.starts_with("pm") || trimmed.starts_with("p.m.") {
                Some(true)
            } else {
                None
            };
            let next_is_digit_sep = end < b.len()
                && matches!(b[end], '.' | '/' | '-')
                && end + 1 < b.len()
                && b[end + 1].is_ascii_digit();
            if m.len() == 2 && (b[j] != '.' || ampm.is_some()) && !next_is_digit_sep {
                let (mut hh, mm): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
                if let Some(pm) = ampm {
                    if !(1..=12).contains(&hh) {
                        return None;
                    }
                    hh = match (pm, hh) {
                        (false, 12) => 0,
                        (true, 12) => 12,
                        (true, h) => h + 12,
                        (false, h) => h,
                    };
                    end += rest.len() - rest.trim_start().len()
                        + if trimmed.starts_with("a.m.") || trimmed.starts_with("p.m.") {
                            4
                        } else {
                            2
                        };
                }
                if hh > 23 || mm > 59 || sec.is_some_and(|s| s > 59) {
                    return None;
                }
                let mut remaining: String = b[..i].iter().collect();
                remaining.push(' ');
                remaining.extend(&b[end.min(b.len())..]);
                return Some(((hh, mm, sec), remaining));
            }
        }
        i = j.max(i + 1);
    }
    None
}

/// All dates `s` can mean, most likely first; empty if it is not a date. "03/04/2020" is both
/// 3 April and March 4 — comparison asks whether the two sides share a reading, so an ambiguous
/// print never counts against a correct ISO answer.
pub fn parse_date(s: &str) -> Vec<Date> {
    // An ISO datetime's 'T' must not glue date and time together.
    let s = iso_t_to_space(s);
    let rest = match split_time(&s) {
        Some((_, rest)) => rest,
        None => s,
    };
    dates_in(&rest)
}

fn iso_t_to_space(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    b.iter()
        .enumerate()
        .map(|(i, &c)| {
            let between_digits =
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
            if (c == 'T' || c == 't') && between_digits {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn dates_in(s: &str) -> Vec<Date> {
    // Tokens: digit runs and letter runs; everything else separates.
    let mut toks: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        let same_kind = cur
            .chars()
            .last()
            .is_some_and(|p| p.is_ascii_digit() == c.is_ascii_digit());
        if c.is_alphanumeric() && (cur.is_empty() || same_kind) {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                toks.push(std::mem::take(&mut cur));
            }
            if c.is_alphanumeric() {
                cur.push(c);
            }
        }
    }
    if !cur.is_empty() {
        toks.push(cur);
    }
    let nums: Vec<&String> = toks
        .iter()
        .filter(|t| t.chars().all(|c| c.is_ascii_digit()))
        .collect();
    let month_word = toks.iter().find_map(|t| month_of(t));
    let mut out = Vec::new();
    let mut push = |d: Option<Date>| {
        if let Some(d) = d {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    };
    match (month_word, nums.as_slice()) {
        (Some(m), [a, b]) => {
            // "29 Nov 2020", "Nov 29, 2020", "2020 Nov 29"
            if let (Ok(d), Some(y)) = (a.parse::<u32>(), year_of(b)) {
                if a.len() <= 2 {
                    push(Date::new(y, m, d));
                }
            }
            if let (Some(y), Ok(d)) = (year_of(a), b.parse::<u32>()) {
                if a.len() == 4 && b.len() <= 2 {
                    push(Date::new(y, m, d));
                }
            }
        }
        (None, [one]) if one.len() == 8 => {
            // 20201129
            let (y, m, d) = (
                one[..4].parse().ok(),
                one[4..6].parse().ok(),
                one[6..].parse().ok(),
            );
            if let (Some(y), Some(m), Some(d)) = (y, m, d) {
                push(Date::new(y, m, d));
            }
        }
        (None, [a, b, c]) => {
            let p = |t: &str| t.parse::<u32>().ok();
            if a.len() == 4 {
                if let (Some(y), Some(m), Some(d)) = (year_of(a), p(b), p(c)) {
                    push(Date::new(y, m, d));
                }
            } else if a.len() <= 2 && b.len() <= 2 {
                if let (Some(x), Some(y2), Some(y)) = (p(a), p(b), year_of(c)) {
                    push(Date::new(y, y2, x)); // day first (most of the world)
                    push(Date::new(y, x, y2)); // month first (US)
                }
            }
        }
        _ => {}
    }
    out
}

/// All date-times `s` can mean (see [`parse_date`]); empty if it has no date or no time.
pub fn parse_datetime(s: &str) -> Vec<DateTime> {
    let s = iso_t_to_space(s);
    let Some(((hh, mm, ss), rest)) = split_time(&s) else {
        return vec![];
    };
    dates_in(&rest)
        .into_iter()
        .map(|date| DateTime { date, hh, mm, ss })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use Normalizer::*;

    fn eq(n: Normalizer, a: Value, b: Value) -> bool {
        n.equal(&a, &b, 0.005)
    }

    #[test]
    fn exact_compares_numbers_by_value_but_not_types() {
        assert!(eq(Exact, json!(9), json!(9.0)));
        assert!(!eq(Exact, json!("9"), json!(9)));
        assert!(!eq(Exact, json!("a "), json!("a")));
        assert!(eq(Exact, json!({"a": [1, 2.0]}), json!({"a": [1.0, 2]})));
        assert!(!eq(Exact, json!({"a": 1}), json!({"a": 1, "b": 2})));
        assert!(eq(Exact, json!(null), json!(null)));
    }

    #[test]
    fn whitespace_case_alnum() {
        assert!(eq(Whitespace, json!("  Main\t St \n"), json!("Main St")));
        assert!(!eq(Whitespace, json!("main st"), json!("Main St")));
        assert!(eq(Whitespace, json!("a\u{a0}b"), json!("a b")));
        assert!(eq(
            Case,
            json!("FRESHWAY  GROCERS"),
            json!("FreshWay Grocers")
        ));
        assert!(eq(Case, json!("STRASSE"), json!("strasse")));
        assert!(eq(Case, json!("ÄPFEL"), json!("äpfel")));
        assert!(!eq(Case, json!("Main St."), json!("Main St")));
        assert!(eq(Alnum, json!("Main St."), json!("MAIN ST")));
        assert!(eq(Alnum, json!("K1A-0B1"), json!("k1a 0b1")));
        assert!(!eq(Alnum, json!("K1A 0B2"), json!("K1A 0B1")));
        // Non-strings compare by their JSON text; null is empty.
        assert!(eq(Whitespace, json!(62704), json!("62704")));
        assert!(eq(Case, json!(null), json!("")));
        assert!(!eq(Case, json!(null), json!("x")));
    }

    #[test]
    fn numbers_in_many_printings() {
        let n = |s: &str| parse_number(s);
        assert_eq!(n("RM 9.00"), Some(9.0));
        assert_eq!(n("RM9.00"), Some(9.0));
        assert_eq!(n("$1,234.50"), Some(1234.5));
        assert_eq!(n("9"), Some(9.0));
        assert_eq!(n("9.0"), Some(9.0));
        assert_eq!(n("1.234,50"), Some(1234.5));
        assert_eq!(n("1.234.567,89 €"), Some(1234567.89));
        assert_eq!(n("1 234,50 EUR"), Some(1234.5));
        assert_eq!(n("1'234.50"), Some(1234.5));
        assert_eq!(n("12,34"), Some(12.34));
        assert_eq!(n("0,452"), Some(0.452));
        assert_eq!(n("1,234"), Some(1234.0));
        assert_eq!(n("1.234"), Some(1.234));
        assert_eq!(n("1,234,567"), Some(1234567.0));
        assert_eq!(n(".50"), Some(0.5));
        assert_eq!(n("-$5.00"), Some(-5.0));
        assert_eq!(n("$-5.00"), Some(-5.0));
        assert_eq!(n("(5.00)"), Some(-5.0));
        assert_eq!(n("5.00-"), Some(-5.0));
        assert_eq!(n("USD 12"), Some(12.0));
        assert_eq!(n("£0.99"), Some(0.99));
    }

    #[test]
    fn numbers_adversarial() {
        let n = |s: &str| parse_number(s);
        assert_eq!(n(""), Option::None);
        assert_eq!(n("N/A"), Option::None);
        assert_eq!(n("free"), Option::None);
        assert_eq!(n("12:30"), Option::None);
        assert_eq!(n("1.2.3"), Option::None);
        assert_eq!(n("1,23,4"), Option::None);
        assert_eq!(n("12a3"), Option::None);
        assert_eq!(n("1e3"), Option::None);
        assert_eq!(n("1.234,5.6"), Option::None);
        assert_eq!(n("12,345.6,7"), Option::None);
        assert_eq!(n("1234,567,89"), Option::None);
        assert_eq!(n("2020-11-29"), Option::None);
        assert_eq!(n("twelve dollars 3"), Option::None);
        assert_eq!(n("12.00 #"), Option::None);
    }

    #[test]
    fn number_comparison_tolerance_and_fallback() {
        assert!(eq(Number, json!("RM 9.00"), json!(9)));
        assert!(eq(Number, json!(12.345), json!(12.34)));
        assert!(!eq(Number, json!(12.36), json!(12.34)));
        assert!(Number.equal(&json!(12.36), &json!(12.34), 0.05));
        assert!(!eq(Number, json!("N/A"), json!(9)));
        assert!(eq(Number, json!("n/a "), json!("n/a")));
        assert!(eq(Number, json!(null), json!(null)));
        assert!(!eq(Number, json!(true), json!(1)));
        assert_eq!(Number.canonical(&json!("$1,234.5")), Some("1234.50".into()));
    }

    #[test]
    fn dates_in_many_printings() {
        let iso = |s: &str| parse_date(s).iter().map(|d| d.iso()).collect::<Vec<_>>();
        assert_eq!(iso("2020-11-29"), ["2020-11-29"]);
        assert_eq!(iso("29 Nov 2020 14:02"), ["2020-11-29"]);
        assert_eq!(iso("Nov 29, 2020 2:02 PM"), ["2020-11-29"]);
        assert_eq!(iso("Sun Nov 29 2020 2:02pm"), ["2020-11-29"]);
        assert_eq!(iso("29.11.2020"), ["2020-11-29"]);
        assert_eq!(iso("11/29/2020 02:02 PM"), ["2020-11-29"]);
        assert_eq!(iso("29-11-20 14:02"), ["2020-11-29"]);
        assert_eq!(iso("2020.11.29 14:02:11"), ["2020-11-29"]);
        assert_eq!(iso("2020-11-29T14:02:11"), ["2020-11-29"]);
        assert_eq!(iso("DATE: 29/11/2020  TIME: 14:02:11"), ["2020-11-29"]);
        assert_eq!(iso("20201129"), ["2020-11-29"]);
        assert_eq!(iso("29. März 2020"), ["2020-03-29"]);
        assert_eq!(iso("3 Sept 2019"), ["2019-09-03"]);
        assert_eq!(iso("03/04/2020"), ["2020-04-03", "2020-03-04"]);
    }

    #[test]
    fn dates_adversarial() {
        assert!(parse_date("").is_empty());
        assert!(parse_date("31/02/2020").is_empty());
        assert!(parse_date("2019-02-29").is_empty());
        assert_eq!(parse_date("2020-02-29").len(), 1);
        assert!(parse_date("13/13/2020").is_empty());
        assert!(parse_date("12.50").is_empty());
        assert!(parse_date("mayor 12 2020").is_empty());
        assert!(parse_date("total 12 items").is_empty());
        assert!(parse_date("1/2/3/4").is_empty());
    }

    #[test]
    fn date_comparison_uses_shared_readings() {
        assert!(eq(Date, json!("03/04/2020"), json!("2020-04-03")));
        assert!(eq(Date, json!("03/04/2020"), json!("2020-03-04")));
        assert!(!eq(Date, json!("13/04/2020"), json!("2020-04-14")));
        assert!(eq(Date, json!("2020-11-29T14:02"), json!("29 Nov 2020")));
        assert!(!eq(Date, json!("garbage"), json!("2020-11-29")));
        assert!(eq(Date, json!("garbage"), json!("garbage ")));
    }

    #[test]
    fn datetimes() {
        let iso = |s: &str| {
            parse_datetime(s)
                .iter()
                .map(|d| d.iso())
                .collect::<Vec<_>>()
        };
        assert_eq!(iso("11/29/2020 02:02 PM"), ["2020-11-29T14:02"]);
        assert_eq!(iso("11/29/2020 12:05 AM"), ["2020-11-29T00:05"]);
        assert_eq!(iso("11/29/2020 12:05 pm"), ["2020-11-29T12:05"]);
        assert_eq!(iso("2020-11-29T14:02:11"), ["2020-11-29T14:02:11"]);
        assert_eq!(iso("29.11.20  14:02:11 Uhr"), ["2020-11-29T14:02:11"]);
        assert_eq!(iso("Sun Nov 29 2020 2:02pm"), ["2020-11-29T14:02"]);
        assert_eq!(iso("14h02 29/11/2020"), ["2020-11-29T14:02"]);
        assert!(parse_datetime("2020-11-29").is_empty());
        assert!(parse_datetime("2020-11-29 25:00").is_empty());
        assert!(parse_datetime("2020-11-29 13:00 PM").is_empty());
        assert!(eq(
            Datetime,
            json!("29 Nov 2020 14:02"),
            json!("2020-11-29T14:02")
        ));
        assert!(eq(
            Datetime,
            json!("2020-11-29 14:02:59"),
            json!("2020-11-29T14:02")
        ));
        assert!(!eq(
            Datetime,
            json!("2020-11-29 14:03"),
            json!("2020-11-29T14:02")
        ));
        assert!(!eq(
            Datetime,
            json!("2020-11-29 14:02:10"),
            json!("2020-11-29T14:02:11")
        ));
        assert!(!eq(
            Datetime,
            json!("2020-11-29"),
            json!("2020-11-29T14:02")
        ));
    }

    #[test]
    fn none_ignores_and_deserialises() {
        assert!(eq(None, json!(1), json!("x")));
        let n: Normalizer = serde_json::from_str("\"ignore\"").unwrap();
        assert_eq!(n, None);
        let n: Normalizer = serde_json::from_str("\"datetime\"").unwrap();
        assert_eq!(n, Datetime);
        assert!(serde_json::from_str::<Normalizer>("\"fuzzy\"").is_err());
    }
}
