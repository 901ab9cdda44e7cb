//! One sequence's state on the real Gemma 3 vocabulary: masks, commits and end tokens, without
//! a decode loop.

mod common;

use smolt_constrain::ConstraintSpec;

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
