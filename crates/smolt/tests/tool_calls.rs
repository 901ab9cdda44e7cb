//! Calls valid by construction, end to end: random tool sets × requests rendered as tool tasks
//! render them, decoded by a tiny random model through the decode loop under each request's
//! tools constraint, greedy and at temperature 1.0, read back with the spec — and every call
//! validated against its tool's schema with the independent `jsonschema` crate.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use smolt::constrain::{CallSyntax, ConstraintEngine, ConstraintSpec, ToolCallSpec};
use smolt::decode::{Ending, GenerateOptions, SamplingParams};
use smolt::eval::tool_calls::Answer;
use smolt::evaluate_tools::read_answer;
use smolt::model::{Model, Precision};
use smolt::task::chat::{ChatFormat, Message, Role};
use smolt::task::JsonStyle;
use smolt::tokenizer::Tokenizer;

const TOOL_SETS: u64 = 24;
const REQUESTS: u64 = 4;

/// A parameter schema whose values are bounded in length, so that a random model's output
/// ends within the token limit (strings by maxLength or enum, numbers by range, arrays by
/// maxItems); every JSON type and nesting the leaderboard exercises is present.
fn param(rng: &mut ChaCha8Rng, depth: usize) -> Value {
    match rng.gen_range(0..if depth == 0 { 8 } else { 6 }) {
        0 => json!({"type": "string", "maxLength": rng.gen_range(1..6)}),
        1 => {
            let values = &["red", "green", "blue"][..rng.gen_range(1..4)];
            json!({"type": "string", "enum": values})
        }
        2 => {
            let lo = rng.gen_range(-20..20);
            json!({"type": "integer", "minimum": lo, "maximum": lo + rng.gen_range(0..500)})
        }
        3 => json!({"type": "number", "minimum": 0, "maximum": 10}),
        4 => json!({"type": "boolean"}),
        5 => json!({"type": "integer", "enum": [1, 2, 3]}),
        6 => json!({"type": "array", "items": param(rng, depth + 1),
                    "maxItems": rng.gen_range(1..3)}),
        _ => object(rng, depth + 1),
    }
}

fn object(rng: &mut ChaCha8Rng, depth: usize) -> Value {
    let n = rng.gen_range(0..if depth == 0 { 4 } else { 3 });
    let mut props = Map::new();
    let mut required = Vec::new();
    for i in 0..n {
        let name = format!("p{depth}{i}");
        if rng.gen_bool(0.6) {
            required.push(json!(name));
        }
        props.insert(name, param(rng, depth));
    }
    json!({"type": "object", "properties": props, "required": required})
}

fn tool_set(seed: u64) -> Value {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.gen_range(1..5);
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "function", "function": {
                "name": format!("tool_{seed}_{i}"),
                "description": "does a thing",
                "parameters": object(&mut rng, 0)}})
        })
        .collect();
    Value::Array(tools)
}

#[test]
fn every_call_of_a_random_model_parses_and_validates_against_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, smolt_model::testing::tiny_text_model(5).to_bytes()).unwrap();
    let model = Model::load(&path, Precision::Fast).unwrap();
    let tok = Arc::new(Tokenizer::from_gguf(model.gguf()).unwrap());
    let engine =
        ConstraintEngine::with_json_layout(Arc::clone(&tok), JsonStyle::Compact.layout()).unwrap();
    let chat = ChatFormat::Gemma;
    let (mut calls, mut texts, mut cut) = (0, 0, 0);
    for set in 0..TOOL_SETS {
        let tools = tool_set(set);
        let names: Vec<String> = tools
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect();
        for req in 0..REQUESTS {
            // auto, required, a named tool; parallel or not; both call syntaxes.
            let choice = match req {
                0 => json!("auto"),
                1 | 3 => json!("required"),
                _ => {
                    json!({"type": "function", "function": {"name": names[set as usize % names.len()]}})
                }
            };
            let parallel = json!(req % 2 == 0);
            let spec =
                ToolCallSpec::from_openai(Some(&tools), Some(&choice), Some(&parallel)).unwrap();
            let spec = if set % 3 == 2 {
                spec.with_syntax(CallSyntax::hermes()).unwrap()
            } else {
                chat.tool_spec(&spec)
            };
            let messages = [Message::new(Role::User, format!("request {req}"))];
            let prompt = chat.prompt_with_tools(&messages, Some(&spec)).unwrap();
            // The tiny model's context is 1024 (about a token per character): the prompt is
            // cut in the middle as `smolt eval` cuts long prompts, leaving room for the answer.
            let (ids, _) = smolt::task::prompt::encode_prompt(tok.as_ref(), &prompt, 300);
            let constraint = engine
                .compile(&ConstraintSpec::ToolCalls(spec.clone()))
                .unwrap();
            for temperature in [0.0, 1.0] {
                let opts = GenerateOptions {
                    max_new_tokens: 600,
                    sampling: SamplingParams {
                        temperature,
                        seed: set * 100 + req,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let out = smolt::decode::answer(&model, &ids, Some(&constraint), &opts).unwrap();
                let text = tok.decode(&out.ids, true);
                let at = format!("set {set} request {req} t={temperature}: {text:?}");
                if out.ending == Ending::Truncated {
                    // Nothing bounds how many parallel calls (or how much text) a model
                    // writes: an output cut at the limit is reported as cut (`smolt eval`
                    // scores it malformed, `generate` exits 1), never taken as a call.
                    cut += 1;
                    continue;
                }
                match read_answer(&spec, &text) {
                    Answer::Calls(cs) => {
                        assert!(!cs.is_empty(), "{at}");
                        assert!(spec.parallel() || cs.len() == 1, "{at}");
                        for c in &cs {
                            let allowed = spec.callable();
                            let tool = allowed
                                .iter()
                                .find(|t| t.name == c.name)
                                .unwrap_or_else(|| panic!("{} is not allowed: {at}", c.name));
                            let v = jsonschema::validator_for(&tool.parameters).unwrap();
                            let errors: Vec<String> =
                                v.iter_errors(&c.arguments).map(|e| e.to_string()).collect();
                            assert!(errors.is_empty(), "{errors:?}: {at}");
                            // No key the schema does not define, as the scorer requires.
                            let props = tool.parameters["properties"].as_object().unwrap();
                            for k in c.arguments.as_object().unwrap().keys() {
                                assert!(props.contains_key(k), "{k}: {at}");
                            }
                            calls += 1;
                        }
                    }
                    Answer::Text(_) => {
                        assert!(spec.allows_text(), "{at}");
                        texts += 1;
                    }
                    Answer::Malformed(m) => panic!("malformed ({m}): {at}"),
                }
            }
        }
    }
    // Text is only allowed for `auto`: one request in four.
    let outputs = (TOOL_SETS * REQUESTS * 2) as usize;
    eprintln!(
        "{outputs} outputs: {calls} calls validated, {texts} text answers, {cut} cut at the limit"
    );
    assert!(texts <= outputs / 4, "{texts}");
    assert!(
        cut <= outputs / 4,
        "{cut} of {outputs} outputs cut at the limit"
    );
    assert!(calls >= outputs / 2, "{calls} calls");
}
