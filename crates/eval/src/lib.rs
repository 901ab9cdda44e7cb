//! smolt-eval: field-by-field comparison of structured outputs with the truth, and the reports.
//!
//! The flow: [`Evaluator::add`] each model output with its truth (and optional input and timing)
//! → [`Evaluator::finish`] gives an [`EvalReport`] → [`EvalReport::write_dir`] writes
//! `eval.json`, `report.html` and `report.txt`; [`compare()`] sets two reports side by side.
//!
//! Scoring rules, in one place:
//! - Output that does not parse as JSON is invalid: every field counts as missing, and the raw
//!   text is kept for the report.
//! - Scalars are compared exactly and after their field's [`Normalizer`]; nested objects become
//!   dotted paths (`payment.method`).
//! - Lists are matched order-insensitively by optimal assignment on item similarity; sub-fields
//!   and whole items get precision/recall/F1. Duplicated and extra items cost precision.
//! - A record matches when every field is normalised-equal and every list item is found exactly
//!   once. Extra keys are reported but do not break a match.
//!
//! Function calls are scored by their own rules, the Berkeley Function Calling Leaderboard's:
//! [`tool_calls`].

pub mod calibration;
pub mod compare;
pub mod errors;
pub mod normalize;
pub mod render;
pub mod report;
pub mod tool_calls;
pub mod versus;

pub use calibration::{Calibration, CurvePoint, Routing};
pub use compare::{
    compare_record, parse_output, Decoding, EvalConfig, FieldResult, ListResult, RecordResult,
    Sample, Status, Timing,
};
pub use errors::{ErrorKind, FieldErrors};
pub use normalize::{parse_date, parse_datetime, parse_number, Normalizer};
pub use report::{
    aggregate, evaluate, write_predictions, DecodingStats, EvalReport, Evaluator, FieldKind,
    FieldStats, LatencyStats, ListStats, WorstRecord,
};
pub use versus::{compare, Comparison, Delta};

#[cfg(test)]
mod tests;
