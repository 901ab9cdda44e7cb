//! How a newer set of records differs from the one a model was trained on: input lengths, the
//! layouts of input lines (a new date format, a new till), and each answer field's values and
//! formats. The point is to see a shift before accuracy falls, and to know what to label next.
//!
//! Layouts are compared as *shapes*: each run of digits becomes `9`, of capitals `A`, of small
//! letters `a`, other characters stay (`"Thu Oct 29 2020 12:33pm"` → `"Aa Aa 9 9 9:9a"`). A shape
//! the old set never shows is a format the model has not seen, whatever its words and numbers.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::Record;

/// Input lengths of one set, in characters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lengths {
    pub n: usize,
    pub mean: f64,
    pub p50: usize,
    pub p90: usize,
    pub max: usize,
}

/// A shape the old set never shows, how often the new set has it, and one example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewShape {
    pub shape: String,
    pub count: usize,
    pub example: String,
}

/// One answer field across the two sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDrift {
    pub key: String,
    /// Records of each set that have the field (not null).
    pub old_n: usize,
    pub new_n: usize,
    /// Share of the new set's values that no old record has.
    pub unseen_values: f64,
    /// Share of the new set's values whose shape no old value has.
    pub unseen_shapes: f64,
    /// The most frequent unseen shapes.
    pub new_shapes: Vec<NewShape>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub old: Lengths,
    pub new: Lengths,
    /// Kolmogorov-Smirnov distance between the two length distributions (0: same, 1: apart).
    pub length_shift: f64,
    /// Share of the new set's non-empty input lines whose shape the old set never shows, and
    /// share of new records with at least one such line.
    pub unseen_line_shapes: f64,
    pub records_with_unseen_lines: f64,
    pub new_line_shapes: Vec<NewShape>,
    pub fields: Vec<FieldDrift>,
}

/// Runs of digits → `9`, capitals → `A`, small letters → `a` (any script's case); everything
/// else kept; spaces collapsed to one.
pub fn shape(s: &str) -> String {
    let mut out = String::new();
    let mut last: Option<char> = None;
    for c in s.trim().chars() {
        let class = if c.is_ascii_digit() {
            '9'
        } else if c.is_uppercase() {
            'A'
        } else if c.is_alphabetic() {
            'a'
        } else if c.is_whitespace() {
            ' '
        } else {
            c
        };
        let run = matches!(class, '9' | 'A' | 'a' | ' ');
        if run && last == Some(class) {
            continue;
        }
        out.push(class);
        last = Some(class);
    }
    out
}

fn lengths(records: &[Record]) -> Lengths {
    let mut l: Vec<usize> = records.iter().map(|r| r.input.chars().count()).collect();
    l.sort_unstable();
    let at = |q: f64| {
        if l.is_empty() {
            0
        } else {
            l[((l.len() - 1) as f64 * q).round() as usize]
        }
    };
    Lengths {
        n: l.len(),
        mean: if l.is_empty() {
            0.0
        } else {
            l.iter().sum::<usize>() as f64 / l.len() as f64
        },
        p50: at(0.5),
        p90: at(0.9),
        max: l.last().copied().unwrap_or(0),
    }
}

/// The largest gap between the two empirical distribution functions.
pub fn ks_distance(a: &[usize], b: &[usize]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// Counts each unseen shape among `items` (shape, original), most frequent first.
fn new_shapes<'a>(
    items: impl Iterator<Item = (String, &'a str)>,
    seen: &HashSet<String>,
    top: usize,
) -> (usize, usize, Vec<NewShape>) {
    let (mut total, mut unseen) = (0, 0);
    let mut counts: HashMap<String, (usize, &str)> = HashMap::new();
    for (s, example) in items {
        total += 1;
        if !seen.contains(&s) {
            unseen += 1;
            counts.entry(s).or_insert((0, example)).0 += 1;
        }
    }
    let mut list: Vec<NewShape> = counts
        .into_iter()
        .map(|(shape, (count, example))| NewShape {
            shape,
            count,
            example: example.to_string(),
        })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then(a.shape.cmp(&b.shape)));
    list.truncate(top);
    (total, unseen, list)
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Compares `new` with `old` (the records a model was trained on).
pub fn drift(old: &[Record], new: &[Record]) -> DriftReport {
    let lines = |rs: &[Record]| -> Vec<(usize, String)> {
        rs.iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.input
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(move |l| (i, l.to_string()))
            })
            .collect()
    };
    let old_shapes: HashSet<String> = lines(old).iter().map(|(_, l)| shape(l)).collect();
    let new_lines = lines(new);
    let (total, unseen, new_line_shapes) = new_shapes(
        new_lines.iter().map(|(_, l)| (shape(l), l.as_str())),
        &old_shapes,
        12,
    );
    let records_unseen: HashSet<usize> = new_lines
        .iter()
        .filter(|(_, l)| !old_shapes.contains(&shape(l)))
        .map(|(i, _)| *i)
        .collect();

    // Top-level answer fields, in the order the old set shows them (then new ones).
    let mut keys: Vec<String> = Vec::new();
    for r in old.iter().chain(new) {
        if let Value::Object(o) = &r.output {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let values = |rs: &[Record], k: &str| -> Vec<String> {
        rs.iter()
            .filter_map(|r| r.output.get(k).and_then(value_text))
            .collect()
    };
    let fields = keys
        .iter()
        .map(|k| {
            let (o, n) = (values(old, k), values(new, k));
            let seen_values: HashSet<&String> = o.iter().collect();
            let seen_shapes: HashSet<String> = o.iter().map(|v| shape(v)).collect();
            let (_, unseen_shape, new_shapes) =
                new_shapes(n.iter().map(|v| (shape(v), v.as_str())), &seen_shapes, 5);
            FieldDrift {
                key: k.clone(),
                old_n: o.len(),
                new_n: n.len(),
                unseen_values: share(
                    n.iter().filter(|v| !seen_values.contains(v)).count(),
                    n.len(),
                ),
                unseen_shapes: share(unseen_shape, n.len()),
                new_shapes,
            }
        })
        .collect();

    let len =
        |rs: &[Record]| -> Vec<usize> { rs.iter().map(|r| r.input.chars().count()).collect() };
    DriftReport {
        old: lengths(old),
        new: lengths(new),
        length_shift: ks_distance(&len(old), &len(new)),
        unseen_line_shapes: share(unseen, total),
        records_with_unseen_lines: share(records_unseen.len(), new.len()),
        new_line_shapes,
        fields,
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl DriftReport {
    /// The terminal view.
    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "inputs (characters)   old: {} records, mean {:.0}, p50 {}, p90 {}, max {}",
            self.old.n, self.old.mean, self.old.p50, self.old.p90, self.old.max
        );
        let _ = writeln!(
            o,
            "                      new: {} records, mean {:.0}, p50 {}, p90 {}, max {}",
            self.new.n, self.new.mean, self.new.p50, self.new.p90, self.new.max
        );
        let _ = writeln!(
            o,
            "length shift (KS distance, 0 same .. 1 apart): {:.2}",
            self.length_shift
        );
        let _ = writeln!(
            o,
            "\ninput lines with a layout the old set never shows: {} of new lines, in {} of new records",
            pct(self.unseen_line_shapes),
            pct(self.records_with_unseen_lines)
        );
        for s in &self.new_line_shapes {
            let _ = writeln!(
                o,
                "  {:>5}×  {:<32}  e.g. {}",
                s.count,
                s.shape,
                s.example.trim()
            );
        }
        if !self.fields.is_empty() {
            let _ = writeln!(
                o,
                "\n{:<20} {:>6} {:>6} {:>14} {:>14}   new formats (e.g.)",
                "field", "old", "new", "unseen values", "unseen format"
            );
            for f in &self.fields {
                let examples: Vec<String> = f
                    .new_shapes
                    .iter()
                    .take(3)
                    .map(|s| format!("{} ×{}", s.example, s.count))
                    .collect();
                let _ = writeln!(
                    o,
                    "{:<20} {:>6} {:>6} {:>14} {:>14}   {}",
                    f.key,
                    f.old_n,
                    f.new_n,
                    pct(f.unseen_values),
                    pct(f.unseen_shapes),
                    examples.join(", ")
                );
            }
        }
        o
    }

    /// A self-contained HTML page: the two length distributions drawn over each other, the
    /// unseen line layouts and the field table.
    pub fn to_html(&self, old_lengths: &[usize], new_lengths: &[usize]) -> String {
        let mut b = String::from("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>smolt data drift</title><style>body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:28px 36px;color:#1d2430}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #e3e7ee;text-align:left}code{background:#f3f5f8;padding:1px 4px}.note{color:#5b6675}</style></head><body><h1>Data drift</h1>");
        let _ = write!(
            b,
            "<p class=\"note\">old: {} records · new: {} records · length shift (KS) {:.2} · {} of new input lines (in {} of new records) have a layout the old set never shows</p>",
            self.old.n,
            self.new.n,
            self.length_shift,
            pct(self.unseen_line_shapes),
            pct(self.records_with_unseen_lines)
        );
        b.push_str("<h2>Input length (characters)</h2>");
        b.push_str(&length_svg(old_lengths, new_lengths));
        b.push_str("<h2>Input line layouts the old set never shows</h2><table><tr><th>count</th><th>shape</th><th>example</th></tr>");
        for s in &self.new_line_shapes {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                s.count,
                esc(&s.shape),
                esc(s.example.trim())
            );
        }
        b.push_str("</table><h2>Answer fields</h2><table><tr><th>field</th><th>old</th><th>new</th><th>unseen values</th><th>unseen formats</th><th>new formats</th></tr>");
        for f in &self.fields {
            let ex: Vec<String> = f
                .new_shapes
                .iter()
                .map(|s| format!("<code>{}</code> ×{}", esc(&s.example), s.count))
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.key),
                f.old_n,
                f.new_n,
                pct(f.unseen_values),
                pct(f.unseen_shapes),
                ex.join(", ")
            );
        }
        b.push_str("</table><p class=\"note\">Shapes: runs of digits are 9, of capitals A, of small letters a. Generated by smolt data drift.</p></body></html>\n");
        b
    }
}

/// Two histograms of the same bins, old in grey and new in blue, as shares of each set.
fn length_svg(old: &[usize], new: &[usize]) -> String {
    const BINS: usize = 30;
    let max = old.iter().chain(new).copied().max().unwrap_or(1).max(1);
    let hist = |xs: &[usize]| {
        let mut h = [0usize; BINS];
        for &x in xs {
            h[(x * BINS / (max + 1)).min(BINS - 1)] += 1;
        }
        h.map(|c| share(c, xs.len()))
    };
    let (ho, hn) = (hist(old), hist(new));
    let top = ho
        .iter()
        .chain(hn.iter())
        .cloned()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (w, h) = (720.0, 200.0);
    let bw = w / BINS as f64;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"input lengths\">", w + 20.0, h + 40.0);
    for (i, (a, b)) in ho.iter().zip(hn.iter()).enumerate() {
        let x = 10.0 + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#b9c6d8\"/><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2f6fd0\" fill-opacity=\"0.75\"/>",
            h - h * a / top,
            bw / 2.0,
            h * a / top,
            x + bw / 2.0,
            h - h * b / top,
            bw / 2.0,
            h * b / top
        );
    }
    let _ = write!(
        s,
        "<text x=\"10\" y=\"{}\" font-size=\"12\">0</text><text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{max} characters</text><text x=\"{}\" y=\"14\" font-size=\"12\" text-anchor=\"end\"><tspan fill=\"#8a94a3\">■ old</tspan> <tspan fill=\"#2f6fd0\">■ new</tspan></text></svg>",
        h + 16.0,
        w + 10.0,
        h + 16.0,
        w + 10.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(input: &str, output: Value) -> Record {
        Record {
            input: input.into(),
            output,
        }
    }

    #[test]
    fn shapes_keep_layout_and_drop_content() {
        assert_eq!(shape("Thu Oct 29 2020 12:33pm"), "Aa Aa 9 9 9:9a");
        assert_eq!(shape("Fri Nov 13 2020 7:49am"), "Aa Aa 9 9 9:9a");
        assert_eq!(shape("  29/10/2020   12:33 "), "9/9/9 9:9");
        assert_eq!(shape("2020-10-29"), "9-9-9");
        assert_eq!(shape("TOTAL"), "A");
        assert_ne!(shape("29.10.2020"), shape("29/10/2020"));
    }

    #[test]
    fn the_ks_distance_is_zero_for_one_set_and_one_for_disjoint_ones() {
        assert_eq!(ks_distance(&[1, 2, 3], &[3, 2, 1]), 0.0);
        assert_eq!(ks_distance(&[1, 2], &[10, 20]), 1.0);
        // Half the mass moved past the rest.
        assert!((ks_distance(&[1, 2, 3, 4], &[1, 2, 30, 40]) - 0.5).abs() < 1e-12);
        assert_eq!(ks_distance(&[], &[1]), 0.0);
    }

    #[test]
    fn a_new_date_format_and_new_values_are_found() {
        let old = vec![
            rec(
                "SHOP A\n29/10/2019 12:33\nTOTAL 5.00",
                json!({"shop": "A", "date": "2019-10-29", "total": 5.0}),
            ),
            rec(
                "SHOP B\n01/02/2019 09:10\nTOTAL 7.50",
                json!({"shop": "B", "date": "2019-02-01", "total": 7.5}),
            ),
        ];
        let new = vec![
            rec(
                "SHOP A\nThu Oct 29 2020 12:33pm\nTOTAL 5.00",
                json!({"shop": "A", "date": "2020-10-29", "total": 5.0}),
            ),
            rec(
                "SHOP C\n03/03/2020 10:00\nTOTAL 1.25",
                json!({"shop": "C", "date": "2020-03-03", "total": 1.25, "tip": null}),
            ),
        ];
        let r = drift(&old, &new);
        // Six new lines, one of a layout never seen.
        assert!((r.unseen_line_shapes - 1.0 / 6.0).abs() < 1e-12, "{r:?}");
        assert_eq!(r.records_with_unseen_lines, 0.5);
        assert_eq!(r.new_line_shapes.len(), 1);
        assert_eq!(r.new_line_shapes[0].example, "Thu Oct 29 2020 12:33pm");
        let f = |k: &str| r.fields.iter().find(|f| f.key == k).unwrap();
        assert_eq!(f("shop").unseen_values, 0.5);
        assert_eq!(f("shop").unseen_shapes, 0.0);
        assert_eq!(f("date").unseen_values, 1.0);
        assert_eq!(f("date").unseen_shapes, 0.0);
        assert_eq!(f("total").unseen_values, 0.5);
        // A null field counts nowhere.
        assert_eq!((f("tip").old_n, f("tip").new_n), (0, 0));
        assert_eq!(r.old.n, 2);
        let t = r.to_table();
        assert!(t.contains("Thu Oct 29 2020 12:33pm"), "{t}");
        let h = r.to_html(&[10, 20], &[30, 40]);
        assert!(h.contains("<svg") && h.contains("Aa Aa 9 9 9:9a"));
    }
}
