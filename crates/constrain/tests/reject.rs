//! Constraints llguidance cannot honour fail at compile time, with a message that says where.

mod common;

use serde_json::json;
use smolt_constrain::{ConstrainError, ConstraintSpec};

fn compile_err(spec: ConstraintSpec) -> ConstrainError {
    match common::engine().compile(&spec) {
        Ok(_) => panic!("{spec:?} should be rejected"),
        Err(e) => {
            eprintln!("{spec:?}\n  -> {e}\n");
            e
        }
    }
}

fn schema(v: serde_json::Value) -> ConstraintSpec {
    ConstraintSpec::JsonSchema(v)
}

#[test]
fn invalid_json_schema_names_the_spot() {
    let e = compile_err(schema(json!({
        "type": "object",
        "properties": {"total": {"type": "number", "minimum": "ten"}}
    })));
    match &e {
        ConstrainError::InvalidSchema { pointer, .. } => {
            assert_eq!(pointer, "/properties/total/minimum")
        }
        e => panic!("{e}"),
    }
    let e = compile_err(schema(json!({"type": "strnig"})));
    assert!(matches!(e, ConstrainError::InvalidSchema { ref pointer, .. } if pointer == "/type"));
    let e = compile_err(schema(json!({"required": "name"})));
    assert!(e.to_string().contains("/required"), "{e}");
    let e = compile_err(schema(json!(42)));
    assert!(matches!(e, ConstrainError::InvalidSchema { .. }));
}

#[test]
fn malformed_json_is_a_json_error() {
    let e = ConstraintSpec::json_schema_str("{\"type\": \"object\",}").unwrap_err();
    assert!(matches!(e, ConstrainError::Json { .. }), "{e}");
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn unsupported_keywords_are_named() {
    let e = compile_err(schema(json!({
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "dependentSchemas": {"a": {"required": ["b"]}}
    })));
    assert!(matches!(e, ConstrainError::Rejected { .. }), "{e}");
    assert!(e.to_string().contains("dependentSchemas"), "{e}");
    assert!(e.to_string().contains("hint"), "{e}");
}

#[test]
fn contradictions_are_rejected() {
    for s in [
        json!({"type": "integer", "minimum": 10, "maximum": 5}),
        json!({"type": "string", "minLength": 5, "maxLength": 2}),
        json!({"allOf": [{"type": "string"}, {"type": "integer"}]}),
        json!({"type": "array", "minItems": 3, "maxItems": 1}),
        json!({"type": "object", "properties": {"a": {"type": "integer"}},
               "required": ["a", "b"], "additionalProperties": false}),
        json!({"enum": ["a", "b"], "type": "integer"}),
    ] {
        let e = compile_err(schema(s.clone()));
        assert!(
            matches!(
                e,
                ConstrainError::Rejected { .. } | ConstrainError::AcceptsNothing { .. }
            ),
            "{s}: {e}"
        );
    }
}

#[test]
fn grammars_that_accept_nothing_are_rejected() {
    // `a` never finishes: every derivation needs another `a`.
    let e = compile_err(ConstraintSpec::Lark("start: a\na: \"x\" a\n".into()));
    assert!(matches!(e, ConstrainError::AcceptsNothing { .. }), "{e}");
    assert!(e.to_string().contains("`a`"), "{e}");
    let e = compile_err(ConstraintSpec::Regex("[a&&b]".into()));
    assert!(matches!(e, ConstrainError::AcceptsNothing { .. }), "{e}");
    assert!(e.to_string().contains("the regex"), "{e}");
}

#[test]
fn syntax_errors_are_rejected() {
    let e = compile_err(ConstraintSpec::Lark("start: \"a\" (\n".into()));
    assert!(matches!(e, ConstrainError::Rejected { .. }), "{e}");
    let e = compile_err(ConstraintSpec::Lark("start: undefined_rule\n".into()));
    assert!(e.to_string().contains("undefined_rule"), "{e}");
    let e = compile_err(ConstraintSpec::Regex("(unclosed".into()));
    assert!(matches!(e, ConstrainError::Rejected { .. }), "{e}");
}

#[test]
fn good_constraints_compile() {
    let eng = common::engine();
    for spec in [
        ConstraintSpec::AnyJson,
        ConstraintSpec::Regex("[0-9]{4}-[0-9]{2}-[0-9]{2}".into()),
        ConstraintSpec::Lark("start: \"yes\" | \"no\"\n".into()),
        schema(
            json!({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}),
        ),
    ] {
        eng.compile(&spec)
            .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    }
}
