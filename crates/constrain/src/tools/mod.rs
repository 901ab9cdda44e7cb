//! Function calling: tool calls valid by construction.
//!
//! From an OpenAI-style tool list, `tool_choice` and `parallel_tool_calls`, one constraint
//! allows exactly the answers the request permits: a plain text answer (`auto`, `none`) or
//! calls to the tools (`auto`, `required`, a named function), each call's `arguments` held to
//! its function's JSON Schema. The same [`ToolCallSpec`] reads the output back
//! ([`ToolCallSpec::parse`]) and writes training answers ([`ToolCallSpec::render`]), so
//! `smolt generate`, `smolt eval`, training and the server agree on the text of a call.
//!
//! The call format (see [`CallSyntax`] for the wrappers chat templates add):
//!
//! ```text
//! {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
//! [{"name": "get_weather", "arguments": {...}}, {"name": "get_time", "arguments": {...}}]
//! <tool_call>\n{"name": "get_weather", "arguments": {...}}\n</tool_call>
//! ```
//!
//! The first line is one call; the second is parallel calls (a JSON array, even of one call,
//! when they are allowed); the third is [`CallSyntax::hermes`] (Qwen 2.5). Arguments never
//! hold keys their schema does not define (objects without `additionalProperties` are
//! closed), and keys come in the order of the schema's `properties`.
//!
//! Use: `ToolCallSpec::from_openai(tools, tool_choice, parallel)?` (or [`ToolSet::new`] +
//! [`ToolCallSpec::new`]), then `engine.compile(&ConstraintSpec::ToolCalls(spec))`.

mod grammar;
mod list;
mod parse;
mod spec;
mod syntax;

pub use list::{Tool, ToolChoice, ToolError, ToolSet, MAX_NAME_LEN};
pub use parse::{CallParseError, ToolOutput};
pub use spec::{ToolCallSpec, DEFAULT_MAX_PARALLEL_CALLS, MAX_PARALLEL_CALLS};
pub use syntax::{CallSyntax, ToolCall};

#[cfg(test)]
mod tests;
