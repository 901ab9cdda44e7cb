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

/// A small object schema (an enum and a bounded integer) for the tiny model's vocabulary.
fn object_constraint(tok: &Arc<Tokenizer>) -> smolt_constrain::Constraint {
    let engine = ConstraintEngine::new(Arc::clone(tok)).unwrap();
    let schema = r#"{"type": "object", "properties": {"a": {"enum": ["x", "yy"]},
        "n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "n"]}"#;
    engine
        .compile(&ConstraintSpec::json_schema_str(schema).unwrap())
        .unwrap()
}

#[test]
fn streaming_reports_each_id_once_and_matches_answer() {
    let (model, tok) = tiny();
    let constraint = object_constraint(&tok);
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

/// The model, keeping the logits it last returned and whether a report came since.
struct Recording<'a> {
    inner: smolt_decode::ModelLogits<'a>,
    last: &'a std::cell::RefCell<(Vec<f32>, bool)>,
}

impl smolt_decode::LogitsSource for Recording<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        let logits = self.inner.forward(tokens)?;
        *self.last.borrow_mut() = (logits.clone(), true);
        Ok(logits)
    }

    fn forward_masked(
        &mut self,
        tokens: &[u32],
        allowed: &smolt_constrain::TokenMask,
    ) -> anyhow::Result<Vec<f32>> {
        let logits = self.inner.forward_masked(tokens, allowed)?;
        *self.last.borrow_mut() = (logits.clone(), true);
        Ok(logits)
    }
}

/// The contract the server's log-probabilities rest on: in each report, the first id is the
/// one sampled from the logits returned last when logits came since the previous report, and
/// every other id is one the grammar forced.
#[test]
fn each_report_starts_with_the_sampled_id_and_the_rest_are_forced() {
    let (model, tok) = tiny();
    let constraint = object_constraint(&tok);
    let prompt = tok.encode("The answer is", true, true);
    let opts = GenerateOptions {
        max_new_tokens: 40,
        draft_tokens: 0,
        ..GenerateOptions::default()
    };
    for c in [None, Some(&constraint)] {
        let last = std::cell::RefCell::new((Vec::new(), false));
        let source = Recording {
            inner: smolt_decode::ModelLogits::new(&model),
            last: &last,
        };
        let context = smolt_decode::Context {
            fed: 0,
            length: model.spec.context_length,
            special: &model.special,
        };
        let mut state = c.map(|c| c.start());
        let (mut sampled, mut forced) = (0, 0);
        let out = smolt_decode::answer_streaming_with(source, context, &prompt, c, &opts, |ids| {
            let mut last = last.borrow_mut();
            let fresh = std::mem::take(&mut last.1);
            for (i, &id) in ids.iter().enumerate() {
                if i == 0 && fresh {
                    // Greedy: the sampled id is the argmax of those logits.
                    assert_eq!(id, smolt_decode::argmax(&last.0));
                    if let Some(s) = state.as_mut() {
                        s.commit(id).unwrap();
                    }
                    sampled += 1;
                } else {
                    let s = state.as_mut().expect("only a grammar forces tokens");
                    assert_eq!(s.forced_tokens().first(), Some(&id), "{ids:?}");
                    s.commit_forced(&[id]).unwrap();
                    forced += 1;
                }
            }
            true
        })
        .unwrap();
        assert_eq!(sampled + forced, out.ids.len());
        assert!(sampled > 0);
        assert_eq!(forced > 0, c.is_some(), "{forced}");
    }
}

/// A prompt whose start was run through the model already (as `smolt generate` does while
/// the constraint engine builds) gets the answer of the whole prompt from scratch, with or
/// without a constraint, however much of it the cache holds; a cache holding all of the
/// prompt leaves nothing to feed and is refused.
#[test]
fn answer_prefilled_gives_what_answer_gives() {
    use smolt_decode::answer_prefilled;
    use smolt_model::Logits;
    let (model, tok) = tiny();
    let constraint = object_constraint(&tok);
    let prompt = tok.encode("The answer to the question is", true, true);
    assert!(prompt.len() > 3);
    for drafts in [0, 4] {
        let opts = GenerateOptions {
            max_new_tokens: 40,
            draft_tokens: drafts,
            ..GenerateOptions::default()
        };
        for c in [None, Some(&constraint)] {
            let whole = answer(&model, &prompt, c, &opts).unwrap();
            for fed in [1, prompt.len() / 2, prompt.len() - 1] {
                let mut cache = model.new_cache();
                model
                    .forward(&prompt[..fed], &mut cache, Logits::None)
                    .unwrap();
                let got = answer_prefilled(&model, cache, &prompt, c, &opts).unwrap();
                assert_eq!(got.ids, whole.ids, "fed {fed}");
                assert_eq!(got.ending, whole.ending, "fed {fed}");
                assert_eq!(got.probs, whole.probs, "fed {fed}");
            }
            let mut cache = model.new_cache();
            model.forward(&prompt, &mut cache, Logits::None).unwrap();
            let Err(err) = answer_prefilled(&model, cache, &prompt, c, &opts) else {
                panic!("a cache holding the whole prompt was taken");
            };
            assert!(err.to_string().contains("last must be left"), "{err}");
        }
    }
}
