//! The constrained decode loop against a scripted logits source: completion, truncation, end
//! tokens and forced-token batching, without running the model.

mod common;

use smolt_constrain::{
    generate_constrained, greedy, ConstraintSpec, Finish, GenerateLimits, LogitsSource,
};

/// Prefers tokens in the order given (earlier = higher logit), everything else lower, and
/// records each batch it is fed.
struct Scripted {
    vocab: usize,
    prefs: Vec<u32>,
    fed: Vec<Vec<u32>>,
}

impl LogitsSource for Scripted {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.fed.push(tokens.to_vec());
        let mut l = vec![0.0f32; self.vocab];
        for (i, &t) in self.prefs.iter().enumerate() {
            l[t as usize] = 100.0 - i as f32;
        }
        Ok(l)
    }
}

fn scripted(prefs: &[&str]) -> Scripted {
    let tok = common::tokenizer();
    let prefs = prefs
        .iter()
        .map(|p| tok.id_of(p).unwrap_or_else(|| panic!("no piece {p}")))
        .collect();
    Scripted {
        vocab: tok.vocab_size(),
        prefs,
        fed: Vec::new(),
    }
}

fn run(
    spec: ConstraintSpec,
    src: &mut Scripted,
    limits: GenerateLimits,
) -> smolt_constrain::ConstrainedOutput {
    let c = common::engine().compile(&spec).unwrap();
    let mut st = c.start();
    generate_constrained(src, &[2], &mut st, limits, greedy).unwrap()
}

#[test]
fn an_unfinished_object_at_the_limit_is_truncated() {
    let spec = ConstraintSpec::JsonSchema(serde_json::json!({
        "type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]
    }));
    let mut src = scripted(&["a"]);
    let out = run(spec, &mut src, GenerateLimits::new(12));
    assert_eq!(out.finish, Finish::Truncated);
    assert!(!out.finish.is_complete());
    assert_eq!(out.ids.len(), 12);
    let text = common::tokenizer().decode(&out.ids, false);
    assert!(text.starts_with("{\"s\": \"aaa"), "{text}");
}

#[test]
fn end_token_only_where_complete() {
    // The source wants to stop at once; the grammar needs at least one `a` first.
    let mut src = scripted(&["<eos>", "a"]);
    let out = run(
        ConstraintSpec::Regex("a{1,5}".into()),
        &mut src,
        GenerateLimits::new(10),
    );
    assert_eq!(out.finish, Finish::EndToken(1));
    assert_eq!(common::tokenizer().decode(&out.ids, false), "a");

    let mut src = scripted(&["<end_of_turn>", "a"]);
    let out = run(
        ConstraintSpec::Regex("a{2,5}".into()),
        &mut src,
        GenerateLimits::new(10),
    );
    assert_eq!(out.finish, Finish::EndToken(106));
    assert_eq!(common::tokenizer().decode(&out.ids, false), "aa");
}

#[test]
fn limit_where_complete_is_still_valid() {
    let mut src = scripted(&["a"]);
    let out = run(
        ConstraintSpec::Regex("a+".into()),
        &mut src,
        GenerateLimits::new(4),
    );
    assert_eq!(out.finish, Finish::LimitAccepting);
    assert!(out.finish.is_complete());
}

#[test]
fn grammar_end_needs_no_end_token() {
    let mut src = scripted(&["no", "yes"]);
    let out = run(
        ConstraintSpec::Lark("start: \"yes\" | \"no\"\n".into()),
        &mut src,
        GenerateLimits::new(10),
    );
    assert_eq!(out.finish, Finish::GrammarEnd);
    assert_eq!(common::tokenizer().decode(&out.ids, false), "no");
}

#[test]
fn forced_tokens_ride_in_one_batch_and_change_nothing() {
    let spec = ConstraintSpec::Regex("The answer is (yes|no)\\. Because [a-z]{1,3}\\.".into());
    let tok = common::tokenizer();
    let mut batched = scripted(&["▁no", "no", "a"]);
    let out = run(spec.clone(), &mut batched, GenerateLimits::new(40));
    let text = tok.decode(&out.ids, false);
    assert!(text.starts_with("The answer is no. Because "), "{text}");
    assert!(out.finish.is_complete());
    // The prompt and the forced prefix go in the first pass.
    assert!(batched.fed[0].len() > 2, "{:?}", batched.fed[0]);
    assert_eq!(batched.fed[0][0], 2);
    assert!(out.stats.forced_tokens > 0 && out.stats.passes_saved == out.stats.forced_tokens);
    assert_eq!(out.stats.forward_passes, batched.fed.len());

    let mut single = scripted(&["▁no", "no", "a"]);
    let limits = GenerateLimits {
        batch_forced: false,
        ..GenerateLimits::new(40)
    };
    let out1 = run(spec, &mut single, limits);
    assert_eq!(out1.ids, out.ids, "batching must not change greedy output");
    assert!(single.fed.iter().skip(1).all(|b| b.len() == 1));
    assert_eq!(
        out1.stats.forward_passes,
        out.stats.forward_passes + out.stats.passes_saved
    );
}

#[test]
fn masks_hold_end_tokens_only_where_complete() {
    let eng = common::engine();
    let c = eng
        .compile(&ConstraintSpec::JsonSchema(
            serde_json::json!({"type": "boolean"}),
        ))
        .unwrap();
    let mut st = c.start();
    let m = st.mask().unwrap();
    assert!(!m.is_allowed(1) && !m.is_allowed(106));
    assert!(m.num_allowed() > 1);
    let t = common::tokenizer().encode("true", false, false);
    st.commit_forced(&t).unwrap();
    assert!(st.is_finished() && st.is_accepting());
    let m = st.mask().unwrap();
    assert_eq!(m.allowed(), vec![1, 106]);
    let mut logits = vec![0.5f32; m.as_words().len() * 32 + 7];
    m.apply(&mut logits);
    assert_eq!(logits.iter().filter(|l| l.is_finite()).count(), 2);
    assert_eq!(m.argmax(&[0.0; 200]), Some(1));
    st.commit(106).unwrap();
    assert!(st.is_finished());
    assert!(st.commit(5).is_err());
}
