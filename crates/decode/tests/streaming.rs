//! `answer_streaming` on the tiny text model: it reports every output id once, in order, gives
//! what `answer` gives, stops when told, and leaves the cache holding prompt + output.

use std::sync::Arc;

use smolt_constrain::{ConstraintEngine, ConstraintSpec};
use smolt_decode::{answer, answer_streaming, Ending, GenerateOptions};
use smolt_gguf::Gguf;
use smolt_model::{Model, Precision};
use smolt_tokenizer::Tokenizer;

fn tiny() -> (Model, Arc<Tokenizer>) {
    let bytes = smolt_model::testing::tiny_text_model(7).to_bytes();
    let model = Model::from_gguf(Gguf::from_bytes(bytes).unwrap(), Precision::Fast).unwrap();
    let tok = Arc::new(Tokenizer::from_gguf(model.gguf()).unwrap());
    (model, tok)
}

#[test]
fn streaming_reports_each_id_once_and_matches_answer() {
    let (model, tok) = tiny();
    let engine = ConstraintEngine::new(Arc::clone(&tok)).unwrap();
    let schema = r#"{"type": "object", "properties": {"a": {"enum": ["x", "yy"]},
        "n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "n"]}"#;
    let constraint = engine
        .compile(&ConstraintSpec::json_schema_str(schema).unwrap())
        .unwrap();
    let prompt = tok.encode("The answer is", true, true);
    let opts = GenerateOptions {
        max_new_tokens: 40,
        draft_tokens: 0,
        ..GenerateOptions::default()
    };
    for c in [None, Some(&constraint)] {
        let whole = answer(&model, &prompt, c, &opts).unwrap();
        let mut seen = Vec::new();
        let mut cache = model.new_cache();
        let streamed = answer_streaming(&model, &mut cache, &prompt, c, &opts, |ids| {
            seen.extend_from_slice(ids);
            true
        })
        .unwrap();
        assert_eq!(streamed.ids, whole.ids);
        assert_eq!(streamed.ending, whole.ending);
        assert_eq!(seen, whole.ids, "every id once, in order");
        // The cache holds a prefix of prompt + output, all but at most the last id.
        assert!(cache.len() <= prompt.len() + seen.len());
        assert!(
            cache.len() + 1 >= prompt.len() + seen.len(),
            "{}",
            cache.len()
        );
        if c.is_some() {
            let v: serde_json::Value =
                serde_json::from_str(&tok.decode(&streamed.ids, true)).unwrap();
            assert!(v["n"].is_i64(), "{v}");
        }
        // Stopped after the second report: those ids are the answer.
        let mut calls = 0;
        let mut cache = model.new_cache();
        let stopped = answer_streaming(&model, &mut cache, &prompt, c, &opts, |_| {
            calls += 1;
            calls < 2
        })
        .unwrap();
        assert_eq!(stopped.ending, Ending::Stopped);
        assert_eq!(calls, 2);
        assert!(whole.ids.starts_with(&stopped.ids), "{:?}", stopped.ids);
        assert!(cache.len() <= prompt.len() + stopped.ids.len());
    }
    // The prompt's start already in the cache: the same answer from the rest.
    let mut cache = model.new_cache();
    model
        .forward(&prompt[..3], &mut cache, smolt_model::Logits::None)
        .unwrap();
    let rest = answer_streaming(&model, &mut cache, &prompt[3..], None, &opts, |_| true).unwrap();
    let whole = answer(&model, &prompt, None, &opts).unwrap();
    assert_eq!(rest.ids, whole.ids);
    assert!(answer_streaming(&model, &mut cache, &[], None, &opts, |_| true).is_err());
}
