//! A function-calling evaluation: each case checked by [`check_case`] as it comes
//! ([`ToolEvaluator`]), then one [`ToolCallReport`] — overall, per-tool and per-argument
//! accuracy, the kinds of problems, latency, and the worst cases next to their truth — that
//! eval.json, report.txt and report.html are rendered from; predictions.jsonl holds every case.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{check_case, Answer, CaseResult, Expected, Function, ToolCallStats, NO_CALL};
use crate::compare::Timing;
use crate::render::{cards_html, esc, field_bars_svg, page_head, pct, text_table};
use crate::report::{latency_of, LatencyStats};
use crate::versus::{latency_deltas, Comparison, Delta};

/// The `kind` of a tool-calling eval.json, which tells it from a field-by-field one.
pub const TOOL_CALLS_KIND: &str = "tool_calls";

/// How many failed cases a report shows.
const WORST: usize = 20;

/// One case to score: what was offered, answered and expected, and where it came from.
pub struct ToolSample<'a> {
    pub functions: &'a [Function],
    pub answer: Answer,
    pub expected: Expected,
    /// The request (the last user message), for the report.
    pub request: &'a str,
    /// The raw output.
    pub output: &'a str,
    /// Where the case came from (`file:line`).
    pub source: Option<String>,
    pub timing: Option<Timing>,
}

/// A scored case, as predictions.jsonl and the worst-case list show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredCase {
    pub index: usize,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub request: String,
    pub output: String,
    /// What the output was read as: `{"calls": [...]}`, `{"text": ...}` or `{"malformed": ...}`.
    pub prediction: Value,
    /// `{"calls": [{"name", "arguments": {argument: value, or {"any_of": [...]}}}]}` or
    /// `{"no_call": true}`.
    pub truth: Value,
    /// Why it failed (empty when it passed).
    pub problems: Vec<String>,
}

/// Scores cases one at a time, so a generation loop can report progress.
#[derive(Default)]
pub struct ToolEvaluator {
    cases: Vec<ScoredCase>,
    results: Vec<CaseResult>,
    timings: Vec<Timing>,
}

impl ToolEvaluator {
    pub fn new() -> ToolEvaluator {
        ToolEvaluator::default()
    }

    /// Checks one case and keeps it.
    pub fn add(&mut self, s: ToolSample) -> &CaseResult {
        let result = check_case(s.functions, &s.answer, &s.expected);
        self.cases.push(ScoredCase {
            index: self.cases.len(),
            passed: result.passed,
            source: s.source,
            request: s.request.to_string(),
            output: s.output.to_string(),
            prediction: answer_json(&s.answer),
            truth: expected_json(&s.expected),
            problems: result.problems.iter().map(|p| p.to_string()).collect(),
        });
        self.timings.extend(s.timing);
        self.results.push(result);
        self.results.last().expect("just pushed")
    }

    /// Every case so far, in order.
    pub fn cases(&self) -> &[ScoredCase] {
        &self.cases
    }

    /// The report of everything added so far.
    pub fn finish(&self, label: &str) -> ToolCallReport {
        let stats = ToolCallStats::from_results(&self.results);
        let well_formed = self
            .cases
            .iter()
            .filter(|c| c.prediction.get("malformed").is_none())
            .count();
        ToolCallReport {
            kind: TOOL_CALLS_KIND.to_string(),
            label: label.to_string(),
            n_cases: self.cases.len(),
            accuracy: stats.overall.accuracy(),
            well_formed_rate: if self.cases.is_empty() {
                0.0
            } else {
                well_formed as f64 / self.cases.len() as f64
            },
            stats,
            latency: latency_of(&self.timings),
            worst: self
                .cases
                .iter()
                .filter(|c| !c.passed)
                .take(WORST)
                .cloned()
                .collect(),
        }
    }

    /// predictions.jsonl: every case, one JSON line each.
    pub fn write_predictions(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::new();
        for c in &self.cases {
            text.push_str(&serde_json::to_string(c).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        std::fs::write(path, text)
    }
}

fn answer_json(a: &Answer) -> Value {
    match a {
        Answer::Text(t) => json!({"text": t}),
        Answer::Calls(calls) => json!({"calls": calls}),
        Answer::Malformed(m) => json!({"malformed": m}),
    }
}

fn expected_json(e: &Expected) -> Value {
    match e {
        Expected::NoCall => json!({"no_call": true}),
        Expected::Calls(calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| {
                    let args: Map<String, Value> = c
                        .arguments
                        .iter()
                        .map(|(k, v)| {
                            let v = match v.as_array().map(Vec::as_slice) {
                                Some([one]) => one.clone(),
                                _ => json!({"any_of": v}),
                            };
                            (k.clone(), v)
                        })
                        .collect();
                    json!({"name": c.name, "arguments": args})
                })
                .collect();
            json!({"calls": calls})
        }
    }
}

/// A case's prediction or truth as one short line: `name({...})`, the text, or why not.
fn brief(v: &Value) -> String {
    if let Some(calls) = v.get("calls").and_then(Value::as_array) {
        let each: Vec<String> = calls
            .iter()
            .map(|c| {
                format!(
                    "{}({})",
                    c.get("name").and_then(Value::as_str).unwrap_or("?"),
                    c.get("arguments").unwrap_or(&Value::Null)
                )
            })
            .collect();
        return each.join("; ");
    }
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return format!("text: {t:?}");
    }
    if let Some(m) = v.get("malformed").and_then(Value::as_str) {
        return format!("malformed: {m}");
    }
    if v.get("no_call").is_some() {
        return "no call".into();
    }
    v.to_string()
}

/// The evaluation of one model on a set of function-calling cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallReport {
    /// Always [`TOOL_CALLS_KIND`].
    pub kind: String,
    pub label: String,
    pub n_cases: usize,
    /// Cases passed by the leaderboard's rules, over all cases.
    pub accuracy: f64,
    /// Outputs read as calls or text (not malformed calls).
    pub well_formed_rate: f64,
    pub stats: ToolCallStats,
    pub latency: Option<LatencyStats>,
    /// The first failed cases, each next to its truth.
    pub worst: Vec<ScoredCase>,
}

impl ToolCallReport {
    /// `eval.json`, `report.html` and `report.txt` into `dir`.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("eval.json"),
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(dir.join("report.html"), self.to_html())?;
        std::fs::write(dir.join("report.txt"), self.to_table())
    }

    /// Reads an eval.json back; `None` when it is not a tool-calling report.
    pub fn read(path: &Path) -> std::io::Result<Option<ToolCallReport>> {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(path)?).map_err(std::io::Error::other)?;
        if v.get("kind").and_then(Value::as_str) != Some(TOOL_CALLS_KIND) {
            return Ok(None);
        }
        serde_json::from_value(v)
            .map(Some)
            .map_err(std::io::Error::other)
    }

    fn tool_rows(&self) -> Vec<Vec<String>> {
        self.stats
            .per_tool
            .iter()
            .map(|(t, r)| {
                vec![
                    t.clone(),
                    r.total.to_string(),
                    r.passed.to_string(),
                    pct(r.accuracy()),
                ]
            })
            .collect()
    }

    fn argument_rows(&self) -> Vec<Vec<String>> {
        self.stats
            .per_argument
            .iter()
            .map(|a| {
                vec![
                    format!("{}.{}", a.function, a.argument),
                    a.rate.total.to_string(),
                    a.rate.passed.to_string(),
                    pct(a.rate.accuracy()),
                ]
            })
            .collect()
    }

    /// The terminal view: headline numbers, per tool, per argument, problems, worst cases.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tool calls — {}", self.label);
        let _ = writeln!(
            s,
            "cases {}   accuracy {} ({} of {})   well-formed {}\n",
            self.n_cases,
            pct(self.accuracy),
            self.stats.overall.passed,
            self.stats.overall.total,
            pct(self.well_formed_rate)
        );
        s.push_str(&text_table(
            &["tool", "cases", "passed", "accuracy"],
            &self.tool_rows(),
        ));
        if !self.stats.per_argument.is_empty() {
            s.push('\n');
            s.push_str(&text_table(
                &["argument", "expected", "right", "accuracy"],
                &self.argument_rows(),
            ));
        }
        if !self.stats.problems.is_empty() {
            let p: Vec<String> = self
                .stats
                .problems
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(s, "\nproblems (failed cases with each): {}", p.join(", "));
        }
        if let Some(l) = &self.latency {
            let _ = writeln!(
                s,
                "latency p50 {:.0} ms, p90 {:.0} ms; {:.1} tokens/s",
                l.p50_ms, l.p90_ms, l.tokens_per_s
            );
        }
        if !self.worst.is_empty() {
            let _ = writeln!(s, "\nfailed cases (first {}):", self.worst.len());
            for c in self.worst.iter().take(5) {
                let _ = writeln!(
                    s,
                    "  #{}{}  {:?}\n    got   {}\n    truth {}\n    why   {}",
                    c.index,
                    c.source
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    c.request.chars().take(100).collect::<String>(),
                    brief(&c.prediction),
                    brief(&c.truth),
                    c.problems.join("; ")
                );
            }
        }
        s
    }

    /// A self-contained HTML page: cards, per-tool bars, per-argument table, worst cases
    /// next to their truth.
    pub fn to_html(&self) -> String {
        let mut b = String::new();
        let title = format!("smolt eval (tool calls) — {}", self.label);
        b.push_str(&page_head(&title));
        let _ = write!(
            b,
            "<header><h1>{}</h1><p class=\"sub\">{} cases, scored by the Berkeley Function Calling Leaderboard's AST rules</p></header>",
            esc(&title),
            self.n_cases
        );
        let mut cards = vec![
            ("Accuracy".to_string(), pct(self.accuracy)),
            ("Well-formed".to_string(), pct(self.well_formed_rate)),
        ];
        if let Some(r) = self.stats.per_tool.get(NO_CALL) {
            cards.push(("No-call cases".to_string(), pct(r.accuracy())));
        }
        if let Some(l) = &self.latency {
            cards.push(("Latency p50".to_string(), format!("{:.0} ms", l.p50_ms)));
        }
        b.push_str(&cards_html(&cards));
        b.push_str("<section><h2>Per tool</h2><p class=\"note\">A case counts for each function it expects; (no call) holds the cases where the right answer was not to call.</p>");
        let bars: Vec<(String, f64, f64)> = self
            .stats
            .per_tool
            .iter()
            .map(|(t, r)| (format!("{t} ({})", r.total), r.accuracy(), r.accuracy()))
            .collect();
        b.push_str(&field_bars_svg(&bars));
        b.push_str("</section>");
        let table = |b: &mut String, header: &[&str], rows: &[Vec<String>]| {
            b.push_str("<table class=\"grid\"><tr>");
            for h in header {
                let _ = write!(b, "<th>{}</th>", esc(h));
            }
            b.push_str("</tr>");
            for r in rows {
                b.push_str("<tr>");
                for c in r {
                    let _ = write!(b, "<td>{}</td>", esc(c));
                }
                b.push_str("</tr>");
            }
            b.push_str("</table>");
        };
        if !self.stats.per_argument.is_empty() {
            b.push_str("<section><h2>Per argument</h2><p class=\"note\">Every argument of every expected call: right when present (or rightly absent) with an acceptable value of the right type.</p>");
            table(
                &mut b,
                &["argument", "expected", "right", "accuracy"],
                &self.argument_rows(),
            );
            b.push_str("</section>");
        }
        if !self.stats.problems.is_empty() {
            b.push_str("<section><h2>Problems</h2>");
            let rows: Vec<Vec<String>> = self
                .stats
                .problems
                .iter()
                .map(|(k, n)| vec![k.clone(), n.to_string()])
                .collect();
            table(&mut b, &["kind", "failed cases"], &rows);
            b.push_str("</section>");
        }
        if !self.worst.is_empty() {
            b.push_str("<section><h2>Failed cases, next to the truth</h2>");
            for c in &self.worst {
                let _ = write!(
                    b,
                    "<div class=\"rec\"><h3>#{}{}</h3><p>{}</p><div class=\"side\"><div class=\"cmp\"><p class=\"lab\">model</p><pre class=\"bad\">{}</pre></div><div class=\"cmp\"><p class=\"lab\">truth</p><pre>{}</pre></div></div><p class=\"note\">{}</p></div>",
                    c.index,
                    c.source
                        .as_deref()
                        .map(|s| format!(" <span class=\"score\">{}</span>", esc(s)))
                        .unwrap_or_default(),
                    esc(&c.request),
                    esc(&brief(&c.prediction)),
                    esc(&brief(&c.truth)),
                    esc(&c.problems.join("; "))
                );
            }
            b.push_str("</section>");
        }
        b.push_str("<footer>smolt · tool-call evaluation</footer></body></html>");
        b
    }

    /// This report (the baseline, A) against `other` (B): accuracy, well-formed answers and
    /// latency as the headline; one row per expected tool (and the no-call cases), then one
    /// per argument.
    pub fn compare(&self, other: &ToolCallReport) -> Comparison {
        let rate = |metric: String, a: Option<f64>, b: Option<f64>| Delta {
            metric,
            a,
            b,
            higher_is_better: true,
            is_rate: true,
        };
        let mut headline = vec![
            rate("accuracy".into(), Some(self.accuracy), Some(other.accuracy)),
            rate(
                "well-formed answers".into(),
                Some(self.well_formed_rate),
                Some(other.well_formed_rate),
            ),
        ];
        headline.extend(latency_deltas(
            self.latency.as_ref(),
            other.latency.as_ref(),
        ));
        let mut tools: Vec<&String> = self.stats.per_tool.keys().collect();
        tools.extend(other.stats.per_tool.keys());
        tools.sort();
        tools.dedup();
        let mut rows: Vec<Delta> = tools
            .into_iter()
            .map(|t| {
                let acc = |r: &ToolCallReport| r.stats.per_tool.get(t).map(|r| r.accuracy());
                rate(format!("tool {t}"), acc(self), acc(other))
            })
            .collect();
        let mut args: Vec<(&str, &str)> = Vec::new();
        for s in self
            .stats
            .per_argument
            .iter()
            .chain(&other.stats.per_argument)
        {
            if !args.contains(&(&s.function, &s.argument)) {
                args.push((&s.function, &s.argument));
            }
        }
        rows.extend(args.into_iter().map(|(f, a)| {
            let acc = |r: &ToolCallReport| {
                r.stats
                    .per_argument
                    .iter()
                    .find(|s| s.function == f && s.argument == a)
                    .map(|s| s.rate.accuracy())
            };
            rate(format!("{f}.{a}"), acc(self), acc(other))
        }));
        Comparison {
            a_label: self.label.clone(),
            b_label: other.label.clone(),
            headline,
            rows_title: "Tools and arguments".into(),
            fields: rows,
            fields_exact: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Call, ExpectedCall};
    use super::*;

    fn functions() -> Vec<Function> {
        Function::list_from_json(
            &json!([{"type": "function", "function": {"name": "set_light",
            "parameters": {"type": "object", "properties": {
                "room": {"type": "string"}, "level": {"type": "integer"}},
                "required": ["room"]}}}]),
        )
        .unwrap()
    }

    #[test]
    fn a_report_counts_per_tool_and_argument_and_shows_failures_next_to_the_truth() {
        let f = functions();
        let truth = |room: &str| {
            Expected::Calls(vec![ExpectedCall::exact(&Call::new(
                "set_light",
                json!({"room": room, "level": 3}),
            ))])
        };
        let mut ev = ToolEvaluator::new();
        let cases = [
            (
                Answer::Calls(vec![Call::new(
                    "set_light",
                    json!({"room": "Kitchen", "level": 3}),
                )]),
                truth("kitchen"),
            ),
            (
                Answer::Calls(vec![Call::new(
                    "set_light",
                    json!({"room": "hall", "level": 3}),
                )]),
                truth("<attic>"),
            ),
            (Answer::Text("Sorry".into()), Expected::NoCall),
            (Answer::Malformed("cut off".into()), truth("bath")),
        ];
        for (i, (answer, expected)) in cases.into_iter().enumerate() {
            ev.add(ToolSample {
                functions: &f,
                answer,
                expected,
                request: "lights <please>",
                output: "raw",
                source: Some(format!("test.jsonl:{}", i + 1)),
                timing: Some(Timing {
                    latency_s: 0.1,
                    tokens: 10,
                }),
            });
        }
        let r = ev.finish("tiny");
        assert_eq!(r.n_cases, 4);
        assert_eq!(r.accuracy, 0.5);
        assert_eq!(r.well_formed_rate, 0.75);
        assert_eq!(r.stats.per_tool["set_light"].passed, 1);
        assert_eq!(r.stats.per_tool["set_light"].total, 3);
        assert_eq!(r.stats.per_tool[NO_CALL].passed, 1);
        let room = r
            .stats
            .per_argument
            .iter()
            .find(|a| a.argument == "room")
            .unwrap();
        assert_eq!((room.rate.passed, room.rate.total), (1, 3));
        assert_eq!(r.worst.len(), 2);
        assert_eq!(r.worst[0].source.as_deref(), Some("test.jsonl:2"));
        assert!(r.worst[0].problems[0].contains("room"), "{:?}", r.worst[0]);
        let table = r.to_table();
        assert!(table.contains("accuracy 50.0% (2 of 4)"), "{table}");
        assert!(table.contains("set_light.room"), "{table}");
        assert!(
            table.contains("set_light({\"room\":\"<attic>\",\"level\":3})"),
            "{table}"
        );
        let html = r.to_html();
        assert!(html.contains("&lt;attic&gt;") && !html.contains("<attic>"));

        let dir = tempfile::tempdir().unwrap();
        r.write_dir(dir.path()).unwrap();
        let back = ToolCallReport::read(&dir.path().join("eval.json")).unwrap();
        assert_eq!(back, Some(r.clone()));
        ev.write_predictions(&dir.path().join("p.jsonl")).unwrap();
        let lines = std::fs::read_to_string(dir.path().join("p.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 4);

        // Against a run that gets every case right: accuracy, per tool and per argument.
        let mut all_right = ToolEvaluator::new();
        for i in 0..2 {
            all_right.add(ToolSample {
                functions: &f,
                answer: Answer::Calls(vec![Call::new(
                    "set_light",
                    json!({"room": "kitchen", "level": 3}),
                )]),
                expected: truth("kitchen"),
                request: "lights",
                output: "raw",
                source: Some(format!("b.jsonl:{}", i + 1)),
                timing: None,
            });
        }
        let cmp = r.compare(&all_right.finish("tuned"));
        assert_eq!(
            (cmp.a_label.as_str(), cmp.b_label.as_str()),
            ("tiny", "tuned")
        );
        assert_eq!(cmp.headline[0].metric, "accuracy");
        assert_eq!(
            (cmp.headline[0].a, cmp.headline[0].b),
            (Some(0.5), Some(1.0))
        );
        let row = |m: &str| cmp.fields.iter().find(|d| d.metric == m).unwrap().clone();
        assert_eq!(row("tool set_light").a, Some(1.0 / 3.0));
        assert_eq!(row("tool set_light").b, Some(1.0));
        // No-call cases only in A: B has no figure, shown as such.
        assert_eq!(row(&format!("tool {NO_CALL}")).b, None);
        assert_eq!(row("set_light.room").delta(), Some(1.0 - 1.0 / 3.0));
        // Latency only in A: the delta rows are there, B's empty.
        assert!(cmp
            .headline
            .iter()
            .any(|d| d.metric == "tokens/s" && d.b.is_none()));
        let table = cmp.to_table();
        assert!(table.contains("+50.0 pt"), "{table}");
        assert!(table.contains("set_light.room"), "{table}");
        assert!(!table.contains("exact A"), "one rate per row: {table}");
        let html = cmp.to_html();
        assert!(html.contains("Tools and arguments") && html.contains("set_light.room"));
    }
}
