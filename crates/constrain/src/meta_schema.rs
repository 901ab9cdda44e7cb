//! Checking a JSON Schema against the meta-schema before llguidance sees it.
//!
//! llguidance does not check the meta-schema (its validation feature would pull a second
//! `jsonschema`), and on a malformed schema it either errs vaguely or silently ignores the
//! bad part. The meta-schema check names the exact spot.

use serde_json::Value;

/// Where a schema breaks the meta-schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// JSON pointer into the schema, `/` for the root.
    pub pointer: String,
    pub message: String,
}

pub(crate) fn check(schema: &Value) -> Result<(), Violation> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(Violation {
            pointer: "/".into(),
            message: format!("a schema must be an object or a boolean, not {schema}"),
        });
    }
    if let Err(e) = jsonschema::meta::validate(schema) {
        let pointer = e.instance_path.to_string();
        return Err(Violation {
            pointer: if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            message: e.to_string(),
        });
    }
    Ok(())
}
