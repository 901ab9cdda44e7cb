//! How a call is written in the model's output, and writing calls that way.

use serde_json::{Map, Value};

use crate::layout::JsonLayout;

/// One call: which function, with which arguments (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
}

impl ToolCall {
    pub fn new(name: impl Into<String>, arguments: Value) -> ToolCall {
        ToolCall {
            name: name.into(),
            arguments,
        }
    }

    /// OpenAI's form of a call in a response (`message.tool_calls[i]`): the arguments as a
    /// JSON string, as OpenAI sends them.
    pub fn to_openai(&self, id: &str) -> Value {
        serde_json::json!({
            "id": id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments.to_string()},
        })
    }

    /// A call as chat data holds it: OpenAI's `{"type": "function", "function": {"name",
    /// "arguments"}}` (arguments a JSON string or an object) or the bare `{"name",
    /// "arguments"}`.
    pub fn from_openai(v: &Value) -> Result<ToolCall, String> {
        let f = v.get("function").unwrap_or(v);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a tool call needs a string `name`: {v}"))?;
        let arguments = match f.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| format!("the arguments of `{name}` are not JSON: {e}"))?,
            Some(a) => a.clone(),
        };
        if !arguments.is_object() {
            return Err(format!(
                "the arguments of `{name}` must be a JSON object, found {arguments}"
            ));
        }
        Ok(ToolCall::new(name, arguments))
    }
}

/// The text of calls in the model's output.
///
/// Every call is the JSON object `{"name": "<function>", "arguments": {...}}`, `name` first
/// (so that the arguments are constrained by the function already chosen), laid out with the
/// engine's [`JsonLayout`] separators. Around it:
/// - [`CallSyntax::Json`]: the bare object; parallel calls are a JSON array of such objects
///   (always an array when parallel calls are allowed, even for one call).
/// - [`CallSyntax::Wrapped`]: each call between `prefix` and `suffix`, parallel calls joined by
///   `separator` — the form chat templates that know tools use (Qwen 2.5 and Hermes:
///   `<tool_call>\n{...}\n</tool_call>`, see [`CallSyntax::hermes`]).
///
/// A text answer (where allowed) is any text that does not start, after optional whitespace,
/// with the call opener (`{`, `[`, or `prefix`), so an output is a call exactly when it
/// starts like one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CallSyntax {
    #[default]
    Json,
    Wrapped {
        prefix: String,
        suffix: String,
        separator: String,
    },
}

impl CallSyntax {
    /// Qwen 2.5's (and the Hermes format's) tool calls: `<tool_call>\n{...}\n</tool_call>`,
    /// one block per call, blocks on separate lines.
    pub fn hermes() -> CallSyntax {
        CallSyntax::Wrapped {
            prefix: "<tool_call>\n".into(),
            suffix: "\n</tool_call>".into(),
            separator: "\n".into(),
        }
    }

    /// The text that starts a call (or the list of calls), and nothing else.
    pub fn opener(&self, parallel: bool) -> &str {
        match self {
            CallSyntax::Json if parallel => "[",
            CallSyntax::Json => "{",
            CallSyntax::Wrapped { prefix, .. } => prefix,
        }
    }

    /// `calls` as the model should write them: the answer text for training. `order` gives
    /// each function's parameter names in the order the constraint emits them, so that this
    /// text is one the constraint accepts. More than one call needs `parallel`.
    pub fn render(
        &self,
        calls: &[ToolCall],
        parallel: bool,
        layout: &JsonLayout,
        order: &dyn Fn(&str) -> Vec<String>,
    ) -> String {
        let one = |c: &ToolCall| {
            let mut s = String::new();
            s.push_str("{\"name\"");
            s.push_str(&layout.key_separator);
            write_json(&Value::String(c.name.clone()), layout, &mut s);
            s.push_str(&layout.item_separator);
            s.push_str("\"arguments\"");
            s.push_str(&layout.key_separator);
            write_json(&in_order(&c.arguments, &order(&c.name)), layout, &mut s);
            s.push('}');
            s
        };
        match self {
            CallSyntax::Json if parallel => {
                let items: Vec<String> = calls.iter().map(one).collect();
                format!("[{}]", items.join(&layout.item_separator))
            }
            CallSyntax::Json => calls.iter().map(one).collect::<Vec<_>>().join(""),
            CallSyntax::Wrapped {
                prefix,
                suffix,
                separator,
            } => calls
                .iter()
                .map(|c| format!("{prefix}{}{suffix}", one(c)))
                .collect::<Vec<_>>()
                .join(separator),
        }
    }
}

/// `args` with the keys named in `order` first, in that order, then the rest as they were.
fn in_order(args: &Value, order: &[String]) -> Value {
    let Value::Object(map) = args else {
        return args.clone();
    };
    let mut out = Map::new();
    for k in order {
        if let Some(v) = map.get(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in map {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// JSON with the layout's separators, as llguidance writes it under that layout.
fn write_json(v: &Value, layout: &JsonLayout, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&layout.item_separator);
                }
                write_json(item, layout, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(&layout.item_separator);
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(&layout.key_separator);
                write_json(item, layout, out);
            }
            out.push('}');
        }
        // serde_json reads `-0` and integers past u64 as floats, and writes small floats with
        // an exponent (`3e-17`): neither would match the bounded number grammar the
        // constraint uses. Rust's `Display` writes the shortest plain decimal.
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 2f64.powi(53) => {
                out.push_str(&(f as i64).to_string())
            }
            Some(f) => out.push_str(&f.to_string()),
            None => out.push_str(&n.to_string()),
        },
        scalar => out.push_str(&scalar.to_string()),
    }
}
