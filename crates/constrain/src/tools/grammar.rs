//! The one Lark grammar for a tool-using answer: a text answer, or calls whose arguments are
//! each function's JSON Schema embedded with llguidance's `%json`.

use serde_json::{json, Value};

use super::spec::ToolCallSpec;
use super::syntax::CallSyntax;
use crate::layout::JsonLayout;

pub(crate) fn lark(spec: &ToolCallSpec, layout: &JsonLayout) -> String {
    let (text, calls) = (spec.allows_text(), spec.allows_calls());
    let mut g = String::new();
    g.push_str(match (text, calls) {
        (true, true) => "start: TEXT | calls\n",
        (false, true) => "start: calls\n",
        // `ToolCallSpec::new` refuses the choices that would allow neither.
        _ => "start: TEXT\n",
    });
    if text {
        g.push_str("TEXT: /(?s:.+)/");
        if calls {
            // Text may not start like a call, so that every output that looks like a call was
            // held to the tools' schemas, and the parser can tell the two apart by the start.
            match spec.syntax() {
                CallSyntax::Json => g.push_str(r" & ~/(?s:\s*[\[{].*)/"),
                CallSyntax::Wrapped { prefix, .. } => g.push_str(&format!(
                    r" & ~(/\s*/ {} /(?s:.*)/)",
                    literal(prefix.trim())
                )),
            }
        }
        g.push('\n');
    }
    if !calls {
        return g;
    }
    let max = spec.max_calls();
    match spec.syntax() {
        CallSyntax::Json if !spec.parallel() => g.push_str("calls: call\n"),
        CallSyntax::Json => g.push_str(&format!(
            "calls: \"[\" {} \"]\"\n",
            bounded("call", &literal(&layout.item_separator), max)
        )),
        CallSyntax::Wrapped {
            prefix,
            suffix,
            separator,
        } => {
            let sep = if separator.is_empty() {
                String::new()
            } else {
                literal(separator)
            };
            g.push_str(&format!("calls: {}\n", bounded("wrapped", &sep, max)));
            g.push_str(&format!("wrapped: {} call", literal(prefix)));
            if !suffix.is_empty() {
                g.push_str(&format!(" {}", literal(suffix)));
            }
            g.push('\n');
        }
    }
    let callable = spec.callable();
    let alternatives: Vec<String> = (0..callable.len()).map(|i| format!("call_{i}")).collect();
    g.push_str(&format!("call: {}\n", alternatives.join(" | ")));
    for (i, tool) in callable.iter().enumerate() {
        // The envelope is fixed text: the name is chosen among the functions, and the
        // arguments follow the chosen function's schema.
        let head = format!(
            "{{\"name\"{ks}\"{name}\"{is}\"arguments\"{ks}",
            ks = layout.key_separator,
            is = layout.item_separator,
            name = tool.name,
        );
        let schema = layout.apply_to(crate::formats::bounded(tightened(&tool.parameters)));
        g.push_str(&format!(
            "call_{i}: {} %json {} \"}}\"\n",
            literal(&head),
            schema
        ));
    }
    g
}

/// One to `max` of `item`, `sep` (Lark text, may be empty) between them, as nested optionals
/// (`a (sep a (sep a)?)?`): a counted repetition in plain context-free form.
fn bounded(item: &str, sep: &str, max: usize) -> String {
    let mut g = item.to_string();
    for _ in 1..max {
        g = format!("{item} ({sep} {})?", g);
    }
    g
}

/// A Lark string literal: llguidance reads its body as a JSON string.
fn literal(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// `schema` as the constraint enforces it: stricter than JSON Schema requires, so that every
/// call is one a program can use.
/// - `"additionalProperties": false` on every object schema that does not say otherwise: JSON
///   Schema lets an object carry keys it does not list, but a call that invents arguments is
///   wrong however valid it is (the leaderboard fails it), so the model is not offered any.
///   `allOf` and `not` branches are left alone: closing one would reject the keys another
///   adds.
/// - Bounds on numbers that have none: JSON allows `6e666` and integers of any length, which
///   no ordinary parser holds (serde_json refuses them). Integers stay within ±(2^53 − 1),
///   exact in every JSON library, and numbers within ±10^15, which also leaves out exponents.
fn tightened(schema: &Value) -> Value {
    let mut s = schema.clone();
    tighten(&mut s);
    s
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the largest integer every JSON parser reads exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
const MAX_NUMBER: f64 = 1e15;

fn tighten(s: &mut Value) {
    let Value::Object(map) = s else {
        return;
    };
    let has_type = |t: &str| match map.get("type") {
        Some(Value::String(x)) => x == t,
        Some(Value::Array(xs)) => xs.iter().any(|x| x == t),
        _ => false,
    };
    let is_object = has_type("object") || map.contains_key("properties");
    let (integer, number) = (has_type("integer"), has_type("number"));
    if is_object
        && !map.contains_key("additionalProperties")
        && !map.contains_key("patternProperties")
        && !map.contains_key("allOf")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if integer || number {
        let (lo, hi) = if number {
            (json!(-MAX_NUMBER), json!(MAX_NUMBER))
        } else {
            (json!(-MAX_SAFE_INTEGER), json!(MAX_SAFE_INTEGER))
        };
        bound(map, "minimum", "exclusiveMinimum", lo, |a, b| a <= b);
        bound(map, "maximum", "exclusiveMaximum", hi, |a, b| a >= b);
    }
    for key in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(tighten);
        }
    }
    for key in ["anyOf", "oneOf", "prefixItems"] {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            children.iter_mut().for_each(tighten);
        }
    }
    for key in ["items", "additionalProperties"] {
        match map.get_mut(key) {
            Some(Value::Array(children)) => children.iter_mut().for_each(tighten),
            Some(child @ Value::Object(_)) => tighten(child),
            _ => {}
        }
    }
}

/// Sets `key` to `default` where neither it nor `exclusive` bounds that side, unless the
/// other side's bound lies beyond the default (`beyond(default, other)`), which would leave
/// nothing.
fn bound(
    map: &mut serde_json::Map<String, Value>,
    key: &str,
    exclusive: &str,
    default: Value,
    beyond: fn(f64, f64) -> bool,
) {
    if map.contains_key(key) || map.contains_key(exclusive) {
        return;
    }
    let other = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
        .iter()
        .filter(|k| **k != key && **k != exclusive)
        .filter_map(|k| map.get(*k).and_then(Value::as_f64))
        .collect::<Vec<_>>();
    let d = default.as_f64().unwrap_or_default();
    if other.iter().all(|&o| beyond(d, o)) {
        map.insert(key.into(), default);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_closed_unless_they_say_otherwise() {
        let s = tightened(&json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"x": {"type": "string"}}},
                "b": {"type": "array", "items": {"type": "object"}},
                "c": {"type": "object", "additionalProperties": true},
                "d": {"allOf": [{"type": "object", "properties": {"y": {}}}]},
                "properties": {"type": "string"}
            }
        }));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
        assert_eq!(s["properties"]["b"]["items"]["additionalProperties"], false);
        assert_eq!(s["properties"]["c"]["additionalProperties"], true);
        assert!(s["properties"]["d"]["allOf"][0]
            .get("additionalProperties")
            .is_none());
        // A property that happens to be called "properties" is a schema, not a keyword.
        assert_eq!(s["properties"]["properties"], json!({"type": "string"}));
    }

    #[test]
    fn numbers_get_bounds_that_do_not_contradict_their_own() {
        let s = tightened(&json!({"type": "object", "properties": {
            "i": {"type": "integer"},
            "n": {"type": ["number", "null"], "minimum": 0},
            "big": {"type": "number", "minimum": 1e20},
            "x": {"type": "integer", "exclusiveMaximum": 10}
        }}));
        let p = &s["properties"];
        assert_eq!(p["i"]["minimum"], json!(-MAX_SAFE_INTEGER));
        assert_eq!(p["i"]["maximum"], json!(MAX_SAFE_INTEGER));
        assert_eq!(
            (&p["n"]["minimum"], &p["n"]["maximum"]),
            (&json!(0), &json!(1e15))
        );
        assert!(p["big"].get("maximum").is_none());
        assert!(p["x"].get("maximum").is_none());
        assert_eq!(p["x"]["minimum"], json!(-MAX_SAFE_INTEGER));
    }
}
