//! Comparison, aggregation and rendering tests. Normaliser tests live next to the normalisers.

use serde_json::{json, Value};

use crate::*;

fn receipt() -> Value {
    json!({
        "retailer": "FreshWay Grocers",
        "total": 12.5,
        "timestamp": "2020-11-29T14:02",
        "payment": {"method": "visa", "last4": "1234"},
        "items": [
            {"name": "Milk", "qty": 1, "amount": 2.5},
            {"name": "Bread", "qty": 2, "amount": 6.0},
            {"name": "Eggs", "qty": 1, "amount": 4.0}
        ]
    })
}

fn cfg() -> EvalConfig {
    let mut c = EvalConfig::default();
    c.fields.insert("retailer".into(), Normalizer::Case);
    c.fields.insert("timestamp".into(), Normalizer::Datetime);
    c.fields.insert("items.name".into(), Normalizer::Case);
    c
}

fn cmp(pred: &str, truth: &Value) -> RecordResult {
    compare_record(&cfg(), 0, &Sample::new(pred, truth))
}

fn status(r: &RecordResult, path: &str) -> Status {
    r.fields
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path} in {:?}", r.fields))
        .status
}

#[test]
fn perfect_prediction_matches() {
    let t = receipt();
    let r = cmp(&t.to_string(), &t);
    assert!(r.valid_json && r.record_match);
    assert_eq!(r.score, 1.0);
    assert!(r.fields.iter().all(|f| f.status == Status::Exact));
    assert_eq!(status(&r, "payment.method"), Status::Exact);
    assert_eq!(status(&r, "items[1].name"), Status::Exact);
}

#[test]
fn normalised_only_matches_and_type_mismatch_is_flagged() {
    let t = receipt();
    let mut p = t.clone();
    p["total"] = json!("RM 12.50");
    p["retailer"] = json!("FRESHWAY  GROCERS");
    p["timestamp"] = json!("29 Nov 2020 2:02 PM");
    let r = cmp(&p.to_string(), &t);
    assert!(r.record_match);
    assert_eq!(status(&r, "total"), Status::Normalized);
    assert!(
        r.fields
            .iter()
            .find(|f| f.path == "total")
            .unwrap()
            .type_mismatch
    );
    assert_eq!(status(&r, "retailer"), Status::Normalized);
    assert_eq!(status(&r, "timestamp"), Status::Normalized);
}

#[test]
fn invalid_json_is_all_wrong_and_keeps_raw() {
    let t = receipt();
    let raw = "{\"retailer\": \"FreshWay\", \"total\": 12.5"; // truncated
    let r = cmp(raw, &t);
    assert!(!r.valid_json && !r.record_match);
    assert_eq!(r.score, 0.0);
    assert_eq!(r.raw, raw);
    assert!(r.fields.iter().all(|f| f.status == Status::Missing));
    assert_eq!(r.lists[0].truth_len, 3);
    assert_eq!(r.lists[0].pred_len, 0);
}

#[test]
fn lenient_parse_scores_but_stays_invalid() {
    let t = json!({"a": 1});
    let c = EvalConfig {
        lenient_json: true,
        ..cfg()
    };
    let r = compare_record(
        &c,
        0,
        &Sample::new("Sure! Here it is: {\"a\": 1} Hope that helps {", &t),
    );
    assert!(!r.valid_json);
    assert!(r.record_match);
    let strict = compare_record(&cfg(), 0, &Sample::new("Sure! {\"a\": 1}", &t));
    assert!(!strict.record_match);
}

#[test]
fn missing_extra_and_wrong_type_fields() {
    let t = receipt();
    let mut p = t.clone();
    p.as_object_mut().unwrap().remove("retailer");
    p["note"] = json!("hi");
    p["payment"] = json!("visa 1234");
    p["total"] = json!([12.5]);
    let r = cmp(&p.to_string(), &t);
    assert_eq!(status(&r, "retailer"), Status::Missing);
    assert_eq!(status(&r, "note"), Status::Extra);
    assert_eq!(status(&r, "payment.method"), Status::WrongType);
    assert_eq!(status(&r, "payment.last4"), Status::WrongType);
    assert_eq!(status(&r, "total"), Status::WrongType);
    assert!(!r.record_match);
    // Extra keys alone do not break a match.
    let mut p = t.clone();
    p["note"] = json!("hi");
    assert!(cmp(&p.to_string(), &t).record_match);
    // A non-object at the top level.
    let r = cmp("[1, 2]", &t);
    assert!(r.valid_json && !r.record_match);
    assert_eq!(status(&r, "retailer"), Status::WrongType);
}

#[test]
fn lists_match_in_any_order() {
    let t = receipt();
    let mut p = t.clone();
    p["items"].as_array_mut().unwrap().reverse();
    let r = cmp(&p.to_string(), &t);
    assert!(r.record_match, "{:?}", r.fields);
    assert_eq!(r.lists[0].pairs, vec![(0, 2), (1, 1), (2, 0)]);
}

#[test]
fn one_misread_item_costs_one_item() {
    let t = receipt();
    let mut p = t.clone();
    p["items"] = json!([
        {"name": "Bread", "qty": 2, "amount": 6.0},
        {"name": "Mlk", "qty": 1, "amount": 2.5},
        {"name": "Eggs", "qty": 1, "amount": 4.0}
    ]);
    let r = cmp(&p.to_string(), &t);
    let l = &r.lists[0];
    assert_eq!(l.items_correct, 2);
    assert_eq!(l.pairs.len(), 3);
    assert_eq!(l.sub["items.name"].normalized, 2);
    assert_eq!(l.sub["items.qty"].normalized, 3);
    assert_eq!(status(&r, "items[0].name"), Status::Wrong);
    assert!(!r.record_match);
}

#[test]
fn duplicated_items_lower_precision() {
    let t = json!({"items": [{"name": "Milk", "amount": 2.5}, {"name": "Tea", "amount": 1.0}]});
    let p = json!({"items": [{"name": "Milk", "amount": 2.5}, {"name": "Milk", "amount": 2.5}, {"name": "Tea", "amount": 1.0}]});
    let r = cmp(&p.to_string(), &t);
    assert_eq!(r.lists[0].duplicates, 1);
    assert_eq!(r.lists[0].items_correct, 2);
    assert!(!r.record_match);
    let rep = aggregate(&cfg(), "x", &[r]);
    let l = &rep.lists[0];
    assert!((l.precision - 2.0 / 3.0).abs() < 1e-9 && l.recall == 1.0);
    assert_eq!(l.duplicates, 1);
}

#[test]
fn empty_lists() {
    let t = json!({"taxes": []});
    let both = cmp(r#"{"taxes": []}"#, &t);
    assert!(both.record_match);
    let null = cmp(r#"{"taxes": null}"#, &t);
    assert!(null.record_match);
    let extra = cmp(r#"{"taxes": [{"name": "VAT"}]}"#, &t);
    assert!(!extra.record_match);
    assert_eq!(extra.lists[0].pred_len, 1);
    let t2 = json!({"taxes": [{"name": "VAT", "amount": 1.0}]});
    let none = cmp(r#"{"taxes": []}"#, &t2);
    assert!(!none.record_match);
    let rep = aggregate(&cfg(), "x", &[both, extra, none]);
    let l = &rep.lists[0];
    assert_eq!(
        (
            l.truth_items,
            l.pred_items,
            l.correct_items,
            l.empty_predictions
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(l.f1, 0.0);
    let not_array = cmp(r#"{"taxes": {"name": "VAT"}}"#, &t2);
    assert!(not_array.lists[0].wrong_type);
}

#[test]
fn scalar_lists_and_ignored_fields() {
    let t = json!({"tags": ["a", "b", "c"], "debug": "x"});
    let mut c = cfg();
    c.fields.insert("debug".into(), Normalizer::None);
    let r = compare_record(
        &c,
        0,
        &Sample::new(r#"{"tags": ["c", "a", "b"], "debug": "y"}"#, &t),
    );
    assert!(r.record_match);
    assert!(r.fields.iter().all(|f| f.key != "debug"));
    let r = compare_record(
        &c,
        0,
        &Sample::new(r#"{"tags": ["c", "a"], "debug": "y"}"#, &t),
    );
    assert!(!r.record_match);
    assert_eq!(r.lists[0].items_correct, 2);
}

#[test]
fn assignment_is_optimal_not_greedy() {
    let w = vec![vec![0.9, 0.8], vec![0.8, 0.0]];
    assert_eq!(compare::assign(&w), vec![(0, 1), (1, 0)]);
    let rect = vec![vec![0.1, 0.9, 0.2]];
    assert_eq!(compare::assign(&rect), vec![(0, 1)]);
    let tall = vec![vec![0.1], vec![0.9], vec![0.2]];
    assert_eq!(compare::assign(&tall), vec![(1, 0)]);
    assert!(compare::assign(&[]).is_empty());
}

#[test]
fn aggregate_rates_latency_and_worst() {
    let t = receipt();
    let mut wrong_total = t.clone();
    wrong_total["total"] = json!(99.0);
    let preds = [
        t.to_string(),
        wrong_total.to_string(),
        "not json".to_string(),
        t.to_string(),
    ];
    let mut ev = Evaluator::new(EvalConfig {
        worst_n: 2,
        ..cfg()
    });
    for (i, p) in preds.iter().enumerate() {
        ev.add(
            Sample::new(p, &t)
                .input("OCR TEXT")
                .timing(0.1 * (i + 1) as f64, 10),
        );
    }
    let rep = ev.finish("test");
    assert_eq!(rep.n_records, 4);
    assert_eq!(rep.validity_rate, 0.75);
    assert_eq!(rep.record_match_rate, 0.5);
    let total = rep.field("total").unwrap();
    assert_eq!(
        (total.n, total.exact, total.normalized, total.missing),
        (4, 2, 2, 1)
    );
    assert_eq!(total.normalized_rate, 0.5);
    let name = rep.field("items.name").unwrap();
    assert_eq!(name.kind, FieldKind::ListItem);
    assert_eq!((name.n, name.predicted, name.normalized), (12, 9, 9));
    assert!((name.normalized_rate - 2.0 * 9.0 / 21.0).abs() < 1e-9);
    let l = rep.latency.as_ref().unwrap();
    assert!((l.mean_ms - 250.0).abs() < 1e-6);
    assert!((l.p50_ms - 200.0).abs() < 1e-6);
    assert!((l.p99_ms - 400.0).abs() < 1e-6);
    assert!((l.tokens_per_s - 40.0 / 1.0).abs() < 1e-6);
    assert_eq!(l.histogram.iter().map(|b| b.2).sum::<usize>(), 4);
    assert_eq!(rep.worst.len(), 2);
    assert_eq!(rep.worst[0].index, 2); // invalid JSON first
    assert_eq!(rep.worst[1].index, 1);
    assert_eq!(
        rep.worst[1]
            .diffs()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["total"]
    );
    assert_eq!(rep.worst[0].input.as_deref(), Some("OCR TEXT"));
}

#[test]
fn unparseable_outputs_fill_at_most_half_the_worst_list() {
    let t = json!({"a": 1, "b": 2});
    let preds = [
        "x",
        "y",
        "z",
        "{\"a\": 1, \"b\": 3}",
        "{\"a\": 1, \"b\": 2}",
    ];
    let c = EvalConfig {
        worst_n: 2,
        ..cfg()
    };
    let rep = evaluate(&c, "x", preds.iter().map(|p| Sample::new(p, &t)));
    let idx: Vec<usize> = rep.worst.iter().map(|w| w.index).collect();
    assert_eq!(idx, [0, 3]);
    // With no parsed-but-wrong records, invalid ones take every place.
    let rep = evaluate(
        &EvalConfig {
            worst_n: 3,
            ..cfg()
        },
        "x",
        preds[..3].iter().map(|p| Sample::new(p, &t)),
    );
    assert_eq!(rep.worst.len(), 3);
}

#[test]
fn empty_evaluation_does_not_panic() {
    let rep = evaluate(&cfg(), "empty", std::iter::empty());
    assert_eq!(rep.n_records, 0);
    assert!(rep.latency.is_none());
    assert!(rep.to_table().contains("0 records"));
    check_html(&rep.to_html()).unwrap();
}

#[test]
fn extra_fields_are_counted_per_record() {
    let t = json!({"a": 1});
    let recs: Vec<RecordResult> = [
        "{\"a\":1,\"b\":2}",
        "{\"a\":1,\"b\":3,\"c\":1}",
        "{\"a\":1}",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| compare_record(&cfg(), i, &Sample::new(p, &t)))
    .collect();
    let rep = aggregate(&cfg(), "x", &recs);
    assert_eq!(rep.extra_fields.get("b"), Some(&2));
    assert_eq!(rep.extra_fields.get("c"), Some(&1));
    assert_eq!(rep.record_match_rate, 1.0);
}

#[test]
fn config_from_toml_json_and_schema() {
    let c: EvalConfig = toml::from_str(
        "number_tolerance = 0.01\nworst_n = 3\n[fields]\nretailer = \"case\"\ntimestamp = \"datetime\"\n\"items.name\" = \"alnum\"\nnote = \"none\"\n",
    )
    .unwrap();
    assert_eq!(c.fields["items.name"], Normalizer::Alnum);
    assert_eq!(c.fields["note"], Normalizer::None);
    assert_eq!(
        (c.number_tolerance, c.worst_n, c.lenient_json),
        (0.01, 3, false)
    );
    let d: EvalConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(d, EvalConfig::default());
    assert!(toml::from_str::<EvalConfig>("[fields]\nx = \"fuzzy\"").is_err());
    let s = EvalConfig::from_schema(&smolt_data::receipts_schema());
    assert_eq!(s.fields["total"], Normalizer::Number);
    assert_eq!(s.fields["items.amount"], Normalizer::Number);
    assert!(!s.fields.contains_key("retailer"));
    let s = EvalConfig::from_schema(
        &json!({"properties": {"d": {"type": "string", "format": "date"}}}),
    );
    assert_eq!(s.fields["d"], Normalizer::Date);
}

/// Synthetic receipts through the evaluator, with realistic model mistakes.
#[test]
fn end_to_end_on_synthetic_receipts() {
    let recs = smolt_data::receipts(&smolt_data::SynthConfig {
        n: 30,
        seed: 5,
        ..Default::default()
    });
    let c: EvalConfig = serde_json::from_value(smolt_data::synth::receipts_eval_config()).unwrap();
    let mut ev = Evaluator::new(c);
    for (i, r) in recs.iter().enumerate() {
        let mut p = r.output.clone();
        match i % 5 {
            0 => {}
            1 => p["total"] = json!(format!("{:.2}", p["total"].as_f64().unwrap())),
            2 => p["items"].as_array_mut().unwrap().reverse(),
            3 => p["retailer"] = json!("Wrong Shop"),
            _ => p["items"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "X", "qty": 1, "price": 1.0, "amount": 1.0})),
        }
        ev.add(
            Sample::new(&p.to_string(), &r.output)
                .input(&r.input)
                .timing(0.2 + i as f64 * 0.01, 80),
        );
    }
    let rep = ev.finish("synthetic");
    assert_eq!(rep.validity_rate, 1.0);
    assert!(
        (rep.record_match_rate - 0.6).abs() < 1e-9,
        "{}",
        rep.to_table()
    );
    assert!((rep.field("retailer").unwrap().normalized_rate - 0.8).abs() < 1e-9);
    assert_eq!(rep.field("total").unwrap().normalized_rate, 1.0);
    check_html(&rep.to_html()).unwrap();
}

#[test]
fn text_table_is_aligned() {
    let rep = evaluate(&cfg(), "t", [Sample::new("{}", &receipt())]);
    let table = rep.to_table();
    let lines: Vec<&str> = table
        .lines()
        .take_while(|l| !l.starts_with("errors by kind"))
        .filter(|l| l.starts_with("retailer") || l.starts_with("total"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), lines[1].len(), "{table}");
}

#[test]
fn html_is_self_contained_balanced_and_escaped() {
    let t = json!({"name": "<script>alert(1)</script>", "items": [{"n": "a&b"}]});
    let samples = [
        Sample::new("{\"name\": \"x\"}", &t)
            .input("<b>OCR</b>")
            .timing(0.5, 10),
        Sample::new("oops <i>", &t),
    ];
    let rep = evaluate(&cfg(), "A <label>", samples);
    let html = rep.to_html();
    check_html(&html).unwrap();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains("oops &lt;i&gt;"));
    for bad in ["src=\"http", "href=\"http", "@import", "<link", "url("] {
        assert!(!html.contains(bad), "external resource: {bad}");
    }
    assert!(html.contains("<svg"));
}

#[test]
fn comparison_table_and_html() {
    let t = receipt();
    let mut bad = t.clone();
    bad["total"] = json!(1.0);
    let a = evaluate(
        &cfg(),
        "base few-shot",
        [Sample::new(&bad.to_string(), &t).timing(1.0, 10)],
    );
    let b = evaluate(
        &cfg(),
        "fine-tuned",
        [Sample::new(&t.to_string(), &t).timing(0.5, 10)],
    );
    let c = compare(&a, &b);
    let total = c.fields.iter().find(|d| d.metric == "total").unwrap();
    assert_eq!(total.delta(), Some(1.0));
    let p50 = c
        .headline
        .iter()
        .find(|d| d.metric.starts_with("latency p50"))
        .unwrap();
    assert_eq!(p50.delta(), Some(-500.0));
    let table = c.to_table();
    assert!(table.contains("+100.0 pt"), "{table}");
    let html = c.to_html();
    check_html(&html).unwrap();
    assert!(html.contains("class=\"pos\""));
    // A field only one side has is kept.
    let other = evaluate(&cfg(), "other", [Sample::new("{}", &json!({"zzz": 1}))]);
    let c = compare(&a, &other);
    assert!(c.fields.iter().any(|d| d.metric == "zzz" && d.a.is_none()));
}

#[test]
fn write_dir_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let t = receipt();
    let rep = evaluate(&cfg(), "x", [Sample::new(&t.to_string(), &t)]);
    rep.write_dir(dir.path()).unwrap();
    let back = EvalReport::read(&dir.path().join("eval.json")).unwrap();
    assert_eq!(back, rep);
    assert!(dir.path().join("report.html").exists() && dir.path().join("report.txt").exists());
}

#[test]
fn predictions_list_every_record_with_its_wrong_fields() {
    let dir = tempfile::tempdir().unwrap();
    let t = receipt();
    let mut wrong = t.clone();
    wrong["total"] = serde_json::json!(1.5);
    let mut ev = Evaluator::new(cfg());
    ev.add(Sample::new(&t.to_string(), &t));
    ev.add(Sample::new(&wrong.to_string(), &t));
    ev.add(Sample::new("not json", &t));
    let path = dir.path().join("predictions.jsonl");
    crate::write_predictions(&path, ev.records()).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["wrong"], serde_json::json!([]));
    assert_eq!(lines[0]["record_match"], true);
    assert_eq!(lines[1]["wrong"], serde_json::json!(["total"]));
    assert_eq!(lines[1]["prediction"]["total"], 1.5);
    assert_eq!(lines[1]["truth"], t);
    assert_eq!(lines[2]["valid_json"], false);
    assert_eq!(lines[2]["raw"], "not json");
    assert!(!lines[2]["wrong"].as_array().unwrap().is_empty());
}

/// Checks that every non-void element is closed in order, attributes are quoted, and the page
/// has exactly one html/head/body — enough to catch the mistakes string-built HTML makes.
pub(crate) fn check_html(html: &str) -> Result<(), String> {
    const VOID: &[&str] = &["meta", "br", "hr", "img", "input", "link", "wbr"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    let mut counts = std::collections::HashMap::new();
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with("!DOCTYPE") || rest.starts_with("!--") {
            rest = &rest[rest.find('>').ok_or("unclosed doctype")? + 1..];
            continue;
        }
        let end = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.matches('"').count() & 1 == 1 {
            return Err(format!("unbalanced quotes in <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("</{name}> with nothing open"))?;
            if open != name.trim() {
                return Err(format!("</{name}> closes <{open}>"));
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        if name.is_empty() {
            return Err(format!("bad tag <{tag}>"));
        }
        *counts.entry(name.clone()).or_insert(0) += 1;
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" || name == "script" {
            let close = format!("</{name}>");
            rest = &rest[rest.find(&close).ok_or("unclosed style")? + close.len()..];
            continue;
        }
        stack.push(name);
    }
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    for t in ["html", "head", "body"] {
        if counts.get(t) != Some(&1) {
            return Err(format!("expected one <{t}>"));
        }
    }
    Ok(())
}

#[test]
fn html_checker_catches_mistakes() {
    assert!(check_html("<html><head></head><body><div></body></html>").is_err());
    assert!(check_html("<html><head></head><body><b><i></b></i></body></html>").is_err());
    assert!(check_html("<html><head></head><body><a href=\"x></a></body></html>").is_err());
    assert!(check_html(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><br></body></html>"
    )
    .is_ok());
}

/// Each error kind, made to happen once, lands in its own column; correct fields in none.
#[test]
fn errors_are_grouped_by_kind() {
    use crate::{Decoding, ErrorKind};
    let truth = json!({"company": "SYARIKAT PERNIAGAAN GIN KEE", "address": "12, JALAN PERMAS 10/7",
                       "date": "2018-01-15", "total": 9.0});
    let input = "SYARIKAT PERNIAGAAN GIN KEE\n12,JALAN PERMAS 10/7\nTEL 07-3881234\n15/01/2018 TOTAL RM 9.00";
    let mut cfg = EvalConfig::default();
    cfg.fields.insert("date".into(), crate::Normalizer::Date);
    let cases = [
        // spacing only in the address; a copied wrong span in the company; a non-date; a wrong total
        (
            r#"{"company": "TEL 07-3881234", "address": "12,JALAN PERMAS 10/7", "date": "soon", "total": 8.0}"#,
            false,
        ),
        // a finished answer without the address; a company nowhere in the input
        (
            r#"{"company": "GIN KEE HARDWARE SDN BHD", "date": "2018-01-15", "total": 9.0}"#,
            false,
        ),
        // cut by the token limit inside the address
        (
            r#"{"company": "SYARIKAT PERNIAGAAN GIN KEE", "address": "12, JAL"#,
            true,
        ),
    ];
    let mut ev = Evaluator::new(cfg);
    for (raw, truncated) in cases {
        ev.add(Sample::new(raw, &truth).input(input).decoding(Decoding {
            truncated,
            ..Default::default()
        }));
    }
    let rep = ev.finish("kinds");
    let kind = |key: &str, k: ErrorKind| {
        rep.errors
            .iter()
            .find(|e| e.key == key)
            .map_or(0, |e| e.count(k))
    };
    assert_eq!(kind("address", ErrorKind::SpacingPunctuation), 1);
    assert_eq!(kind("address", ErrorKind::Missing), 1);
    assert_eq!(kind("address", ErrorKind::Truncated), 1);
    assert_eq!(kind("company", ErrorKind::WrongSpan), 1);
    assert_eq!(
        kind("company", ErrorKind::WrongValue),
        1,
        "truth is in the input, the prediction is not"
    );
    assert_eq!(kind("date", ErrorKind::Format), 1);
    assert_eq!(kind("date", ErrorKind::Truncated), 1);
    assert_eq!(kind("total", ErrorKind::WrongValue), 1);
    assert_eq!(kind("total", ErrorKind::Truncated), 1);
    // A cut answer is not JSON, so even the company it had right counts, as truncated.
    assert_eq!(kind("company", ErrorKind::Truncated), 1);
    let total: usize = rep.errors.iter().map(|e| e.total()).sum();
    assert_eq!(total, 10, "{:#?}", rep.errors);
    assert_eq!(rep.decoding.truncated, 1);
    assert!(
        rep.to_table().contains("spacing/punct."),
        "{}",
        rep.to_table()
    );
    assert!(
        rep.to_table()
            .contains("decoding: 1 answers truncated at the token limit, 0 numbers"),
        "{}",
        rep.to_table()
    );
    assert!(
        !rep.to_table().contains("copies of the input"),
        "the copy rule is named only where it was on"
    );
    check_html(&rep.to_html()).unwrap();
}

/// A truth that the input does not hold cannot be copied; the report says so.
#[test]
fn truth_missing_from_input_is_its_own_kind() {
    use crate::ErrorKind;
    let truth = json!({"address": "LOT 5, TAMAN MAJU"});
    let rep = evaluate(
        &EvalConfig::default(),
        "t",
        [Sample::new(r#"{"address": "TAMAN JAYA"}"#, &truth).input("TAMAN JAYA 81100")],
    );
    assert_eq!(rep.errors[0].count(ErrorKind::NotInInput), 1);
}
