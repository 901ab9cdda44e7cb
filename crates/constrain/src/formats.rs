//! String formats that llguidance enforces more loosely than JSON Schema validators check
//! them, bounded so that every answer it allows validates.
//!
//! llguidance's `email` follows RFC 5321's grammar but not its lengths: a domain label of any
//! length passes, while validators (the `jsonschema` crate, and RFC 5321 itself) refuse labels
//! over 63 characters, domains over 253 and local parts over 64. A sampled answer hit that
//! (`contact-secure.com.greedyoconditions-and-uses-…-sydney`, a 77-character label). A string
//! schema with `"format": "email"` and no `pattern` of its own gets one that bounds the
//! lengths; llguidance intersects the two.

use serde_json::Value;

/// At most 64 characters before the `@`; after it at most four labels of at most 62
/// (251 characters in all, under the 253 a hostname may have).
pub(crate) const EMAIL_BOUNDS: &str =
    r"^[^@]{1,64}@(?:[a-zA-Z0-9-]{1,62}\.){0,3}[a-zA-Z0-9-]{1,62}$";

/// `schema` with bounds on the formats llguidance under-enforces (see the module docs).
pub(crate) fn bounded(mut schema: Value) -> Value {
    bound(&mut schema);
    schema
}

fn bound(s: &mut Value) {
    match s {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("email")
                && !map.contains_key("pattern")
            {
                map.insert("pattern".into(), EMAIL_BOUNDS.into());
            }
            for (key, child) in map.iter_mut() {
                // Values, not schemas: an object inside them is data to match exactly.
                if !matches!(key.as_str(), "const" | "enum" | "default" | "examples") {
                    bound(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bound),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_strings_get_length_bounds_wherever_they_are() {
        let schema = json!({
            "type": "object",
            "properties": {
                "to": {"type": "string", "format": "email"},
                "cc": {"type": "array", "items": {"type": "string", "format": "email"}},
                "own": {"type": "string", "format": "email", "pattern": "@example\\.com$"},
                "kind": {"const": {"format": "email"}},
                "alt": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}]},
                "when": {"type": "string", "format": "date"}
            }
        });
        let b = bounded(schema);
        let p = &b["properties"];
        assert_eq!(p["to"]["pattern"], EMAIL_BOUNDS);
        assert_eq!(p["cc"]["items"]["pattern"], EMAIL_BOUNDS);
        assert_eq!(p["alt"]["anyOf"][0]["pattern"], EMAIL_BOUNDS);
        // A pattern of the schema's own stays; data and other formats are not touched.
        assert_eq!(p["own"]["pattern"], "@example\\.com$");
        assert_eq!(p["kind"], json!({"const": {"format": "email"}}));
        assert!(p["when"].get("pattern").is_none());
    }

    /// What the bounds allow, the `jsonschema` validator accepts as an email (and llguidance's
    /// format, intersected with them, allows no more); the label that failed is refused.
    #[test]
    fn the_bounds_admit_only_addresses_validators_accept() {
        let check = |schema: Value| {
            jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap()
        };
        let pattern = check(json!({"type": "string", "pattern": EMAIL_BOUNDS}));
        let email = check(json!({"type": "string", "format": "email"}));
        let long_label = format!("a@b.{}", "c".repeat(63));
        let long_local = format!("{}@b.c", "a".repeat(65));
        let longest = format!("{}@{}", "a".repeat(64), vec!["d".repeat(62); 4].join("."));
        for (addr, allowed) in [
            ("joe@example.com", true),
            ("a.b+c@x-y.z.example.org", true),
            (&longest[..], true),
            (&long_label[..], false),
            (&long_local[..], false),
            ("no-at-sign", false),
            ("x@a.b.c.d.e", false),
        ] {
            let v = json!(addr);
            assert_eq!(pattern.is_valid(&v), allowed, "{addr}");
            if allowed {
                assert!(email.is_valid(&v), "the validator refuses {addr}");
            }
        }
    }
}
