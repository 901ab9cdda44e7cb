//! Writes a demo report from synthetic receipts and two simulated models (a "few-shot base" that
//! makes formatting and reading mistakes, and a "fine-tuned" one that makes fewer), so the HTML
//! can be looked at without a trained model:
//! `cargo run -p smolt-eval --example demo_report -- OUT_DIR`.
//! Writes OUT_DIR/{base,tuned}/{eval.json,report.html,report.txt} and OUT_DIR/compare.html.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use smolt_eval::{compare, EvalConfig, Evaluator, Sample};

/// A plausible model answer: the truth with mistakes at `err` rate.
fn simulate(truth: &Value, err: f64, rng: &mut ChaCha8Rng) -> String {
    let mut p = truth.clone();
    if rng.gen_bool(err * 0.3) {
        let s = p.to_string();
        return s[..s.len() * 2 / 3].to_string(); // ran out of tokens
    }
    if rng.gen_bool(err) {
        p["retailer"] = json!(p["retailer"].as_str().unwrap().to_uppercase());
    }
    if rng.gen_bool(err * 0.5) {
        p["total"] = json!(format!("{:.2}", p["total"].as_f64().unwrap()));
    }
    if rng.gen_bool(err * 0.4) {
        p["total"] = json!(p["subtotal"].clone());
    }
    if rng.gen_bool(err * 0.5) {
        let ts = p["timestamp"].as_str().unwrap().to_string();
        p["timestamp"] = json!(format!(
            "{}/{}/{} {}",
            &ts[8..10],
            &ts[5..7],
            &ts[..4],
            &ts[11..]
        ));
    }
    if rng.gen_bool(err * 0.3) {
        let ts = p["timestamp"].as_str().unwrap().replace("-0", "-1");
        p["timestamp"] = json!(ts);
    }
    if rng.gen_bool(err * 0.4) {
        p["postal_code"] = json!(p["postal_code"].as_str().unwrap().replace('0', "O"));
    }
    let items = p["items"].as_array_mut().unwrap();
    if items.len() > 1 && rng.gen_bool(err * 0.6) {
        items.remove(rng.gen_range(0..items.len()));
    }
    if rng.gen_bool(err * 0.3) {
        let dup = items[0].clone();
        items.push(dup);
    }
    if rng.gen_bool(err) {
        let i = rng.gen_range(0..items.len());
        let a = items[i]["amount"].as_f64().unwrap();
        items[i]["amount"] = json!(((a * 10.0).round() / 10.0 + 0.1 * 100.0).round() / 100.0);
    }
    if rng.gen_bool(err * 0.7) {
        items.reverse();
    }
    if rng.gen_bool(err * 0.2) {
        p["store_id"] = json!("0412");
    }
    p.to_string()
}

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/demo_report".into()),
    );
    let recs = smolt_data::receipts(&smolt_data::SynthConfig {
        n: 200,
        seed: 42,
        year: 2020,
        noise_rate: 0.02,
        ..Default::default()
    });
    let cfg: EvalConfig = serde_json::from_value(smolt_data::receipts_eval_config()).unwrap();
    let mut reports = Vec::new();
    for (label, err, base_ms, seed) in [
        ("gemma-3-270m few-shot", 0.35, 900.0, 1),
        ("gemma-3-270m + LoRA (2019 train)", 0.08, 520.0, 2),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ev = Evaluator::new(cfg.clone());
        for r in &recs {
            let pred = simulate(&r.output, err, &mut rng);
            let tokens = pred.len() / 3;
            let secs = (base_ms + tokens as f64 * 4.0 * rng.gen_range(0.8..1.4)) / 1000.0;
            ev.add(
                Sample::new(&pred, &r.output)
                    .input(&r.input)
                    .timing(secs, tokens),
            );
        }
        let rep = ev.finish(label);
        let dir = out.join(if seed == 1 { "base" } else { "tuned" });
        rep.write_dir(&dir).unwrap();
        println!("{}", rep.to_table());
        reports.push(rep);
    }
    let c = compare(&reports[0], &reports[1]);
    std::fs::write(out.join("compare.html"), c.to_html()).unwrap();
    println!("{}", c.to_table());
    println!("wrote {}", out.display());
}
