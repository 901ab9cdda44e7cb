//! Aggregation of record results into an [`EvalReport`], the one artefact every output
//! (eval.json, terminal table, HTML) is rendered from.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compare::{compare_record, EvalConfig, FieldResult, RecordResult, Sample, Status};
use crate::errors::{field_errors, FieldErrors};

/// Scalar field or list-item sub-field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Scalar,
    ListItem,
}

/// Scores of one field over the whole set.
///
/// For scalars, `exact_rate`/`normalized_rate` are accuracies over the records whose truth has
/// the field. For list sub-fields they are F1 scores over matched items (`n` truth items,
/// `predicted` predicted items), since accuracy means nothing when the counts differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    pub key: String,
    pub kind: FieldKind,
    /// Truth occurrences.
    pub n: usize,
    /// Predicted occurrences (list sub-fields: predicted items; scalars: present in the output).
    pub predicted: usize,
    pub exact: usize,
    pub normalized: usize,
    pub missing: usize,
    pub wrong_type: usize,
    pub exact_rate: f64,
    pub normalized_rate: f64,
}

/// Item-level scores of one list: an item counts as found when matched and fully correct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListStats {
    pub key: String,
    pub truth_items: usize,
    pub pred_items: usize,
    pub correct_items: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub duplicates: usize,
    /// Records whose truth list is non-empty but whose prediction had none.
    pub empty_predictions: usize,
    /// Records whose prediction held a non-array here.
    pub wrong_type: usize,
}

/// Latency and throughput, from the caller's per-record timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub n: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Generated tokens over generation time, summed over records.
    pub tokens_per_s: f64,
    /// Equal-width bins: (lower edge ms, upper edge ms, count).
    pub histogram: Vec<(f64, f64, usize)>,
}

/// A badly scored record, kept whole for side-by-side display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstRecord {
    pub index: usize,
    pub score: f64,
    pub valid_json: bool,
    pub raw: String,
    pub input: Option<String>,
    pub truth: Value,
    pub prediction: Option<Value>,
    /// Every compared field, correct ones included, so the display can show context.
    pub fields: Vec<FieldResult>,
}

impl WorstRecord {
    /// The fields that differ.
    pub fn diffs(&self) -> impl Iterator<Item = &FieldResult> {
        self.fields.iter().filter(|f| !f.status.is_correct())
    }
}

/// The evaluation of one model on one set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// What was evaluated ("gemma-3-270m few-shot", "fine-tuned step 800").
    pub label: String,
    pub n_records: usize,
    pub n_valid: usize,
    pub validity_rate: f64,
    pub record_match_rate: f64,
    /// Mean of the per-record scores (share of fields right): the single number to watch.
    pub mean_score: f64,
    pub fields: Vec<FieldStats>,
    pub lists: Vec<ListStats>,
    /// Keys the model produced that the truth lacks, with how many records had each.
    pub extra_fields: BTreeMap<String, usize>,
    pub latency: Option<LatencyStats>,
    pub worst: Vec<WorstRecord>,
    /// Wrong fields by kind of error ([`crate::errors`]).
    #[serde(default)]
    pub errors: Vec<FieldErrors>,
    /// How decoding went over the set, where the caller said.
    #[serde(default)]
    pub decoding: DecodingStats,
    /// Accuracy against the model's confidence, where the caller had confidence to give
    /// ([`crate::calibration`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibration::Calibration>,
}

/// Records whose answer hit the token limit unfinished, and where the decoder's ramble guard
/// stepped in (numbers stopped at the digit cap, looping strings closed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodingStats {
    pub truncated: usize,
    pub numbers_capped: usize,
    pub loops_stopped: usize,
    /// Values of copy fields decoded under the copy rule (`copy` in the scoring settings).
    #[serde(default)]
    pub copies_held: usize,
}

impl DecodingStats {
    /// Whether anything is worth a line in the report.
    pub fn any(&self) -> bool {
        self.truncated + self.numbers_capped + self.loops_stopped + self.copies_held > 0
    }

    /// One sentence for the report, parts joined by `sep`.
    pub fn sentence(&self, sep: &str) -> String {
        let mut parts = vec![
            format!("{} answers truncated at the token limit", self.truncated),
            format!("{} numbers stopped at the digit cap", self.numbers_capped),
            format!("{} looping strings closed", self.loops_stopped),
        ];
        if self.copies_held > 0 {
            parts.push(format!(
                "{} values kept to copies of the input",
                self.copies_held
            ));
        }
        parts.join(sep)
    }
}

/// Scores samples one at a time, so the generation loop can report progress as it goes.
///
/// ```
/// use smolt_eval::{EvalConfig, Evaluator, Sample};
/// let truth = serde_json::json!({"total": 9.0, "items": [{"name": "Tea"}]});
/// let mut ev = Evaluator::new(EvalConfig::default());
/// ev.add(Sample::new(r#"{"total": "RM 9.00", "items": [{"name": "Tea"}]}"#, &truth).timing(0.4, 20));
/// let report = ev.finish("demo");
/// assert_eq!(report.record_match_rate, 1.0);
/// ```
pub struct Evaluator {
    config: EvalConfig,
    records: Vec<RecordResult>,
}

impl Evaluator {
    pub fn new(config: EvalConfig) -> Self {
        Evaluator {
            config,
            records: Vec::new(),
        }
    }

    /// Scores one sample and returns its result.
    pub fn add(&mut self, sample: Sample) -> &RecordResult {
        let r = compare_record(&self.config, self.records.len(), &sample);
        self.records.push(r);
        self.records.last().unwrap()
    }

    pub fn records(&self) -> &[RecordResult] {
        &self.records
    }

    /// Aggregates everything added so far.
    pub fn finish(self, label: &str) -> EvalReport {
        aggregate(&self.config, label, &self.records)
    }
}

/// Scores a whole set at once; see [`Evaluator`] for the streaming form.
pub fn evaluate<'a>(
    config: &EvalConfig,
    label: &str,
    samples: impl IntoIterator<Item = Sample<'a>>,
) -> EvalReport {
    let mut ev = Evaluator::new(config.clone());
    for s in samples {
        ev.add(s);
    }
    ev.finish(label)
}

fn rate(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn f1(tp: usize, pred: usize, truth: usize) -> f64 {
    if pred + truth == 0 {
        return 1.0; // nothing to find, nothing claimed
    }
    2.0 * tp as f64 / (pred + truth) as f64
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency percentiles, throughput and a histogram of per-record timings; `None` without any.
pub(crate) fn latency_of(timings: &[crate::compare::Timing]) -> Option<LatencyStats> {
    (!timings.is_empty()).then(|| {
        let mut ms: Vec<f64> = timings.iter().map(|t| t.latency_s * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let secs: f64 = timings.iter().map(|t| t.latency_s).sum();
        let toks: usize = timings.iter().map(|t| t.tokens).sum();
        let (lo, hi) = (ms[0], *ms.last().unwrap());
        let bins = 20usize.min(ms.len().max(1));
        let width = ((hi - lo) / bins as f64).max(1e-9);
        let mut counts = vec![0usize; bins];
        for &x in &ms {
            counts[(((x - lo) / width) as usize).min(bins - 1)] += 1;
        }
        LatencyStats {
            n: ms.len(),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: percentile(&ms, 0.5),
            p90_ms: percentile(&ms, 0.9),
            p99_ms: percentile(&ms, 0.99),
            max_ms: hi,
            tokens_per_s: if secs > 0.0 { toks as f64 / secs } else { 0.0 },
            histogram: counts
                .iter()
                .enumerate()
                .map(|(i, &c)| (lo + i as f64 * width, lo + (i + 1) as f64 * width, c))
                .collect(),
        }
    })
}

pub fn aggregate(config: &EvalConfig, label: &str, records: &[RecordResult]) -> EvalReport {
    let n = records.len();
    let mut order: Vec<String> = Vec::new();
    let mut fields: BTreeMap<String, FieldStats> = BTreeMap::new();
    let mut lists: BTreeMap<String, ListStats> = BTreeMap::new();
    let mut list_order: Vec<String> = Vec::new();
    let mut extra: BTreeMap<String, usize> = BTreeMap::new();
    let stats = |key: &str, kind| FieldStats {
        key: key.to_string(),
        kind,
        n: 0,
        predicted: 0,
        exact: 0,
        normalized: 0,
        missing: 0,
        wrong_type: 0,
        exact_rate: 0.0,
        normalized_rate: 0.0,
    };
    for r in records {
        let list_keys: Vec<&str> = r.lists.iter().map(|l| l.key.as_str()).collect();
        let mut extras_here: Vec<&str> = Vec::new();
        for f in &r.fields {
            // A list item's sub-field key starts with its list's key (`items.name`, or `tags`
            // for a list of scalars).
            let in_list = list_keys
                .iter()
                .any(|l| f.key == *l || f.key.starts_with(&format!("{l}.")));
            if f.status == Status::Extra {
                if !f.path.ends_with(']') && !extras_here.contains(&f.key.as_str()) {
                    extras_here.push(&f.key);
                }
                continue;
            }
            if !fields.contains_key(&f.key) {
                order.push(f.key.clone());
            }
            let s = fields.entry(f.key.clone()).or_insert_with(|| {
                stats(
                    &f.key,
                    if in_list {
                        FieldKind::ListItem
                    } else {
                        FieldKind::Scalar
                    },
                )
            });
            s.n += 1;
            if in_list {
                continue; // counted from the list results below
            }
            s.predicted += (f.status != Status::Missing) as usize;
            s.exact += (f.status == Status::Exact) as usize;
            s.normalized += f.status.is_correct() as usize;
            s.missing += (f.status == Status::Missing) as usize;
            s.wrong_type += (f.status == Status::WrongType || f.type_mismatch) as usize;
        }
        for k in extras_here {
            *extra.entry(k.to_string()).or_default() += 1;
        }
        for l in &r.lists {
            if !lists.contains_key(&l.key) {
                list_order.push(l.key.clone());
            }
            let ls = lists.entry(l.key.clone()).or_insert_with(|| ListStats {
                key: l.key.clone(),
                truth_items: 0,
                pred_items: 0,
                correct_items: 0,
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                duplicates: 0,
                empty_predictions: 0,
                wrong_type: 0,
            });
            ls.truth_items += l.truth_len;
            ls.pred_items += l.pred_len;
            ls.correct_items += l.items_correct;
            ls.duplicates += l.duplicates;
            ls.empty_predictions += (l.truth_len > 0 && l.pred_len == 0) as usize;
            ls.wrong_type += l.wrong_type as usize;
            for (k, c) in &l.sub {
                let s = fields
                    .entry(k.clone())
                    .or_insert_with(|| stats(k, FieldKind::ListItem));
                s.kind = FieldKind::ListItem;
                s.predicted += l.pred_len;
                s.exact += c.exact;
                s.normalized += c.normalized;
                if !l.wrong_type {
                    s.missing += l.truth_len - l.pairs.len();
                }
                s.wrong_type += if l.wrong_type { l.truth_len } else { 0 };
            }
        }
    }
    let mut field_list: Vec<FieldStats> = Vec::new();
    for k in order {
        let mut s = fields.remove(&k).unwrap();
        match s.kind {
            FieldKind::Scalar => {
                s.exact_rate = rate(s.exact, s.n);
                s.normalized_rate = rate(s.normalized, s.n);
            }
            FieldKind::ListItem => {
                s.exact_rate = f1(s.exact, s.predicted, s.n);
                s.normalized_rate = f1(s.normalized, s.predicted, s.n);
            }
        }
        field_list.push(s);
    }
    let list_list: Vec<ListStats> = list_order
        .into_iter()
        .map(|k| {
            let mut l = lists.remove(&k).unwrap();
            l.precision = if l.pred_items == 0 {
                (l.truth_items == 0) as u8 as f64
            } else {
                rate(l.correct_items, l.pred_items)
            };
            l.recall = if l.truth_items == 0 {
                1.0
            } else {
                rate(l.correct_items, l.truth_items)
            };
            l.f1 = f1(l.correct_items, l.pred_items, l.truth_items);
            l
        })
        .collect();

    let timings: Vec<_> = records.iter().filter_map(|r| r.timing).collect();
    let latency = latency_of(&timings);

    // Unparseable outputs all score 0 and would fill the list; they take at most half of it so
    // the reading errors of valid outputs stay visible.
    let mut ranked: Vec<&RecordResult> = records.iter().filter(|r| !r.record_match).collect();
    ranked.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.index.cmp(&b.index)));
    let max_unparsed = config.worst_n.div_ceil(2);
    let unparsed = ranked.iter().filter(|r| r.parsed.is_none()).count();
    let parsed_slots = ranked.len() - unparsed;
    let keep_unparsed = max_unparsed.max(config.worst_n.saturating_sub(parsed_slots));
    let mut seen_unparsed = 0;
    ranked.retain(|r| {
        if r.parsed.is_some() {
            return true;
        }
        seen_unparsed += 1;
        seen_unparsed <= keep_unparsed
    });
    let worst = ranked
        .into_iter()
        .take(config.worst_n)
        .map(|r| WorstRecord {
            index: r.index,
            score: r.score,
            valid_json: r.valid_json,
            raw: r.raw.clone(),
            input: r.input.clone(),
            truth: r.truth.clone(),
            prediction: r.parsed.clone(),
            fields: r.fields.clone(),
        })
        .collect();

    EvalReport {
        label: label.to_string(),
        n_records: n,
        n_valid: records.iter().filter(|r| r.valid_json).count(),
        validity_rate: rate(records.iter().filter(|r| r.valid_json).count(), n),
        record_match_rate: rate(records.iter().filter(|r| r.record_match).count(), n),
        mean_score: if n == 0 {
            0.0
        } else {
            records.iter().map(|r| r.score).sum::<f64>() / n as f64
        },
        fields: field_list,
        lists: list_list,
        extra_fields: extra,
        latency,
        worst,
        errors: field_errors(config, records),
        decoding: records.iter().filter_map(|r| r.decoding).fold(
            DecodingStats::default(),
            |mut d, r| {
                d.truncated += r.truncated as usize;
                d.numbers_capped += r.numbers_capped;
                d.loops_stopped += r.loops_stopped;
                d.copies_held += r.copies_held;
                d
            },
        ),
        calibration: None,
    }
}

/// Writes one JSON line per record — the model's raw answer, what was scored, the truth, the
/// score and the keys it got wrong — so every answer can be inspected, not only the worst ones
/// the report keeps.
pub fn write_predictions(path: &Path, records: &[RecordResult]) -> std::io::Result<()> {
    let mut text = String::new();
    for r in records {
        let wrong: Vec<&str> = r
            .fields
            .iter()
            .filter(|f| !f.status.is_correct())
            .map(|f| f.path.as_str())
            .collect();
        let line = serde_json::json!({
            "index": r.index,
            "score": r.score,
            "record_match": r.record_match,
            "valid_json": r.valid_json,
            "wrong": wrong,
            "raw": r.raw,
            "prediction": r.parsed,
            "truth": r.truth,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text)
}

impl EvalReport {
    /// Writes `eval.json`, `report.html` and `report.txt` (the terminal table, and the
    /// calibration table where there is one) into `dir`.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("eval.json"),
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(dir.join("report.html"), self.to_html())?;
        let mut text = self.to_table();
        if let Some(c) = &self.calibration {
            text.push('\n');
            text.push_str(&c.to_table());
        }
        std::fs::write(dir.join("report.txt"), text)
    }

    /// Reads an `eval.json` back (for `compare`).
    pub fn read(path: &Path) -> std::io::Result<EvalReport> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }

    pub fn field(&self, key: &str) -> Option<&FieldStats> {
        self.fields.iter().find(|f| f.key == key)
    }
}
