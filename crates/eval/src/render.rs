//! Human views of a report: an aligned plain-text table for the terminal and a self-contained
//! HTML page (inline CSS and SVG, nothing fetched) that can be mailed or attached to a PR.

use std::fmt::Write as _;

use serde_json::Value;

use crate::calibration::{Calibration, CurvePoint};
use crate::compare::{FieldResult, Status};
use crate::errors::ErrorKind;
use crate::report::{EvalReport, FieldKind, LatencyStats};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Left-aligned first column, right-aligned others, widths fitted to the content.
pub(crate) fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&"-".repeat(w.iter().sum::<usize>() + 2 * (cols - 1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn short(v: &Option<Value>) -> String {
    match v {
        None => "—".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

impl EvalReport {
    /// The terminal view: headline numbers, a per-field table, list scores, latency.
    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "smolt eval — {} — {} records",
            self.label, self.n_records
        );
        let _ = writeln!(
            o,
            "valid JSON {}   record match {}   mean field score {}",
            pct(self.validity_rate),
            pct(self.record_match_rate),
            pct(self.mean_score)
        );
        if let Some(l) = &self.latency {
            let _ = writeln!(
                o,
                "latency ms: mean {:.0}  p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}   {:.1} tokens/s",
                l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.tokens_per_s
            );
        }
        o.push('\n');
        let rows: Vec<Vec<String>> = self
            .fields
            .iter()
            .map(|f| {
                vec![
                    if f.kind == FieldKind::ListItem {
                        format!("  {}", f.key)
                    } else {
                        f.key.clone()
                    },
                    f.n.to_string(),
                    pct(f.exact_rate),
                    pct(f.normalized_rate),
                    f.missing.to_string(),
                    f.wrong_type.to_string(),
                ]
            })
            .collect();
        o.push_str(&text_table(
            &["field", "n", "exact", "normalised", "missing", "wrong type"],
            &rows,
        ));
        if self.fields.iter().any(|f| f.kind == FieldKind::ListItem) {
            o.push_str("(indented: list sub-fields, scored as F1 over matched items)\n");
        }
        if !self.lists.is_empty() {
            o.push('\n');
            let rows: Vec<Vec<String>> = self
                .lists
                .iter()
                .map(|l| {
                    vec![
                        l.key.clone(),
                        l.truth_items.to_string(),
                        l.pred_items.to_string(),
                        pct(l.precision),
                        pct(l.recall),
                        pct(l.f1),
                        l.duplicates.to_string(),
                        l.empty_predictions.to_string(),
                    ]
                })
                .collect();
            o.push_str(&text_table(
                &[
                    "list",
                    "truth",
                    "predicted",
                    "precision",
                    "recall",
                    "F1",
                    "duplicates",
                    "empty",
                ],
                &rows,
            ));
        }
        if !self.extra_fields.is_empty() {
            let extras: Vec<String> = self
                .extra_fields
                .iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect();
            let _ = writeln!(o, "\nextra fields: {}", extras.join(", "));
        }
        o.push_str(&self.errors_table());
        if let Some(w) = self.worst.first() {
            let diffs: Vec<String> = w.diffs().take(4).map(|f| f.path.clone()).collect();
            let _ = writeln!(
                o,
                "\nworst: record {} (score {}): {}",
                w.index,
                pct(w.score),
                if w.valid_json {
                    diffs.join(", ")
                } else {
                    "invalid JSON".into()
                }
            );
        }
        o
    }

    /// A self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut b = String::new();
        let title = format!("smolt eval — {}", self.label);
        b.push_str(&page_head(&title));
        let _ = write!(
            b,
            "<header><h1>{}</h1><p class=\"sub\">{} records</p></header>",
            esc(&title),
            self.n_records
        );
        let mut cards = vec![
            ("Valid JSON".to_string(), pct(self.validity_rate)),
            (
                "Record exact match".to_string(),
                pct(self.record_match_rate),
            ),
            ("Mean field score".to_string(), pct(self.mean_score)),
        ];
        if let Some(l) = self.lists.first() {
            cards.push((format!("{} F1", l.key), pct(l.f1)));
        }
        if let Some(l) = &self.latency {
            cards.push(("Latency p50".to_string(), format!("{:.0} ms", l.p50_ms)));
            cards.push(("Tokens / s".to_string(), format!("{:.1}", l.tokens_per_s)));
        }
        b.push_str(&cards_html(&cards));

        b.push_str("<section><h2>Fields</h2><p class=\"note\"><span class=\"sw ex\"></span>exact <span class=\"sw no\"></span>after normalisation; numbers on the right: normalised, then exact in grey. List sub-fields (·) show F1 over matched items.</p>");
        let bars: Vec<(String, f64, f64)> = self
            .fields
            .iter()
            .map(|f| {
                (
                    if f.kind == FieldKind::ListItem {
                        format!("· {}", f.key)
                    } else {
                        f.key.clone()
                    },
                    f.exact_rate,
                    f.normalized_rate,
                )
            })
            .collect();
        b.push_str(&field_bars_svg(&bars));
        b.push_str("</section>");

        if !self.lists.is_empty() {
            b.push_str("<section><h2>Lists</h2><table class=\"grid\"><thead><tr><th>list</th><th>truth items</th><th>predicted</th><th>precision</th><th>recall</th><th>F1</th><th>duplicates</th><th>empty predictions</th></tr></thead><tbody>");
            for l in &self.lists {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&l.key),
                    l.truth_items,
                    l.pred_items,
                    pct(l.precision),
                    pct(l.recall),
                    pct(l.f1),
                    l.duplicates,
                    l.empty_predictions
                );
            }
            b.push_str("</tbody></table></section>");
        }
        if !self.extra_fields.is_empty() {
            b.push_str("<section><h2>Extra fields</h2><p>");
            let extras: Vec<String> = self
                .extra_fields
                .iter()
                .map(|(k, n)| format!("<code>{}</code> ×{n}", esc(k)))
                .collect();
            b.push_str(&extras.join(", "));
            b.push_str("</p></section>");
        }
        b.push_str(&self.errors_html());
        if let Some(c) = &self.calibration {
            b.push_str(&c.to_html());
        }
        if let Some(l) = &self.latency {
            let _ = write!(
                b,
                "<section><h2>Latency</h2><p class=\"note\">{} records · mean {:.0} ms · p50 {:.0} · p90 {:.0} · p99 {:.0} · max {:.0} ms · {:.1} tokens/s</p>",
                l.n, l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.tokens_per_s
            );
            b.push_str(&latency_svg(l));
            b.push_str("</section>");
        }
        if !self.worst.is_empty() {
            let _ = write!(b, "<section><h2>Worst {} records</h2><p class=\"note\">Rows in red differ from the truth; yellow match only after normalisation; violet are extra.</p>", self.worst.len());
            for w in &self.worst {
                let _ = write!(
                    b,
                    "<article class=\"rec\"><h3>Record {} <span class=\"score\">score {}</span>",
                    w.index,
                    pct(w.score)
                );
                if !w.valid_json {
                    b.push_str(" <span class=\"badge\">invalid JSON</span>");
                }
                b.push_str("</h3><div class=\"side\">");
                if let Some(inp) = &w.input {
                    let _ = write!(
                        b,
                        "<div class=\"input\"><div class=\"lab\">input</div><pre>{}</pre></div>",
                        esc(inp)
                    );
                }
                b.push_str("<div class=\"cmp\">");
                if w.prediction.is_some() {
                    b.push_str(&fields_table(&w.fields));
                } else {
                    // Every field is missing: a table of dashes says less than the two texts.
                    let truth = w.truth.to_string();
                    let _ = write!(
                        b,
                        "<p class=\"note\">Output is not JSON: all {} fields count as missing.</p><div class=\"lab\">raw output</div><pre class=\"raw bad\">{}</pre><div class=\"lab\">truth</div><pre>{}</pre>",
                        w.fields.len(),
                        esc(&w.raw),
                        esc(&truth)
                    );
                }
                if !w.valid_json && w.prediction.is_some() {
                    let _ = write!(
                        b,
                        "<div class=\"lab\">raw output (scored leniently)</div><pre class=\"raw\">{}</pre>",
                        esc(&w.raw)
                    );
                }
                b.push_str("</div></div></article>");
            }
            b.push_str("</section>");
        }
        b.push_str("<footer>Generated by smolt-eval.</footer></body></html>\n");
        b
    }
}

impl EvalReport {
    /// The error kinds that occur, in [`ErrorKind::ALL`]'s order.
    fn error_kinds(&self) -> Vec<ErrorKind> {
        ErrorKind::ALL
            .into_iter()
            .filter(|k| self.errors.iter().any(|e| e.count(*k) > 0))
            .collect()
    }

    /// Why fields were wrong (one row per field with errors) and how decoding went.
    fn errors_table(&self) -> String {
        let mut o = String::new();
        let kinds = self.error_kinds();
        if !kinds.is_empty() {
            let mut header = vec!["errors by kind"];
            header.extend(kinds.iter().map(|k| k.label()));
            let rows: Vec<Vec<String>> = self
                .errors
                .iter()
                .map(|e| {
                    let mut row = vec![e.key.clone()];
                    row.extend(kinds.iter().map(|k| e.count(*k).to_string()));
                    row
                })
                .collect();
            o.push('\n');
            o.push_str(&text_table(&header, &rows));
        }
        let d = &self.decoding;
        if d.any() {
            let _ = writeln!(o, "decoding: {}", d.sentence(", "));
        }
        o
    }

    fn errors_html(&self) -> String {
        let mut b = String::new();
        let kinds = self.error_kinds();
        let d = &self.decoding;
        if kinds.is_empty() && !d.any() {
            return b;
        }
        b.push_str("<section><h2>Errors by kind</h2><p class=\"note\">Each wrong field in the first kind that applies: truncated answer, missing, format (not a number/date), spacing/punctuation only, truth not in the input, copied from the wrong place, wrong value. Examples: truth → prediction.</p>");
        if !kinds.is_empty() {
            b.push_str("<table class=\"grid\"><thead><tr><th>field</th>");
            for k in &kinds {
                let _ = write!(b, "<th>{}</th>", esc(k.label()));
            }
            b.push_str("</tr></thead><tbody>");
            for e in &self.errors {
                let _ = write!(b, "<tr><td>{}</td>", esc(&e.key));
                for k in &kinds {
                    let examples: Vec<String> = e
                        .examples
                        .get(k)
                        .map(|v| {
                            v.iter()
                                .map(|x| {
                                    format!(
                                        "#{}: {} → {}",
                                        x.record,
                                        short(&x.truth),
                                        short(&x.pred)
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let _ = write!(
                        b,
                        "<td title=\"{}\">{}</td>",
                        esc(&examples.join("\n")),
                        e.count(*k)
                    );
                }
                b.push_str("</tr>");
            }
            b.push_str("</tbody></table><p class=\"note\">Hover a count for examples.</p>");
        }
        if d.any() {
            let _ = write!(b, "<p>Decoding: {}.</p>", esc(&d.sentence(" · ")));
        }
        b.push_str("</section>");
        b
    }
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Exact => "ok",
        Status::Normalized => "norm",
        Status::Wrong | Status::Missing | Status::WrongType => "bad",
        Status::Extra => "extra",
    }
}

fn fields_table(fields: &[FieldResult]) -> String {
    let mut b = String::from("<table class=\"fields\"><thead><tr><th>field</th><th>truth</th><th>prediction</th><th></th></tr></thead><tbody>");
    for f in fields {
        let label = match f.status {
            Status::Exact => "",
            Status::Normalized => "≈",
            Status::Wrong => "wrong",
            Status::Missing => "missing",
            Status::WrongType => "type",
            Status::Extra => "extra",
        };
        let _ = write!(
            b,
            "<tr class=\"{}\"><td class=\"path\">{}</td><td>{}</td><td>{}</td><td class=\"st\">{}</td></tr>",
            status_class(f.status),
            esc(&f.path),
            esc(&short(&f.truth)),
            esc(&short(&f.pred)),
            label
        );
    }
    b.push_str("</tbody></table>");
    b
}

/// The row of headline numbers at the top of a report: (label, value) per card.
pub(crate) fn cards_html(cards: &[(String, String)]) -> String {
    let mut b = String::from("<section class=\"cards\">");
    for (k, v) in cards {
        let _ = write!(
            b,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
            esc(k),
            esc(v)
        );
    }
    b.push_str("</section>");
    b
}

pub(crate) fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{}</style></head><body>",
        esc(title),
        CSS
    )
}

const CSS: &str = "
:root{--ink:#1d2430;--mute:#5b6675;--line:#e3e7ee;--ex:#b9c6d8;--no:#2f6fd0;--b:#e8663d;--bg:#f6f8fb}
*{box-sizing:border-box}
body{margin:0;padding:28px 36px;font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:var(--ink);background:var(--bg)}
header h1{margin:0;font-size:24px;font-weight:650}
.sub,.note{color:var(--mute);margin:4px 0 12px}
h2{font-size:17px;margin:0 0 6px}
h3{font-size:14px;margin:0 0 8px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:16px 0}
section.cards{display:flex;gap:12px;flex-wrap:wrap;background:none;border:none;padding:0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 16px;min-width:150px;flex:1}
.card .k{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:26px;font-weight:650;margin-top:2px}
table{border-collapse:collapse;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;color:var(--mute);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
table.grid td:not(:first-child),table.grid th:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
.pos{color:#16803c;font-weight:600}.neg{color:#c0392b;font-weight:600}
.rec{border-top:1px solid var(--line);padding-top:14px;margin-top:14px}
.rec:first-of-type{border-top:none;margin-top:4px;padding-top:0}
.score{color:var(--mute);font-weight:400;margin-left:8px}
.badge{background:#c0392b;color:#fff;border-radius:4px;padding:1px 6px;font-size:11px;margin-left:6px}
.side{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.4fr);gap:16px}
.side>.cmp:only-child{grid-column:1/-1}
pre{margin:0;background:#f3f5f8;border:1px solid var(--line);border-radius:6px;padding:8px 10px;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word;max-height:520px;overflow:auto}
.lab{font-size:11px;color:var(--mute);text-transform:uppercase;letter-spacing:.04em;margin:0 0 4px}
table.fields td{font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;word-break:break-word}
table.fields td.path{color:var(--mute);white-space:nowrap}table.fields td.st{white-space:nowrap;text-align:right}
tr.bad td{background:#fde4e1}tr.bad td.st{color:#c0392b;font-weight:600}
tr.norm td{background:#fff5d6}pre.bad{background:#fdf0ee;border-color:#f3c9c3}tr.extra td{background:#efe7fb}
span.sw{display:inline-block;width:12px;height:10px;border-radius:2px;margin:0 5px 0 10px;vertical-align:-1px}span.sw.ex{background:#b9c6d8;margin-left:0}span.sw.no{background:#2f6fd0}
svg text{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}
footer{color:var(--mute);font-size:12px;margin-top:20px}
";

/// Horizontal bars, two per field (exact over normalised). `rows`: (label, exact, normalised).
pub(crate) fn field_bars_svg(rows: &[(String, f64, f64)]) -> String {
    let label_w = 200.0;
    let bar_w = 760.0;
    let row_h = 26.0;
    let h = rows.len() as f64 * row_h + 30.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {} {h}\" role=\"img\" aria-label=\"per-field accuracy\">",
        label_w + bar_w + 110.0
    );
    for t in 0..=4 {
        let x = label_w + bar_w * t as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{x}\" y1=\"0\" x2=\"{x}\" y2=\"{}\" stroke=\"#e3e7ee\"/><text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"middle\">{}%</text>",
            h - 22.0,
            h - 8.0,
            t * 25
        );
    }
    for (i, (label, ex, no)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12.5\" fill=\"#1d2430\" text-anchor=\"end\">{}</text>",
            label_w - 10.0,
            y + 14.0,
            esc(label)
        );
        let _ = write!(
            s,
            "<rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"8\" rx=\"2\" fill=\"#b9c6d8\"><title>exact {}</title></rect>",
            bar_w * ex.clamp(0.0, 1.0),
            pct(*ex)
        );
        let _ = write!(
            s,
            "<rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"10\" rx=\"2\" fill=\"#2f6fd0\"><title>normalised {}</title></rect>",
            y + 9.0,
            bar_w * no.clamp(0.0, 1.0),
            pct(*no)
        );
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#1d2430\"><tspan font-weight=\"600\">{}</tspan><tspan fill=\"#8a94a3\" dx=\"6\">{}</tspan></text>",
            label_w + bar_w + 8.0,
            y + 14.0,
            pct(*no),
            pct(*ex)
        );
    }
    s.push_str("</svg>");
    s
}

fn latency_svg(l: &LatencyStats) -> String {
    let (w, h, left, bottom) = (960.0, 220.0, 50.0, 30.0);
    let plot_w = w - left - 20.0;
    let plot_h = h - bottom - 10.0;
    let max_c = l.histogram.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let (lo, hi) = (
        l.histogram.first().map_or(0.0, |b| b.0),
        l.histogram.last().map_or(1.0, |b| b.1),
    );
    let span = (hi - lo).max(1e-9);
    let x_of = |ms: f64| left + plot_w * (ms - lo) / span;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"latency histogram\">");
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#5b6675\"/>",
        10.0 + plot_h,
        left + plot_w,
        10.0 + plot_h
    );
    let n = l.histogram.len().max(1) as f64;
    for (i, (a, b, c)) in l.histogram.iter().enumerate() {
        let bh = plot_h * *c as f64 / max_c;
        let x = left + plot_w * i as f64 / n;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#2f6fd0\" opacity=\"0.85\"><title>{a:.0}–{b:.0} ms: {c}</title></rect>",
            x + 1.0,
            10.0 + plot_h - bh,
            (plot_w / n - 2.0).max(1.0)
        );
    }
    for t in 0..=4 {
        let ms = lo + span * t as f64 / 4.0;
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"middle\">{ms:.0} ms</text>", x_of(ms), h - 8.0);
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"18\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"end\">{}</text>",
        left - 6.0,
        max_c as usize
    );
    for (name, v, color) in [
        ("p50", l.p50_ms, "#16803c"),
        ("p90", l.p90_ms, "#e8663d"),
        ("p99", l.p99_ms, "#c0392b"),
    ] {
        let x = x_of(v);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"10\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{color}\" stroke-dasharray=\"4 3\" stroke-width=\"1.5\"/><text x=\"{:.1}\" y=\"22\" font-size=\"11\" fill=\"{color}\">{name}</text>",
            10.0 + plot_h,
            x + 3.0
        );
    }
    s.push_str("</svg>");
    s
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
        // The accuracy axis starts at the lowest accuracy drawn, rounded down to a tenth:
        // a model at 90% or more would otherwise draw every curve in the top tenth.
        let lowest = std::iter::once(&self.records)
            .chain(self.fields.iter().map(|f| &f.points))
            .flatten()
            .filter_map(|p| p.accuracy)
            .fold(1.0f64, f64::min);
        let lo = ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9);
        let y_of = |a: f64| y0 + h * (1.0 - (a - lo) / (1.0 - lo));
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"accuracy against coverage\">",
            x0 + w + 220.0,
            y0 + h + 44.0
        );
        for t in 0..=4 {
            let f = t as f64 / 4.0;
            let (x, y) = (x0 + w * f, y_of(lo + (1.0 - lo) * f));
            let _ = write!(
                s,
                "<line x1=\"{x}\" y1=\"{y0}\" x2=\"{x}\" y2=\"{}\" stroke=\"#e3e7ee\"/><text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"middle\">{}%</text>",
                y0 + h,
                y0 + h + 16.0,
                t * 25
            );
            let _ = write!(
                s,
                "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e3e7ee\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#5b6675\" text-anchor=\"end\">{:.0}%</text>",
                x0 + w,
                x0 - 6.0,
                y + 4.0,
                100.0 * (lo + (1.0 - lo) * f)
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
                        .map(|a| format!("{:.1},{:.1}", x0 + w * p.coverage, y_of(a)))
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
