//! JSON answers as text: the one serialisation that training teaches and constrained decoding
//! reproduces byte for byte.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a JSON `output` value becomes answer text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonStyle {
    /// `{"a":1,"b":[2,3]}` — serde_json's compact form: fewest tokens, and the form the
    /// constrained decoder is told to produce, so training and decoding agree byte for byte.
    #[default]
    Compact,
    /// `{"a": 1, "b": [2, 3]}` — Python's `json.dumps` default separators, for datasets made
    /// in Python whose answers must be reproduced exactly.
    Python,
}

impl JsonStyle {
    /// The layout constrained decoding must produce for answers in this style: exactly the
    /// bytes the answers were trained on, so the grammar forces the separators the model
    /// learnt instead of ones it has never seen.
    pub fn layout(self) -> smolt_constrain::JsonLayout {
        let (item, key) = match self {
            JsonStyle::Compact => (",", ":"),
            JsonStyle::Python => (", ", ": "),
        };
        smolt_constrain::JsonLayout {
            item_separator: item.into(),
            key_separator: key.into(),
            whitespace_flexible: false,
        }
    }
}

/// Serialises a JSON value as answer text in `style`.
pub fn to_json_text(v: &Value, style: JsonStyle) -> String {
    match style {
        JsonStyle::Compact => serde_json::to_string(v).expect("Value always serialises"),
        JsonStyle::Python => {
            let mut s = String::new();
            write_python_style(v, &mut s);
            s
        }
    }
}

fn write_python_style(v: &Value, out: &mut String) {
    match v {
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_style(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::to_string(k).expect("string serialises"));
                out.push_str(": ");
                write_python_style(x, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("scalar serialises")),
    }
}

/// "a string", "an array", ... for messages about a value of the wrong kind.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What training writes is what the decoding layout forces, separator for separator.
    #[test]
    fn the_decoding_layout_is_the_training_serialisation() {
        let v = json!({"a": [1, 2], "b": {"c": "x"}});
        for style in [JsonStyle::Compact, JsonStyle::Python] {
            let text = to_json_text(&v, style);
            let l = style.layout();
            let expected = format!(
                "{{\"a\"{k}[1{i}2]{i}\"b\"{k}{{\"c\"{k}\"x\"}}}}",
                k = l.key_separator,
                i = l.item_separator
            );
            assert_eq!(text, expected, "{style:?}");
        }
        assert_eq!(
            to_json_text(&json!({"b": 1, "a": [true, null]}), JsonStyle::Python),
            "{\"b\": 1, \"a\": [true, null]}",
            "key order survives"
        );
    }
}
