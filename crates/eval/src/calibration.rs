//! Whether a model's confidence can be trusted: accuracy against coverage as a threshold moves,
//! per field and per record, and what a routed pair would score — the small model where it is
//! sure, a fallback model elsewhere.
//!
//! Confidence comes from decoding (the lowest probability of a freely chosen token in a field's
//! value), which this crate knows nothing of: callers pass it per record as `(field, p)` pairs.
//! A field the answer lacks, or an answer that is not JSON, has confidence 0: nothing about it
//! can be trusted. A record's confidence is its least sure field's. The views (table, HTML
//! section and plot) are in [`crate::render`] with the other report views.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::compare::RecordResult;

/// The thresholds every curve is read at.
pub const THRESHOLDS: [f64; 12] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99];

/// One threshold on one curve: the answers at or above it and how good they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f64,
    /// Share of answers (fields or records) kept: confidence ≥ threshold.
    pub coverage: f64,
    /// Share right among those kept (for records: their mean field score); `None` when none is
    /// kept.
    pub accuracy: Option<f64>,
}

/// One field's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldCalibration {
    pub key: String,
    pub n: usize,
    pub points: Vec<CurvePoint>,
}

/// Routing to a fallback below a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutePoint {
    pub threshold: f64,
    /// Share of records sent to the fallback.
    pub routed: f64,
    /// Mean field score of the answers the pair gives.
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// What answered the routed records ("gpt-4o-mini at https://…").
    pub fallback: String,
    /// Mean field score of the small model alone and of the fallback alone, on every record.
    pub small_score: f64,
    pub fallback_score: f64,
    pub points: Vec<RoutePoint>,
}

/// The calibration of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Records, by their least sure field.
    pub records: Vec<CurvePoint>,
    /// Top-level scalar fields, in the report's order.
    pub fields: Vec<FieldCalibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// Each record's confidence: its least sure scored top-level field (0 where the answer lacks
/// one). `confidence[i]` belongs to `records[i]`.
pub fn record_confidence(records: &[RecordResult], confidence: &[Vec<(String, f32)>]) -> Vec<f64> {
    records
        .iter()
        .zip(confidence)
        .map(|(r, conf)| {
            let by_key: HashMap<&str, f32> = conf.iter().map(|(k, p)| (k.as_str(), *p)).collect();
            r.fields
                .iter()
                .filter(|f| f.truth.is_some() && f.path == f.key)
                .map(|f| f64::from(by_key.get(f.key.as_str()).copied().unwrap_or(0.0)))
                .fold(1.0, f64::min)
        })
        .collect()
}

/// Accuracy against coverage for records and for each top-level scalar field.
pub fn calibrate(records: &[RecordResult], confidence: &[Vec<(String, f32)>]) -> Calibration {
    let rec_conf = record_confidence(records, confidence);
    let rec_pairs: Vec<(f64, f64)> = rec_conf
        .iter()
        .zip(records)
        .map(|(c, r)| (*c, r.score))
        .collect();
    // (confidence, right) per field, fields in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut per_field: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for (r, conf) in records.iter().zip(confidence) {
        let by_key: HashMap<&str, f32> = conf.iter().map(|(k, p)| (k.as_str(), *p)).collect();
        for f in r
            .fields
            .iter()
            .filter(|f| f.truth.is_some() && f.path == f.key)
        {
            let p = f64::from(by_key.get(f.key.as_str()).copied().unwrap_or(0.0));
            let right = if f.status.is_correct() { 1.0 } else { 0.0 };
            per_field
                .entry(f.key.clone())
                .or_insert_with(|| {
                    order.push(f.key.clone());
                    Vec::new()
                })
                .push((p, right));
        }
    }
    Calibration {
        records: curve(&rec_pairs),
        fields: order
            .into_iter()
            .map(|key| {
                let pairs = &per_field[&key];
                FieldCalibration {
                    n: pairs.len(),
                    points: curve(pairs),
                    key,
                }
            })
            .collect(),
        routing: None,
    }
}

/// The pair's score at each threshold: records whose confidence is below it take the
/// fallback's score. `small`, `fallback` and `confidence` are per record, in one order.
pub fn route(label: &str, confidence: &[f64], small: &[f64], fallback: &[f64]) -> Routing {
    let n = confidence.len().min(small.len()).min(fallback.len());
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let points = THRESHOLDS
        .iter()
        .map(|&t| {
            let routed = (0..n).filter(|&i| confidence[i] < t).count();
            let score: Vec<f64> = (0..n)
                .map(|i| {
                    if confidence[i] < t {
                        fallback[i]
                    } else {
                        small[i]
                    }
                })
                .collect();
            RoutePoint {
                threshold: t,
                routed: if n == 0 {
                    0.0
                } else {
                    routed as f64 / n as f64
                },
                score: mean(&score),
            }
        })
        .collect();
    Routing {
        fallback: label.to_string(),
        small_score: mean(&small[..n]),
        fallback_score: mean(&fallback[..n]),
        points,
    }
}

/// (confidence, value) pairs → the value's mean over those at or above each threshold.
fn curve(pairs: &[(f64, f64)]) -> Vec<CurvePoint> {
    THRESHOLDS
        .iter()
        .map(|&t| {
            let kept: Vec<f64> = pairs
                .iter()
                .filter(|(c, _)| *c >= t)
                .map(|(_, v)| *v)
                .collect();
            CurvePoint {
                threshold: t,
                coverage: if pairs.is_empty() {
                    0.0
                } else {
                    kept.len() as f64 / pairs.len() as f64
                },
                accuracy: (!kept.is_empty()).then(|| kept.iter().sum::<f64>() / kept.len() as f64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{compare_record, EvalConfig, Sample};
    use serde_json::json;

    fn rec(i: usize, pred: serde_json::Value, truth: serde_json::Value) -> RecordResult {
        let text = pred.to_string();
        compare_record(&EvalConfig::default(), i, &Sample::new(&text, &truth))
    }

    #[test]
    fn the_curve_keeps_the_sure_answers_and_scores_them() {
        let truth = json!({"a": "x", "b": "y"});
        let records = vec![
            rec(0, json!({"a": "x", "b": "y"}), truth.clone()),
            rec(1, json!({"a": "x", "b": "n"}), truth.clone()),
            rec(2, json!({"a": "n"}), truth.clone()),
            rec(3, json!("not an object"), truth.clone()),
        ];
        let conf = vec![
            vec![("a".into(), 0.95), ("b".into(), 0.9)],
            vec![("a".into(), 0.8), ("b".into(), 0.35)],
            vec![("a".into(), 0.5)],
            vec![],
        ];
        // b is missing from record 2: its confidence is 0, and so is the record's.
        let f = |p: f32| f64::from(p);
        assert_eq!(
            record_confidence(&records, &conf),
            vec![f(0.9), f(0.35), 0.0, 0.0]
        );
        let c = calibrate(&records, &conf);
        let at = |pts: &[CurvePoint], t: f64| {
            pts.iter()
                .find(|p| (p.threshold - t).abs() < 1e-9)
                .cloned()
                .unwrap()
        };
        // Every record kept at 0: scores 1, 0.5, 0, 0.
        assert_eq!(at(&c.records, 0.0).coverage, 1.0);
        assert_eq!(at(&c.records, 0.0).accuracy, Some(0.375));
        // At 0.3 the two sure records remain; at 0.5 only the right one; at 0.95 none.
        assert_eq!(at(&c.records, 0.3).coverage, 0.5);
        assert_eq!(at(&c.records, 0.3).accuracy, Some(0.75));
        assert_eq!(at(&c.records, 0.5).accuracy, Some(1.0));
        assert_eq!(at(&c.records, 0.95).accuracy, None);
        // Field a: right at 0.95 and 0.8, wrong at 0.5, missing (0) once.
        let a = c.fields.iter().find(|f| f.key == "a").unwrap();
        assert_eq!(a.n, 4);
        assert_eq!(at(&a.points, 0.5).coverage, 0.75);
        assert_eq!(at(&a.points, 0.5).accuracy, Some(2.0 / 3.0));
        assert_eq!(at(&a.points, 0.6).accuracy, Some(1.0));
        assert_eq!(
            c.fields.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn routing_sends_the_unsure_records_to_the_fallback() {
        let conf = [0.9, 0.35, 0.0, 0.0];
        let small = [1.0, 0.5, 0.0, 0.0];
        let fallback = [0.0, 1.0, 1.0, 0.5];
        let r = route("big", &conf, &small, &fallback);
        assert_eq!(r.small_score, 0.375);
        assert_eq!(r.fallback_score, 0.625);
        let at = |t: f64| {
            r.points
                .iter()
                .find(|p| (p.threshold - t).abs() < 1e-9)
                .unwrap()
                .clone()
        };
        // Nothing is below 0: the small model alone.
        assert_eq!((at(0.0).routed, at(0.0).score), (0.0, 0.375));
        // Below 0.3: records 2 and 3 go to the fallback.
        assert_eq!(
            (at(0.3).routed, at(0.3).score),
            (0.5, (1.0 + 0.5 + 1.0 + 0.5) / 4.0)
        );
        // Below 0.99: everything.
        assert_eq!((at(0.99).routed, at(0.99).score), (1.0, 0.625));
    }

    #[test]
    fn the_views_show_every_threshold_and_the_fallback() {
        let truth = json!({"a": "x"});
        let records = vec![
            rec(0, json!({"a": "x"}), truth.clone()),
            rec(1, json!({"a": "<y>"}), truth),
        ];
        let conf = vec![vec![("a".into(), 0.9)], vec![("a".into(), 0.2)]];
        let mut c = calibrate(&records, &conf);
        c.routing = Some(route(
            "big <model>",
            &record_confidence(&records, &conf),
            &[1.0, 0.0],
            &[1.0, 1.0],
        ));
        let t = c.to_table();
        assert_eq!(
            t.lines().filter(|l| l.starts_with("0.")).count(),
            THRESHOLDS.len()
        );
        assert!(t.contains("big <model>"), "{t}");
        let h = c.to_html();
        assert!(h.contains("big &lt;model&gt;") && !h.contains("big <model>"));
        assert_eq!(h.matches("<polyline").count(), 2, "records and field a");
        let back: Calibration = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_plot_zooms_to_the_accuracies_it_draws() {
        let point = |threshold, coverage, accuracy| CurvePoint {
            threshold,
            coverage,
            accuracy: Some(accuracy),
        };
        let c = Calibration {
            records: vec![point(0.0, 1.0, 0.93), point(0.5, 0.5, 0.99)],
            fields: Vec::new(),
            routing: None,
        };
        let h = c.to_html();
        // The axis runs from 90% (93% rounded down to a tenth) to 100%.
        let y_label = |v: &str| h.contains(&format!("text-anchor=\"end\">{v}</text>"));
        assert!(y_label("90%") && y_label("100%"), "{h}");
        assert!(!y_label("0%") && !y_label("50%"), "{h}");
    }
}
