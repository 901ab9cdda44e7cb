//! Narrowing a task to some of its fields: the same receipts, asked for fewer answers.
//!
//! A smaller answer is a faster task to train and evaluate (the demo's 20-minute budget), and
//! a user often needs only the header of a document. Selection keeps the schema and the truths
//! in step, so constrained decoding, training and scoring agree on the shape.

use serde_json::{Map, Value};

/// The top-level fields of `schema` named in `fields`, in the order of `fields` (that order
/// becomes the answer's key order). Errors name the fields the schema lacks.
pub fn select_schema(schema: &Value, fields: &[&str]) -> Result<Value, String> {
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("the schema has no top-level `properties` to select from")?;
    let missing: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| !props.contains_key(*f))
        .collect();
    if !missing.is_empty() {
        let known: Vec<&str> = props.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown field(s) {}; the schema has: {}",
            missing.join(", "),
            known.join(", ")
        ));
    }
    let mut out = schema.as_object().cloned().unwrap_or_default();
    let mut kept = Map::new();
    for f in fields {
        kept.insert(f.to_string(), props[*f].clone());
    }
    out.insert("properties".into(), Value::Object(kept));
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        let req: Vec<Value> = fields
            .iter()
            .filter(|f| req.iter().any(|r| r == *f))
            .map(|f| Value::String(f.to_string()))
            .collect();
        out.insert("required".into(), Value::Array(req));
    }
    Ok(Value::Object(out))
}

/// The named fields of an object truth, in the order of `fields`; fields it lacks are left
/// out (scoring reports them), non-objects are returned unchanged.
pub fn select_value(v: &Value, fields: &[&str]) -> Value {
    match v.as_object() {
        Some(o) => Value::Object(
            fields
                .iter()
                .filter_map(|f| o.get(*f).map(|x| (f.to_string(), x.clone())))
                .collect(),
        ),
        None => v.clone(),
    }
}

/// An eval config (as JSON, `{"fields": {...}}`) restricted to the selected fields and their
/// list sub-fields (`items.name` stays when `items` is selected).
pub fn select_eval_config(cfg: &Value, fields: &[&str]) -> Value {
    let mut out = cfg.clone();
    if let Some(map) = out.get_mut("fields").and_then(Value::as_object_mut) {
        map.retain(|k, _| {
            let top = k.split('.').next().unwrap_or(k);
            fields.contains(&top)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "additionalProperties": false,
               "required": ["a", "b", "c"],
               "properties": {"a": {"type": "string"}, "b": {"type": "number"},
                              "c": {"type": "array", "items": {"type": "object"}}}})
    }

    #[test]
    fn schema_selection_keeps_order_required_and_closure() {
        let s = select_schema(&schema(), &["c", "a"]).unwrap();
        let keys: Vec<&String> = s["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["c", "a"]);
        assert_eq!(s["required"], json!(["c", "a"]));
        assert_eq!(s["additionalProperties"], json!(false));
    }

    #[test]
    fn unknown_fields_are_named_with_the_known_ones() {
        let e = select_schema(&schema(), &["a", "zz"]).unwrap_err();
        assert!(e.contains("zz") && e.contains("a, b, c"), "{e}");
        assert!(select_schema(&json!({"type": "string"}), &["a"]).is_err());
    }

    #[test]
    fn values_follow_the_field_order_and_skip_absent_fields() {
        let v = select_value(&json!({"a": 1, "b": 2, "c": 3}), &["c", "a", "x"]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"c":3,"a":1}"#);
        assert_eq!(select_value(&json!("s"), &["a"]), json!("s"));
    }

    #[test]
    fn eval_config_keeps_sub_fields_of_selected_lists() {
        let cfg = json!({"fields": {"a": "case", "c.name": "case", "b": "number"}, "number_tolerance": 0.01});
        let s = select_eval_config(&cfg, &["a", "c"]);
        assert_eq!(s["fields"], json!({"a": "case", "c.name": "case"}));
        assert_eq!(s["number_tolerance"], json!(0.01));
    }
}
