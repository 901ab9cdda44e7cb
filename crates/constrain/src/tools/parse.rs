//! Output text back into calls: the inverse of [`CallSyntax`].
//!
//! Constrained output always parses; the parser is also meant for unconstrained output (a
//! base model prompted with examples), so it tolerates whitespace around calls and between
//! them, and says what it expected where it fails.

use serde_json::Value;

use super::syntax::{CallSyntax, ToolCall};

/// What the model answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutput {
    /// A plain text answer, as generated.
    Text(String),
    /// One or more calls, in the order written.
    Calls(Vec<ToolCall>),
}

/// Output that starts like a call but is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid tool call at byte {offset}: {message}")]
pub struct CallParseError {
    /// Byte offset into the output where parsing stopped.
    pub offset: usize,
    pub message: String,
}

/// Reads `output`. With `calls_allowed`, output that starts (after whitespace) with the
/// syntax's opener must be calls (at most `max_calls`); other output is text where
/// `text_allowed`, else an error.
pub(crate) fn parse_output(
    syntax: &CallSyntax,
    parallel: bool,
    max_calls: usize,
    text_allowed: bool,
    calls_allowed: bool,
    output: &str,
) -> Result<ToolOutput, CallParseError> {
    let start = output.len() - output.trim_start().len();
    let rest = &output[start..];
    if calls_allowed && !rest.is_empty() && starts_call(syntax, rest) {
        let calls = match syntax {
            CallSyntax::Json => json_calls(output, start, parallel)?,
            CallSyntax::Wrapped {
                prefix,
                suffix,
                separator,
            } => wrapped_calls(output, start, prefix, suffix, separator)?,
        };
        if calls.len() > max_calls {
            return Err(CallParseError {
                offset: start,
                message: format!(
                    "{} calls where at most {max_calls} are allowed",
                    calls.len()
                ),
            });
        }
        return Ok(ToolOutput::Calls(calls));
    }
    if text_allowed {
        return Ok(ToolOutput::Text(output.to_string()));
    }
    Err(CallParseError {
        offset: start,
        message: format!(
            "expected a call starting with {:?}",
            syntax.opener(parallel)
        ),
    })
}

fn starts_call(syntax: &CallSyntax, rest: &str) -> bool {
    match syntax {
        // Unconstrained output may hold an object where an array is due, or the reverse:
        // read both rather than call a well-formed call text.
        CallSyntax::Json => rest.starts_with('{') || rest.starts_with('['),
        CallSyntax::Wrapped { prefix, .. } => rest.starts_with(prefix.trim()),
    }
}

fn json_calls(output: &str, start: usize, parallel: bool) -> Result<Vec<ToolCall>, CallParseError> {
    let (value, end) = json_value(output, start)?;
    expect_end(output, end)?;
    match value {
        Value::Array(items) => {
            if !parallel && items.len() != 1 {
                return Err(CallParseError {
                    offset: start,
                    message: format!("{} calls where parallel calls are not allowed", items.len()),
                });
            }
            items.iter().map(|v| call(v, start)).collect()
        }
        v => Ok(vec![call(&v, start)?]),
    }
}

fn wrapped_calls(
    output: &str,
    start: usize,
    prefix: &str,
    suffix: &str,
    separator: &str,
) -> Result<Vec<ToolCall>, CallParseError> {
    // Whitespace at the edges of the wrappers is layout (`<tool_call>\n{...}\n</tool_call>`);
    // a model that writes it differently still wrote the call.
    let (prefix, suffix, separator) = (prefix.trim(), suffix.trim(), separator.trim());
    let mut calls = Vec::new();
    let mut at = start;
    loop {
        at = skip_ws(output, at);
        let Some(after) = output[at..].strip_prefix(prefix) else {
            return Err(CallParseError {
                offset: at,
                message: format!("expected {prefix:?}"),
            });
        };
        at = output.len() - after.len();
        let (value, end) = json_value(output, at)?;
        calls.push(call(&value, at)?);
        at = skip_ws(output, end);
        let Some(after) = output[at..].strip_prefix(suffix) else {
            return Err(CallParseError {
                offset: at,
                message: format!("expected {suffix:?} after the call"),
            });
        };
        at = skip_ws(output, output.len() - after.len());
        if at == output.len() {
            return Ok(calls);
        }
        if let Some(after) = output[at..].strip_prefix(separator) {
            at = output.len() - after.len();
        }
    }
}

/// The JSON value starting at `at` (after whitespace) and the offset just past it.
fn json_value(output: &str, at: usize) -> Result<(Value, usize), CallParseError> {
    let at = skip_ws(output, at);
    let mut stream = serde_json::Deserializer::from_str(&output[at..]).into_iter::<Value>();
    match stream.next() {
        Some(Ok(v)) => Ok((v, at + stream.byte_offset())),
        Some(Err(e)) => Err(CallParseError {
            offset: at,
            message: format!("the call is not valid JSON: {e}"),
        }),
        None => Err(CallParseError {
            offset: at,
            message: "expected a JSON call, found the end of the output".into(),
        }),
    }
}

fn expect_end(output: &str, end: usize) -> Result<(), CallParseError> {
    let after = skip_ws(output, end);
    if after == output.len() {
        Ok(())
    } else {
        Err(CallParseError {
            offset: after,
            message: format!(
                "unexpected text after the call: {:?}",
                output[after..].chars().take(40).collect::<String>()
            ),
        })
    }
}

fn skip_ws(s: &str, at: usize) -> usize {
    s.len() - s[at..].trim_start().len()
}

/// `{"name": "...", "arguments": {...}}`, nothing more.
fn call(v: &Value, offset: usize) -> Result<ToolCall, CallParseError> {
    let err = |message: String| CallParseError { offset, message };
    let Value::Object(o) = v else {
        return Err(err(format!(
            "a call must be an object {{\"name\": ..., \"arguments\": {{...}}}}, found {v}"
        )));
    };
    if let Some(k) = o.keys().find(|k| *k != "name" && *k != "arguments") {
        return Err(err(format!(
            "unknown key `{k}` in a call (only `name` and `arguments`)"
        )));
    }
    let name = match o.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => return Err(err("a call needs a string `name`".into())),
    };
    match o.get("arguments") {
        Some(a @ Value::Object(_)) => Ok(ToolCall::new(name, a.clone())),
        Some(other) => Err(err(format!(
            "the arguments of `{name}` must be a JSON object, found {other}"
        ))),
        None => Err(err(format!("the call of `{name}` has no `arguments`"))),
    }
}
