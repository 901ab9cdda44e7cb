//! Two reports side by side ("few-shot base model" vs "fine-tuned"), with per-field deltas: the
//! view that answers "did training help, and where?".

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::render::{esc, page_head, pct, text_table};
use crate::report::{EvalReport, LatencyStats};

/// One metric in both reports. `higher_is_better` decides the colour of the delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub higher_is_better: bool,
    /// Rates are shown as percentages, the rest as plain numbers.
    pub is_rate: bool,
}

impl Delta {
    pub fn delta(&self) -> Option<f64> {
        Some(self.b? - self.a?)
    }
    fn fmt(&self, v: Option<f64>) -> String {
        match v {
            None => "—".into(),
            Some(x) if self.is_rate => pct(x),
            Some(x) => format!("{x:.1}"),
        }
    }
    fn fmt_delta(&self) -> String {
        match self.delta() {
            None => "—".into(),
            Some(d) if self.is_rate => format!("{:+.1} pt", d * 100.0),
            Some(d) => format!("{d:+.1}"),
        }
    }
    fn better(&self) -> Option<bool> {
        let d = self.delta()?;
        if d.abs() < 1e-12 {
            return None;
        }
        Some((d > 0.0) == self.higher_is_better)
    }
}

/// The comparison of report `b` against baseline `a`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a_label: String,
    pub b_label: String,
    pub headline: Vec<Delta>,
    /// What the rows are, as the section's title ("Fields (normalised)", "Tools and arguments").
    #[serde(default)]
    pub rows_title: String,
    /// Per field: normalised rate (accuracy, or F1 for list sub-fields); per tool and argument
    /// for tool calls.
    pub fields: Vec<Delta>,
    /// Per field: exact rate. Empty where the rows have one rate only (tool calls): the
    /// tables then show that rate alone.
    #[serde(default)]
    pub fields_exact: Vec<Delta>,
}

/// Compares `b` against the baseline `a`. Fields present in only one report get `None` on the
/// other side rather than being dropped, so a renamed field shows up.
pub fn compare(a: &EvalReport, b: &EvalReport) -> Comparison {
    let rate = |metric: &str, x: Option<f64>, y: Option<f64>| Delta {
        metric: metric.into(),
        a: x,
        b: y,
        higher_is_better: true,
        is_rate: true,
    };
    let mut headline = vec![
        rate("valid JSON", Some(a.validity_rate), Some(b.validity_rate)),
        rate(
            "record exact match",
            Some(a.record_match_rate),
            Some(b.record_match_rate),
        ),
        rate("mean field score", Some(a.mean_score), Some(b.mean_score)),
    ];
    let mut list_keys: Vec<&str> = a.lists.iter().map(|l| l.key.as_str()).collect();
    for l in &b.lists {
        if !list_keys.contains(&l.key.as_str()) {
            list_keys.push(&l.key);
        }
    }
    for k in list_keys {
        let f = |r: &EvalReport| r.lists.iter().find(|l| l.key == k).map(|l| l.f1);
        headline.push(rate(&format!("{k} F1"), f(a), f(b)));
    }
    headline.extend(latency_deltas(a.latency.as_ref(), b.latency.as_ref()));
    let mut keys: Vec<&str> = a.fields.iter().map(|f| f.key.as_str()).collect();
    for f in &b.fields {
        if !keys.contains(&f.key.as_str()) {
            keys.push(&f.key);
        }
    }
    let get = |r: &EvalReport, k: &str, exact: bool| {
        r.field(k).map(|f| {
            if exact {
                f.exact_rate
            } else {
                f.normalized_rate
            }
        })
    };
    let fields = keys
        .iter()
        .map(|k| rate(k, get(a, k, false), get(b, k, false)))
        .collect();
    let fields_exact = keys
        .iter()
        .map(|k| rate(k, get(a, k, true), get(b, k, true)))
        .collect();
    Comparison {
        a_label: a.label.clone(),
        b_label: b.label.clone(),
        headline,
        rows_title: "Fields (normalised)".into(),
        fields,
        fields_exact,
    }
}

/// Latency p50 and p90 and generation speed of two runs, where either has timings.
pub(crate) fn latency_deltas(a: Option<&LatencyStats>, b: Option<&LatencyStats>) -> Vec<Delta> {
    if a.is_none() && b.is_none() {
        return Vec::new();
    }
    let num = |metric: &str, f: fn(&LatencyStats) -> f64, higher_is_better: bool| Delta {
        metric: metric.into(),
        a: a.map(f),
        b: b.map(f),
        higher_is_better,
        is_rate: false,
    };
    vec![
        num("latency p50 (ms)", |l| l.p50_ms, false),
        num("latency p90 (ms)", |l| l.p90_ms, false),
        num("tokens/s", |l| l.tokens_per_s, true),
    ]
}

impl Comparison {
    /// Side-by-side plain-text table.
    pub fn to_table(&self) -> String {
        let mut o = format!("A = {}\nB = {}\n\n", self.a_label, self.b_label);
        let rows: Vec<Vec<String>> = self
            .headline
            .iter()
            .map(|d| vec![d.metric.clone(), d.fmt(d.a), d.fmt(d.b), d.fmt_delta()])
            .collect();
        o.push_str(&text_table(&["metric", "A", "B", "B − A"], &rows));
        o.push('\n');
        if self.fields_exact.is_empty() {
            let rows: Vec<Vec<String>> = self
                .fields
                .iter()
                .map(|d| vec![d.metric.clone(), d.fmt(d.a), d.fmt(d.b), d.fmt_delta()])
                .collect();
            o.push_str(&text_table(&["", "A", "B", "B − A"], &rows));
            return o;
        }
        let rows: Vec<Vec<String>> = self
            .fields
            .iter()
            .zip(&self.fields_exact)
            .map(|(n, e)| {
                vec![
                    n.metric.clone(),
                    e.fmt(e.a),
                    e.fmt(e.b),
                    n.fmt(n.a),
                    n.fmt(n.b),
                    n.fmt_delta(),
                ]
            })
            .collect();
        o.push_str(&text_table(
            &["field", "exact A", "exact B", "norm A", "norm B", "Δ norm"],
            &rows,
        ));
        o
    }

    /// Self-contained HTML: headline deltas, and per field paired bars (A grey, B blue).
    pub fn to_html(&self) -> String {
        let title = format!("smolt eval — {} vs {}", self.b_label, self.a_label);
        let mut b = page_head(&title);
        let _ = write!(
            b,
            "<header><h1>{}</h1><p class=\"sub\">A = {} · B = {}</p></header>",
            esc(&title),
            esc(&self.a_label),
            esc(&self.b_label)
        );
        b.push_str("<section><h2>Headline</h2><table class=\"grid\"><thead><tr><th>metric</th><th>A</th><th>B</th><th>B − A</th></tr></thead><tbody>");
        for d in &self.headline {
            b.push_str(&delta_row(d, &d.fmt(d.a), &d.fmt(d.b)));
        }
        b.push_str("</tbody></table></section>");
        let _ = write!(
            b,
            "<section><h2>{}</h2><p class=\"note\"><span class=\"sw ex\"></span>A <span class=\"sw no\"></span>B{}</p>",
            esc(&self.rows_title),
            if self.fields_exact.is_empty() { "" } else { "; list sub-fields show F1." }
        );
        b.push_str(&paired_bars_svg(&self.fields));
        if self.fields_exact.is_empty() {
            b.push_str("<table class=\"grid\"><thead><tr><th></th><th>A</th><th>B</th><th>B − A</th></tr></thead><tbody>");
            for d in &self.fields {
                b.push_str(&delta_row(d, &d.fmt(d.a), &d.fmt(d.b)));
            }
        } else {
            b.push_str("<table class=\"grid\"><thead><tr><th>field</th><th>exact A</th><th>exact B</th><th>normalised A</th><th>normalised B</th><th>Δ normalised</th></tr></thead><tbody>");
            for (n, e) in self.fields.iter().zip(&self.fields_exact) {
                let cls = match n.better() {
                    Some(true) => "pos",
                    Some(false) => "neg",
                    None => "",
                };
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{cls}\">{}</td></tr>",
                    esc(&n.metric),
                    e.fmt(e.a),
                    e.fmt(e.b),
                    n.fmt(n.a),
                    n.fmt(n.b),
                    n.fmt_delta()
                );
            }
        }
        b.push_str(
            "</tbody></table></section><footer>Generated by smolt-eval.</footer></body></html>\n",
        );
        b
    }
}

fn delta_row(d: &Delta, a: &str, bv: &str) -> String {
    let cls = match d.better() {
        Some(true) => "pos",
        Some(false) => "neg",
        None => "",
    };
    format!(
        "<tr><td>{}</td><td>{a}</td><td>{bv}</td><td class=\"{cls}\">{}</td></tr>",
        esc(&d.metric),
        d.fmt_delta()
    )
}

fn paired_bars_svg(rows: &[Delta]) -> String {
    let (label_w, bar_w, row_h) = (200.0, 700.0, 26.0);
    let h = rows.len() as f64 * row_h + 10.0;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {} {h}\" role=\"img\" aria-label=\"per-field comparison\">", label_w + bar_w + 130.0);
    for (i, d) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"12.5\" fill=\"#1d2430\" text-anchor=\"end\">{}</text>", label_w - 10.0, y + 14.0, esc(&d.metric));
        let _ = write!(s, "<rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"8\" rx=\"2\" fill=\"#b9c6d8\"/>", bar_w * d.a.unwrap_or(0.0).clamp(0.0, 1.0));
        let _ = write!(s, "<rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"10\" rx=\"2\" fill=\"#2f6fd0\"/>", y + 9.0, bar_w * d.b.unwrap_or(0.0).clamp(0.0, 1.0));
        let color = match d.better() {
            Some(true) => "#16803c",
            Some(false) => "#c0392b",
            None => "#5b6675",
        };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{color}\">{}</text>",
            label_w + bar_w + 8.0,
            y + 14.0,
            esc(&d.fmt_delta())
        );
    }
    s.push_str("</svg>");
    s
}
