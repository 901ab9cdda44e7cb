//! The acceptance corpus: every schema under `tests/schemas/` × its prompts, greedy and
//! sampled at temperature 1.0 on the real model (Fast precision). Every complete output must
//! parse and validate against its schema with the independent `jsonschema` crate; outputs cut
//! by the token limit are counted as truncated, never as valid.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use smolt_constrain::ConstraintSpec;
use smolt_decode::{generate_constrained, greedy, Finish, GenerateLimits, ModelLogits};
use smolt_model::{Model, Precision};

const MAX_TOKENS: usize = 160;

fn prompt_text(schema: &serde_json::Value, text: &str) -> String {
    let fields = match schema
        .get("properties")
        .or_else(|| schema.pointer("/items/properties"))
    {
        Some(serde_json::Value::Object(p)) => p.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => String::new(),
    };
    format!("Extract the data as JSON (fields: {fields}).\n\n{text}\n\nJSON: ")
}

#[test]
fn every_output_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let prompts: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prompts.json")).unwrap()).unwrap();
    let model = Model::load(common::model_path(), Precision::Fast).expect("model");
    let tok = common::tokenizer();
    let engine = common::engine();
    let only = std::env::var("SMOLT_CORPUS_ONLY").ok();
    // Two prompts per schema keep the test near two minutes on the contended 2-core machine;
    // SMOLT_CORPUS_PROMPTS=3 runs all of them.
    let n_prompts: usize = std::env::var("SMOLT_CORPUS_PROMPTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);

    let (mut valid, mut truncated, mut total, mut schemas) = (0, 0, 0, 0);
    let (mut forced, mut passes, mut out_tokens) = (0, 0, 0);
    let mut failures = Vec::new();
    let started = Instant::now();
    for (name, texts) in &prompts {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        schemas += 1;
        let path = dir.join("schemas").join(format!("{name}.json"));
        let spec = ConstraintSpec::json_schema_file(&path).unwrap();
        let ConstraintSpec::JsonSchema(schema) = &spec else {
            unreachable!()
        };
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap_or_else(|e| panic!("{name}: jsonschema rejects the schema: {e}"));
        let constraint = engine
            .compile(&spec)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, text) in texts.iter().take(n_prompts).enumerate() {
            let prompt = tok.encode(&prompt_text(schema, text), true, false);
            for temperature in [0.0f32, 1.0] {
                let mut state = constraint.start();
                let mut src = ModelLogits::new(&model);
                let mut sampler = common::TempSampler::new(temperature.max(1e-3), 1000 + i as u64);
                let out = generate_constrained(
                    &mut src,
                    &prompt,
                    &mut state,
                    GenerateLimits::new(MAX_TOKENS),
                    |l| {
                        if temperature == 0.0 {
                            greedy(l)
                        } else {
                            sampler.sample(l)
                        }
                    },
                )
                .unwrap_or_else(|e| panic!("{name}[{i}] T={temperature}: {e}"));
                let json = tok.decode(&out.ids, false);
                total += 1;
                forced += out.stats.forced_tokens;
                passes += out.stats.forward_passes;
                out_tokens += out.ids.len();
                eprintln!(
                    "{name}[{i}] T={temperature} {:?} {} tok: {json}",
                    out.finish,
                    out.ids.len()
                );
                if out.finish == Finish::Truncated {
                    truncated += 1;
                    // A truncated output must not happen to be valid: the state says so.
                    assert!(!state.is_accepting(), "{name}: truncated but accepting");
                    continue;
                }
                match serde_json::from_str::<serde_json::Value>(&json) {
                    Ok(v) => match validator.validate(&v) {
                        Ok(()) => valid += 1,
                        Err(e) => {
                            failures.push(format!("{name}[{i}] T={temperature}: {e}: {json}"))
                        }
                    },
                    Err(e) => {
                        failures.push(format!("{name}[{i}] T={temperature}: parse: {e}: {json}"))
                    }
                }
            }
        }
    }
    let complete = total - truncated;
    eprintln!(
        "corpus: {schemas} schemas, {total} outputs, {complete} complete, {valid} valid, {truncated} truncated \
         (limit {MAX_TOKENS}); {out_tokens} tokens in {passes} forward passes, {forced} forced; \
         {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "invalid outputs:\n{}",
        failures.join("\n")
    );
    assert_eq!(valid, complete);
    assert!(total > 0);
    if only.is_none() {
        assert!(schemas >= 15, "{schemas} schemas");
    }
    // The schemas bound every free string, so the limit should rarely bite.
    assert!(truncated * 10 <= total, "{truncated} of {total} truncated");
}
