//! Whether a model's confidence can be trusted: accuracy against coverage as a threshold moves,
//! per field and per record, and what a routed pair would score — the small model where it is
//! sure, a fallback model elsewhere.
//!
//! Confidence comes from decoding (the lowest probability of a freely chosen token in a field's
//! value), which this crate knows nothing of: callers pass it per record as `(field, p)` pairs.
//! A field the answer lacks, or an answer that is not JSON, has confidence 0: nothing about it
//! can be trusted. A record's confidence is its least sure field's.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::compare::RecordResult;
use crate::render::{esc, pct, text_table};

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

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "-".into())
}

impl Calibration {
    /// The terminal view: records kept and their score at each threshold, and the routed pair.
    pub fn to_table(&self) -> String {
        let mut header = vec!["threshold", "records kept", "their score"];
        if self.routing.is_some() {
            header.extend(["routed", "pair's score"]);
        }
        let rows: Vec<Vec<String>> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut row = vec![
                    format!("{:.2}", p.threshold),
                    pct(p.coverage),
                    opt_pct(p.accuracy),
                ];
                if let Some(r) = &self.routing {
                    row.push(pct(r.points[i].routed));
                    row.push(pct(r.points[i].score));
                }
                row
            })
            .collect();
        let mut o = String::from(
            "confidence (a record's = its least sure field's; kept = at or above the threshold)\n",
        );
        if let Some(r) = &self.routing {
            let _ = writeln!(
                o,
                "routing below the threshold to {}: alone it scores {}, this model {}",
                r.fallback,
                pct(r.fallback_score),
                pct(r.small_score)
            );
        }
        o.push_str(&text_table(&header, &rows));
        o
    }

    /// The HTML section: accuracy against coverage per field and for records, a table of the
    /// records' curve, and the routed pair's score.
    pub fn to_html(&self) -> String {
        let mut b = String::from("<section><h2>Confidence</h2><p class=\"note\">Each curve keeps the answers whose confidence (the lowest probability of a token the model chose freely in the value) is at or above a threshold, and shows how many remain (coverage) and how many of those are right. A curve that rises to the left means low confidence finds the errors. A record's confidence is its least sure field's.</p>");
        b.push_str(&self.curves_svg());
        b.push_str("<table class=\"grid\"><thead><tr><th>threshold</th><th>records kept</th><th>their score</th>");
        if self.routing.is_some() {
            b.push_str("<th>routed to the fallback</th><th>pair's score</th>");
        }
        for f in &self.fields {
            let _ = write!(b, "<th>{} kept / right</th>", esc(&f.key));
        }
        b.push_str("</tr></thead><tbody>");
        for (i, p) in self.records.iter().enumerate() {
            let _ = write!(
                b,
                "<tr><td>{:.2}</td><td>{}</td><td>{}</td>",
                p.threshold,
                pct(p.coverage),
                opt_pct(p.accuracy)
            );
            if let Some(r) = &self.routing {
                let _ = write!(
                    b,
                    "<td>{}</td><td>{}</td>",
                    pct(r.points[i].routed),
                    pct(r.points[i].score)
                );
            }
            for f in &self.fields {
                let q = &f.points[i];
                let _ = write!(b, "<td>{} / {}</td>", pct(q.coverage), opt_pct(q.accuracy));
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table>");
        if let Some(r) = &self.routing {
            let _ = write!(
                b,
                "<p class=\"note\">Fallback: {} — {} alone; this model alone {}.</p>",
                esc(&r.fallback),
                pct(r.fallback_score),
                pct(r.small_score)
            );
        }
        b.push_str("</section>");
        b
    }

    /// Accuracy (y) against coverage (x), one line per field and a thick one for records.
    fn curves_svg(&self) -> String {
        const COLORS: [&str; 8] = [
            "#2f6fd0", "#e8663d", "#16803c", "#8e44ad", "#c0392b", "#d4a017", "#0f8b8d", "#7f8c8d",
        ];
        let (x0, y0, w, h) = (60.0, 14.0, 560.0, 300.0);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"accuracy against coverage\">",
            x0 + w + 220.0,
            y0 + h + 44.0
        );
        for t in 0..=4 {
            let f = t as f64 / 4.0;
            let (x, y) = (x0 + w * f, y0 + h * (1.0 - f));
            let _ = write!(
                s,
                "<line x1=\"{x}\" y1=\"{y0}\" x2=\"{x}\" y2=\"{}\" stroke=\"#e3e7ee\"/><text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"middle\">{}%</text>",
                y0 + h,
                y0 + h + 16.0,
                t * 25
            );
            let _ = write!(
                s,
                "<line x1=\"{x0}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e3e7ee\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"end\">{}%</text>",
                x0 + w,
                x0 - 6.0,
                y + 4.0,
                t * 25
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#1d2430\" text-anchor=\"middle\">coverage (answers kept)</text><text x=\"14\" y=\"{}\" font-size=\"12\" fill=\"#1d2430\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">accuracy of those kept</text>",
            x0 + w / 2.0,
            y0 + h + 36.0,
            y0 + h / 2.0,
            y0 + h / 2.0
        );
        let mut line = |points: &[CurvePoint], color: &str, width: f64, label: &str, k: usize| {
            let pts: Vec<String> = points
                .iter()
                .filter_map(|p| {
                    p.accuracy
                        .map(|a| format!("{:.1},{:.1}", x0 + w * p.coverage, y0 + h * (1.0 - a)))
                })
                .collect();
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"><title>{}</title></polyline>",
                pts.join(" "),
                esc(label)
            );
            let ly = y0 + 10.0 + 18.0 * k as f64;
            let _ = write!(
                s,
                "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"{width}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#1d2430\">{}</text>",
                x0 + w + 16.0,
                x0 + w + 40.0,
                x0 + w + 46.0,
                ly + 4.0,
                esc(label)
            );
        };
        line(&self.records, "#1d2430", 3.0, "records", 0);
        for (i, f) in self.fields.iter().enumerate() {
            line(&f.points, COLORS[i % COLORS.len()], 1.6, &f.key, i + 1);
        }
        s.push_str("</svg>");
        s
    }
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
}
