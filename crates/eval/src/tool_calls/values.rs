//! One argument's value against its schema type and the truth's acceptable values.

use serde_json::{Map, Value};

/// A string as the leaderboard compares it: lower-cased, without spaces and `,./-_*^`, single
/// quotes read as double. "April 1, 2024" and "april 1 2024" are the same answer.
pub fn standardize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | ',' | '.' | '/' | '-' | '_' | '*' | '^'))
        .collect::<String>()
        .to_lowercase()
        .replace('\'', "\"")
}

/// The schema's type names for `schema` (`type` as a string or a list); empty when it has
/// none, which checks nothing.
pub(super) fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `v` has one of `schema`'s types; arrays also check their items' type, one level
/// deep as the leaderboard does.
pub(super) fn type_ok(schema: &Value, v: &Value) -> bool {
    let ts = types(schema);
    ts.is_empty()
        || ts.iter().any(|t| {
            shallow_type_ok(t, v)
                && match (v, schema.get("items")) {
                    (Value::Array(items), Some(item_schema)) if is_array(t) => {
                        let its = types(item_schema);
                        its.is_empty()
                            || items
                                .iter()
                                .all(|i| its.iter().any(|it| shallow_type_ok(it, i)))
                    }
                    _ => true,
                }
        })
}

fn is_array(t: &str) -> bool {
    matches!(t, "array" | "tuple")
}

fn shallow_type_ok(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        // An integer where a float is expected is the same number.
        "number" | "float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" | "tuple" => v.is_array(),
        "object" | "dict" => v.is_object(),
        "null" => v.is_null(),
        // "any" and types this checker does not know accept anything.
        _ => true,
    }
}

/// How the value is compared, chosen by the schema's type (else the value's own).
enum Kind {
    String,
    List,
    ListOfObjects,
    Object,
    Other,
}

fn kind(schema: &Value, v: &Value) -> Kind {
    let t = types(schema).into_iter().find(|t| shallow_type_ok(t, v));
    match (t, v) {
        (Some("string"), _) | (None, Value::String(_)) => Kind::String,
        (Some("array" | "tuple"), _) | (None, Value::Array(_)) => {
            let item_types = schema.get("items").map(types).unwrap_or_default();
            if item_types.iter().any(|t| matches!(*t, "object" | "dict")) {
                Kind::ListOfObjects
            } else {
                Kind::List
            }
        }
        (Some("object" | "dict"), _) | (None, Value::Object(_)) => Kind::Object,
        _ => Kind::Other,
    }
}

/// Whether `v` is one of `acceptable` under the leaderboard's comparison for its type.
pub(super) fn value_ok(schema: &Value, v: &Value, acceptable: &[Value]) -> bool {
    match kind(schema, v) {
        Kind::String => {
            let s = standardize(v.as_str().unwrap_or_default());
            acceptable
                .iter()
                .filter_map(Value::as_str)
                .any(|a| standardize(a) == s)
        }
        Kind::List => {
            let got = standardized_list(v);
            acceptable
                .iter()
                .any(|a| a.is_array() && same(&got, &standardized_list(a)))
        }
        Kind::ListOfObjects => acceptable.iter().any(|a| match (v, a) {
            (Value::Array(got), Value::Array(want)) => {
                got.len() == want.len()
                    && got
                        .iter()
                        .zip(want)
                        .all(|(g, w)| object_ok(g, std::slice::from_ref(w)))
            }
            _ => false,
        }),
        Kind::Object => object_ok(v, acceptable),
        Kind::Other => acceptable.iter().any(|a| same(v, a)),
    }
}

/// The list with its string items standardised (only the top level, as the leaderboard does).
fn standardized_list(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Value::String(standardize(s)),
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// An object against acceptable objects, each mapping a key to its acceptable values: every
/// key given must be known and hold an acceptable value, every key left out must allow `""`.
fn object_ok(v: &Value, acceptable: &[Value]) -> bool {
    let Value::Object(got) = v else {
        return false;
    };
    acceptable
        .iter()
        .filter_map(Value::as_object)
        .any(|want| object_matches(got, want))
}

fn object_matches(got: &Map<String, Value>, want: &Map<String, Value>) -> bool {
    let values = |k: &str| -> Vec<Value> {
        want.get(k)
            .and_then(Value::as_array)
            .map(|vals| vals.iter().map(standardized_scalar).collect())
            .unwrap_or_default()
    };
    got.iter().all(|(k, g)| {
        want.contains_key(k) && {
            let g = standardized_scalar(g);
            values(k).iter().any(|w| same(&g, w))
        }
    }) && want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .all(|k| values(k).iter().any(|w| w.as_str() == Some("")))
}

fn standardized_scalar(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(standardize(s)),
        other => other.clone(),
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`), as Python compares them.
pub(super) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
