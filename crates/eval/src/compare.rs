//! One prediction against one truth, field by field.
//!
//! The truth's shape is the schema: every scalar it holds is a field (nested objects flattened to
//! dotted paths, `payment.method`), every array a list. Lists are matched order-insensitively —
//! a model that lists the right items in another order has read the receipt correctly — by an
//! optimal assignment on item similarity, so one misread item costs one item, not every item
//! after it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::normalize::Normalizer;

/// How to score a task. Deserialisable from a task config, e.g. TOML:
///
/// ```toml
/// number_tolerance = 0.005
/// [fields]
/// retailer = "case"
/// timestamp = "datetime"
/// "items.name" = "case"     # a list's sub-field: the list path, a dot, the key
/// ```
///
/// and `copy = ["retailer"]` to decode those fields as copies of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalConfig {
    /// Normaliser per field path (no list indices). Fields not named get a default from the
    /// truth's JSON type: numbers `number`, strings `whitespace`, the rest `exact`.
    pub fields: BTreeMap<String, Normalizer>,
    /// Largest difference at which two numbers still match (half a cent: "to the cent").
    pub number_tolerance: f64,
    /// When the output is not JSON, score the first JSON object found in it (base models add
    /// chatter around their answer). The validity rate still counts such outputs as invalid.
    pub lenient_json: bool,
    /// How many of the worst records the report keeps (unparseable outputs get at most half the
    /// places when enough parsed-but-wrong records exist, so reading errors stay visible).
    pub worst_n: usize,
    /// Fields whose answers are decoded as copies of the input (smolt-constrain's `copy`
    /// rule: each name marks that property of the schema `"x-smolt-copy": true`). A decoding
    /// setting kept here so that one file says how a task is evaluated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<String>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            fields: BTreeMap::new(),
            number_tolerance: 0.005,
            lenient_json: false,
            worst_n: 10,
            copy: Vec::new(),
        }
    }
}

impl EvalConfig {
    /// The normaliser for `path` whose truth is `truth`.
    pub fn normalizer(&self, path: &str, truth: &Value) -> Normalizer {
        if let Some(n) = self.fields.get(path) {
            return *n;
        }
        match truth {
            Value::Number(_) => Normalizer::Number,
            Value::String(_) => Normalizer::Whitespace,
            _ => Normalizer::Exact,
        }
    }

    /// Defaults from a JSON Schema: `format: date` → `date`, `format: date-time` → `datetime`,
    /// numbers → `number`; explicit `fields` entries win. Saves writing a config for the
    /// common case.
    pub fn from_schema(schema: &Value) -> EvalConfig {
        fn walk(s: &Value, path: &str, out: &mut BTreeMap<String, Normalizer>) {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, out);
                }
                return;
            }
            if let Some(items) = s.get("items") {
                if items.get("properties").is_some() {
                    return walk(items, path, out);
                }
            }
            let n = match (s.get("format").and_then(Value::as_str), s.get("type")) {
                (Some("date"), _) => Some(Normalizer::Date),
                (Some("date-time"), _) => Some(Normalizer::Datetime),
                (_, Some(t)) if t == "number" || t == "integer" => Some(Normalizer::Number),
                _ => None,
            };
            if let (Some(n), false) = (n, path.is_empty()) {
                out.insert(path.to_string(), n);
            }
        }
        let mut fields = BTreeMap::new();
        walk(schema, "", &mut fields);
        EvalConfig {
            fields,
            ..Default::default()
        }
    }
}

/// Per-record timing the caller measured around generation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall time from request to last token, in seconds.
    pub latency_s: f64,
    /// Generated tokens.
    pub tokens: usize,
}

/// How one answer's decoding went, as the caller saw it: whether it hit the token limit
/// unfinished, and where the constrained decoder's ramble guard stepped in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoding {
    pub truncated: bool,
    /// Numbers stopped at the digit cap.
    pub numbers_capped: usize,
    /// String values closed because they had started to loop.
    pub loops_stopped: usize,
    /// Values of copy fields decoded under the copy rule.
    #[serde(default)]
    pub copies_held: usize,
}

/// One model output to score.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// The raw generated text.
    pub prediction: &'a str,
    pub truth: &'a Value,
    /// The model's input, shown next to the worst errors in the report.
    pub input: Option<&'a str>,
    pub timing: Option<Timing>,
    pub decoding: Option<Decoding>,
}

impl<'a> Sample<'a> {
    pub fn new(prediction: &'a str, truth: &'a Value) -> Self {
        Sample {
            prediction,
            truth,
            input: None,
            timing: None,
            decoding: None,
        }
    }
    pub fn decoding(mut self, decoding: Decoding) -> Self {
        self.decoding = Some(decoding);
        self
    }
    pub fn input(mut self, input: &'a str) -> Self {
        self.input = Some(input);
        self
    }
    pub fn timing(mut self, latency_s: f64, tokens: usize) -> Self {
        self.timing = Some(Timing { latency_s, tokens });
        self
    }
}

/// What became of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Equal as is.
    Exact,
    /// Equal after normalisation only.
    Normalized,
    /// Present but different.
    Wrong,
    /// Absent from the prediction (or the output was not JSON).
    Missing,
    /// Present with the wrong shape: an object or array where a scalar belongs, or the reverse.
    WrongType,
    /// Present in the prediction but not in the truth (an extra key or an unmatched list item).
    Extra,
}

impl Status {
    pub fn is_correct(self) -> bool {
        matches!(self, Status::Exact | Status::Normalized)
    }
}

/// One scalar comparison. `path` has list indices (`items[2].name`) where `key` does not
/// (`items.name`): `key` is what configs and statistics use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldResult {
    pub path: String,
    pub key: String,
    pub truth: Option<Value>,
    pub pred: Option<Value>,
    pub status: Status,
    /// Predicted with a different JSON type than the truth (e.g. `"9.00"` for `9`); it may still
    /// match after normalisation.
    pub type_mismatch: bool,
}

/// Per sub-field counts over one list's matched items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubCounts {
    pub exact: usize,
    pub normalized: usize,
}

/// One list comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResult {
    pub key: String,
    pub truth_len: usize,
    pub pred_len: usize,
    /// (truth index, predicted index) of matched items.
    pub pairs: Vec<(usize, usize)>,
    /// Matched items whose every sub-field is normalised-equal.
    pub items_correct: usize,
    /// Unmatched predicted items that repeat another predicted item.
    pub duplicates: usize,
    /// The prediction held something other than an array.
    pub wrong_type: bool,
    /// Sub-field key (`items.name`) → counts over matched pairs.
    pub sub: BTreeMap<String, SubCounts>,
}

/// Everything known about one record after comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordResult {
    pub index: usize,
    /// The output parsed as JSON as it was.
    pub valid_json: bool,
    pub raw: String,
    pub input: Option<String>,
    pub truth: Value,
    /// The JSON scored (the lenient parse when `valid_json` is false and lenient parsing found one).
    pub parsed: Option<Value>,
    /// Scalar fields and list-item sub-fields, in truth order, plus extras.
    pub fields: Vec<FieldResult>,
    pub lists: Vec<ListResult>,
    /// All scored fields normalised-equal and every list item matched exactly once. Extra keys
    /// do not break a match: they cannot be wrong answers to anything the task asks.
    pub record_match: bool,
    /// Fraction of scored units correct, for ranking the worst records.
    pub score: f64,
    pub timing: Option<Timing>,
    #[serde(default)]
    pub decoding: Option<Decoding>,
}

/// Parses the raw output; the second value says whether it was valid JSON as a whole.
pub fn parse_output(raw: &str, lenient: bool) -> (Option<Value>, bool) {
    if let Ok(v) = serde_json::from_str::<Value>(raw) {
        return (Some(v), true);
    }
    if lenient {
        for (i, _) in raw.match_indices('{') {
            let mut it = serde_json::Deserializer::from_str(&raw[i..]).into_iter::<Value>();
            if let Some(Ok(v)) = it.next() {
                return (Some(v), false);
            }
        }
    }
    (None, false)
}

/// Compares one sample; `index` is its position in the evaluated set.
pub fn compare_record(cfg: &EvalConfig, index: usize, sample: &Sample) -> RecordResult {
    let (parsed, valid_json) = parse_output(sample.prediction, cfg.lenient_json);
    let mut c = Cmp {
        cfg,
        fields: Vec::new(),
        lists: Vec::new(),
    };
    c.walk(sample.truth, parsed.as_ref(), "", "");
    let Cmp { fields, lists, .. } = c;
    let scored: Vec<&FieldResult> = fields
        .iter()
        .filter(|f| f.truth.is_some() && f.status != Status::Extra)
        .collect();
    let record_match = parsed.is_some()
        && scored.iter().all(|f| f.status.is_correct())
        && lists
            .iter()
            .all(|l| l.items_correct == l.truth_len && l.pred_len == l.truth_len);
    let ok = scored.iter().filter(|f| f.status.is_correct()).count();
    // Extra list items are units too, so that padding a list with junk costs score.
    let extra_items: usize = fields
        .iter()
        .filter(|f| f.status == Status::Extra && f.path.ends_with(']'))
        .count();
    let units = scored.len() + extra_items;
    let score = if parsed.is_none() {
        0.0
    } else if units == 0 {
        1.0
    } else {
        ok as f64 / units as f64
    };
    RecordResult {
        index,
        valid_json,
        raw: sample.prediction.to_string(),
        input: sample.input.map(str::to_string),
        truth: sample.truth.clone(),
        parsed,
        fields,
        lists,
        record_match,
        score,
        timing: sample.timing,
        decoding: sample.decoding,
    }
}

struct Cmp<'a> {
    cfg: &'a EvalConfig,
    fields: Vec<FieldResult>,
    lists: Vec<ListResult>,
}

fn join(base: &str, k: &str) -> String {
    if base.is_empty() {
        k.to_string()
    } else {
        format!("{base}.{k}")
    }
}

fn is_container(v: &Value) -> bool {
    v.is_object() || v.is_array()
}

impl Cmp<'_> {
    /// `path` carries list indices, `key` does not. A `pred` of `None` (absent, or the whole
    /// output unparseable) makes every field below `truth` missing.
    fn walk(&mut self, truth: &Value, pred: Option<&Value>, path: &str, key: &str) {
        match truth {
            Value::Object(t) => {
                let p = pred.and_then(Value::as_object);
                let shape_wrong = pred.is_some_and(|v| !v.is_object() && !v.is_null());
                for (k, tv) in t {
                    let pv = p.and_then(|m| m.get(k));
                    if shape_wrong {
                        self.mark_subtree(tv, &join(path, k), &join(key, k), Status::WrongType);
                    } else {
                        self.walk(tv, pv, &join(path, k), &join(key, k));
                    }
                }
                if let Some(p) = p {
                    for (k, pv) in p {
                        if !t.contains_key(k) {
                            self.fields.push(FieldResult {
                                path: join(path, k),
                                key: join(key, k),
                                truth: None,
                                pred: Some(pv.clone()),
                                status: Status::Extra,
                                type_mismatch: false,
                            });
                        }
                    }
                }
            }
            Value::Array(t) => self.list(t, pred, path, key),
            scalar => {
                let norm = self.cfg.normalizer(key, scalar);
                if norm == Normalizer::None {
                    return;
                }
                let (status, type_mismatch) = match pred {
                    None => (Status::Missing, false),
                    Some(p) if is_container(p) => (Status::WrongType, true),
                    Some(p) => {
                        let mismatch = std::mem::discriminant(p) != std::mem::discriminant(scalar);
                        let st = if Normalizer::Exact.equal(p, scalar, 0.0) {
                            Status::Exact
                        } else if norm.equal(p, scalar, self.cfg.number_tolerance) {
                            Status::Normalized
                        } else {
                            Status::Wrong
                        };
                        (st, mismatch)
                    }
                };
                self.fields.push(FieldResult {
                    path: path.to_string(),
                    key: key.to_string(),
                    truth: Some(scalar.clone()),
                    pred: pred.cloned(),
                    status,
                    type_mismatch,
                });
            }
        }
    }

    /// Marks every scalar under `truth` with `status` (used when the prediction's shape differs).
    fn mark_subtree(&mut self, truth: &Value, path: &str, key: &str, status: Status) {
        match truth {
            Value::Object(t) => {
                for (k, v) in t {
                    self.mark_subtree(v, &join(path, k), &join(key, k), status);
                }
            }
            Value::Array(items) => {
                self.lists.push(ListResult {
                    key: key.to_string(),
                    truth_len: items.len(),
                    pred_len: 0,
                    pairs: vec![],
                    items_correct: 0,
                    duplicates: 0,
                    wrong_type: status == Status::WrongType,
                    sub: leaf_keys(items, key)
                        .into_iter()
                        .map(|k| (k, SubCounts::default()))
                        .collect(),
                });
                for (i, it) in items.iter().enumerate() {
                    self.mark_subtree(it, &format!("{path}[{i}]"), key, status);
                }
            }
            scalar => {
                if self.cfg.normalizer(key, scalar) != Normalizer::None {
                    self.fields.push(FieldResult {
                        path: path.to_string(),
                        key: key.to_string(),
                        truth: Some(scalar.clone()),
                        pred: None,
                        status,
                        type_mismatch: status == Status::WrongType,
                    });
                }
            }
        }
    }

    fn list(&mut self, truth: &[Value], pred: Option<&Value>, path: &str, key: &str) {
        let preds: &[Value] = match pred {
            Some(Value::Array(p)) => p,
            Some(Value::Null) | None => &[],
            Some(_) => {
                self.mark_subtree(&Value::Array(truth.to_vec()), path, key, Status::WrongType);
                return;
            }
        };
        let sub_keys = leaf_keys(truth, key);
        // Similarity: the share of the truth item's scored leaves the predicted item gets right.
        let sim: Vec<Vec<f64>> = truth
            .iter()
            .map(|t| preds.iter().map(|p| self.similarity(t, p, key)).collect())
            .collect();
        let pairs: Vec<(usize, usize)> = assign(&sim)
            .into_iter()
            .filter(|&(i, j)| sim[i][j] > 0.0)
            .collect();
        let mut result = ListResult {
            key: key.to_string(),
            truth_len: truth.len(),
            pred_len: preds.len(),
            pairs: pairs.clone(),
            items_correct: 0,
            duplicates: 0,
            wrong_type: false,
            sub: sub_keys
                .iter()
                .map(|k| (k.clone(), SubCounts::default()))
                .collect(),
        };
        let mut matched_pred = vec![false; preds.len()];
        let mut matched_truth = vec![None; truth.len()];
        for &(i, j) in &pairs {
            matched_pred[j] = true;
            matched_truth[i] = Some(j);
        }
        for (i, t) in truth.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            match matched_truth[i] {
                Some(j) => {
                    let start = self.fields.len();
                    self.walk(t, Some(&preds[j]), &ipath, key);
                    let mut all = true;
                    for f in &self.fields[start..] {
                        if f.status == Status::Extra {
                            continue;
                        }
                        let c = result.sub.entry(f.key.clone()).or_default();
                        match f.status {
                            Status::Exact => {
                                c.exact += 1;
                                c.normalized += 1;
                            }
                            Status::Normalized => c.normalized += 1,
                            _ => all = false,
                        }
                    }
                    result.items_correct += all as usize;
                }
                None => self.mark_subtree(t, &ipath, key, Status::Missing),
            }
        }
        for (j, p) in preds.iter().enumerate() {
            if matched_pred[j] {
                continue;
            }
            let dup = preds
                .iter()
                .enumerate()
                .any(|(k, q)| k != j && crate::normalize::json_equal(p, q));
            result.duplicates += dup as usize;
            self.fields.push(FieldResult {
                path: format!("{path}[+{j}]"),
                key: key.to_string(),
                truth: None,
                pred: Some(p.clone()),
                status: Status::Extra,
                type_mismatch: false,
            });
        }
        self.lists.push(result);
    }

    fn similarity(&self, truth: &Value, pred: &Value, key: &str) -> f64 {
        let mut sub = Cmp {
            cfg: self.cfg,
            fields: Vec::new(),
            lists: Vec::new(),
        };
        sub.walk(truth, Some(pred), "", key);
        let scored: Vec<&FieldResult> = sub
            .fields
            .iter()
            .filter(|f| f.status != Status::Extra)
            .collect();
        if scored.is_empty() {
            return if crate::normalize::json_equal(truth, pred) {
                1.0
            } else {
                0.0
            };
        }
        scored.iter().filter(|f| f.status.is_correct()).count() as f64 / scored.len() as f64
    }
}

/// Keys of the scalar leaves under a list's items (`items.name`, …), in first-seen order.
fn leaf_keys(items: &[Value], key: &str) -> Vec<String> {
    fn walk(v: &Value, key: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| walk(v, &join(key, k), out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, key, out)),
            _ => {
                if !out.iter().any(|k| k == key) {
                    out.push(key.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    items.iter().for_each(|v| walk(v, key, &mut out));
    out
}

/// Maximum-weight assignment of rows to columns (Hungarian algorithm, O(n³)); returns
/// (row, column) pairs. Lists on receipts are short, so the optimal answer is cheap; above a
/// few hundred items a greedy pass keeps time bounded.
pub fn assign(w: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let rows = w.len();
    let cols = w.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return vec![];
    }
    if rows.max(cols) > 300 {
        return greedy(w);
    }
    // Square cost matrix: cost = max − weight, padding with max (weight 0).
    let n = rows.max(cols);
    let cost = |i: usize, j: usize| {
        if i < rows && j < cols {
            1.0 - w[i][j]
        } else {
            1.0
        }
    };
    // e-maxx formulation, 1-based with a virtual row/column 0.
    let (mut u, mut v) = (vec![0.0f64; n + 1], vec![0.0f64; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out: Vec<(usize, usize)> = (1..=n)
        .filter(|&j| p[j] != 0 && p[j] - 1 < rows && j - 1 < cols)
        .map(|j| (p[j] - 1, j - 1))
        .collect();
    out.sort_unstable();
    out
}

fn greedy(w: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let mut cells: Vec<(f64, usize, usize)> = w
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().enumerate().map(move |(j, &x)| (x, i, j)))
        .collect();
    cells.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let (mut ru, mut cu) = (vec![false; w.len()], vec![false; w[0].len()]);
    let mut out = Vec::new();
    for (_, i, j) in cells {
        if !ru[i] && !cu[j] {
            ru[i] = true;
            cu[j] = true;
            out.push((i, j));
        }
    }
    out.sort_unstable();
    out
}
