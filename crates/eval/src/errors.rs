//! Why fields are wrong: each error put in one kind, per field, so the lever that would fix
//! the most is visible (a model that gets the text right but the spacing wrong needs label
//! conventions, not more capacity; a truth that is not in the input cannot be copied at all).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compare::{EvalConfig, FieldResult, RecordResult, Status};
use crate::normalize::{parse_date, parse_number, Normalizer};

/// The kind of one wrong field, the first that applies in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The answer hit the token limit unfinished, so the field is missing or cut.
    Truncated,
    /// Absent from a finished answer (or the answer was not JSON).
    Missing,
    /// Present but not a value of the field's kind: a number field that does not parse as a
    /// number, a date that is not a date, an object where a scalar belongs.
    Format,
    /// The same letters and digits as the truth; only spaces, punctuation or case differ.
    SpacingPunctuation,
    /// The truth's letters and digits do not occur in the input: no copy could be right.
    NotInInput,
    /// The prediction is copied from the input, but from the wrong place.
    WrongSpan,
    /// Anything else: a misread or made-up value.
    WrongValue,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Truncated,
        ErrorKind::Missing,
        ErrorKind::Format,
        ErrorKind::SpacingPunctuation,
        ErrorKind::NotInInput,
        ErrorKind::WrongSpan,
        ErrorKind::WrongValue,
    ];

    /// The column title in reports.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::Missing => "missing",
            ErrorKind::Format => "format",
            ErrorKind::SpacingPunctuation => "spacing/punct.",
            ErrorKind::NotInInput => "not in input",
            ErrorKind::WrongSpan => "wrong span",
            ErrorKind::WrongValue => "wrong value",
        }
    }
}

/// One wrong field, as an example next to its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorExample {
    pub record: usize,
    pub truth: Option<Value>,
    pub pred: Option<Value>,
}

/// The errors of one field, by kind, with a few examples of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldErrors {
    pub key: String,
    pub counts: BTreeMap<ErrorKind, usize>,
    pub examples: BTreeMap<ErrorKind, Vec<ErrorExample>>,
}

impl FieldErrors {
    pub fn count(&self, kind: ErrorKind) -> usize {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

/// Examples kept per field and kind.
const EXAMPLES: usize = 3;

/// Letters and digits only, lower-cased: what survives every spacing and punctuation
/// convention.
fn alnum(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The kind of a wrong field `f` of record `r`; `None` for a correct or extra field.
pub fn classify(cfg: &EvalConfig, r: &RecordResult, f: &FieldResult) -> Option<ErrorKind> {
    if f.status.is_correct() || f.status == Status::Extra {
        return None;
    }
    let truth = f.truth.as_ref()?;
    let truncated = r.decoding.is_some_and(|d| d.truncated);
    let Some(pred) = f.pred.as_ref().filter(|_| f.status != Status::Missing) else {
        return Some(if truncated {
            ErrorKind::Truncated
        } else {
            ErrorKind::Missing
        });
    };
    if f.status == Status::WrongType {
        return Some(ErrorKind::Format);
    }
    let pred_text = as_text(pred);
    let malformed = match cfg.normalizer(&f.key, truth) {
        Normalizer::Number => parse_number(&pred_text).is_none() && !pred.is_number(),
        Normalizer::Date | Normalizer::Datetime => parse_date(&pred_text).is_empty(),
        _ => false,
    };
    if malformed {
        return Some(ErrorKind::Format);
    }
    let (t, p) = (alnum(&as_text(truth)), alnum(&pred_text));
    if !t.is_empty() && t == p {
        return Some(ErrorKind::SpacingPunctuation);
    }
    // Copying is judged on text truths only: a number or date is printed in the input in
    // some other form ("9.00" for 9), so "not in the input" would mean nothing for them.
    if truth.is_string()
        && matches!(
            cfg.normalizer(&f.key, truth),
            Normalizer::Whitespace | Normalizer::Case | Normalizer::Alnum | Normalizer::Exact
        )
    {
        if let Some(input) = r.input.as_deref().map(alnum) {
            if !input.contains(&t) {
                return Some(ErrorKind::NotInInput);
            }
            if !p.is_empty() && input.contains(&p) {
                return Some(ErrorKind::WrongSpan);
            }
        }
    }
    if truncated {
        return Some(ErrorKind::Truncated);
    }
    Some(ErrorKind::WrongValue)
}

/// Every field's errors over `records`, fields in first-seen order (only fields with errors).
pub fn field_errors(cfg: &EvalConfig, records: &[RecordResult]) -> Vec<FieldErrors> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: BTreeMap<String, FieldErrors> = BTreeMap::new();
    for r in records {
        for f in &r.fields {
            let Some(kind) = classify(cfg, r, f) else {
                continue;
            };
            let e = by_key.entry(f.key.clone()).or_insert_with(|| {
                order.push(f.key.clone());
                FieldErrors {
                    key: f.key.clone(),
                    counts: BTreeMap::new(),
                    examples: BTreeMap::new(),
                }
            });
            *e.counts.entry(kind).or_default() += 1;
            let ex = e.examples.entry(kind).or_default();
            if ex.len() < EXAMPLES {
                ex.push(ErrorExample {
                    record: r.index,
                    truth: f.truth.clone(),
                    pred: f.pred.clone(),
                });
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect()
}
