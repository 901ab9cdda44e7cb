//! The layout of JSON output where a schema does not set its own.

use serde_json::Value;

/// How JSON is laid out when the schema does not say (`x-guidance` in the schema overrides).
///
/// llguidance's default lets whitespace appear anywhere between tokens. A base model given
/// that freedom may spend its whole token budget on newlines and indentation, and the same
/// value would come out in many shapes; a fixed `", "` / `": "` layout (Python's `json.dumps`,
/// common in training data) leaves the model nothing to choose but content and makes those
/// separators forced bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonLayout {
    pub item_separator: String,
    pub key_separator: String,
    /// Allow any whitespace between tokens (llguidance's default) instead of the fixed layout.
    pub whitespace_flexible: bool,
}

impl Default for JsonLayout {
    fn default() -> Self {
        JsonLayout {
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            whitespace_flexible: false,
        }
    }
}

impl JsonLayout {
    /// `schema` with this layout as its `x-guidance`, unless it already has one.
    pub(crate) fn apply_to(&self, mut schema: Value) -> Value {
        if let Value::Object(map) = &mut schema {
            if !map.contains_key("x-guidance") {
                map.insert(
                    "x-guidance".into(),
                    serde_json::json!({
                        "item_separator": self.item_separator,
                        "key_separator": self.key_separator,
                        "whitespace_flexible": self.whitespace_flexible,
                    }),
                );
            }
        }
        schema
    }
}
