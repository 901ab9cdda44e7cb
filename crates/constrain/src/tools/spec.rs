//! A request's tools, choice and call syntax: what the constraint is built from.

use serde_json::Value;

use super::grammar;
use super::list::{kind, ToolChoice, ToolError, ToolSet};
use super::parse::{parse_output, CallParseError, ToolOutput};
use super::syntax::{CallSyntax, ToolCall};
use crate::layout::JsonLayout;

/// Calls one answer may hold when parallel calls are allowed and the request sets no bound.
/// OpenAI sets none, but a small model given the choice keeps appending calls (Gemma 3 270M
/// repeated its call until `max_tokens`); a bound in the grammar closes the list instead.
pub const DEFAULT_MAX_PARALLEL_CALLS: usize = 4;
/// The largest bound a request may ask for (the grammar grows with it).
pub const MAX_PARALLEL_CALLS: usize = 64;

/// Everything that decides what a tool-using answer may be: compile it as
/// [`crate::ConstraintSpec::ToolCalls`], read the output back with [`ToolCallSpec::parse`],
/// write training answers with [`ToolCallSpec::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallSpec {
    tools: ToolSet,
    choice: ToolChoice,
    parallel: bool,
    /// Calls allowed when `parallel` (one otherwise).
    max_parallel: usize,
    syntax: CallSyntax,
}

impl ToolCallSpec {
    /// One call at most, in the bare JSON syntax. Refuses a choice the tools cannot satisfy:
    /// `required` with no tools, or a named function that is not among them.
    pub fn new(tools: ToolSet, choice: ToolChoice) -> Result<ToolCallSpec, ToolError> {
        match &choice {
            ToolChoice::Required if tools.is_empty() => {
                return Err(ToolError::RequiredWithoutTools)
            }
            ToolChoice::Function(name) if tools.get(name).is_none() => {
                return Err(ToolError::UnknownChoice {
                    name: name.clone(),
                    known: tools.names(),
                })
            }
            _ => {}
        }
        Ok(ToolCallSpec {
            tools,
            choice,
            parallel: false,
            max_parallel: DEFAULT_MAX_PARALLEL_CALLS,
            syntax: CallSyntax::Json,
        })
    }

    /// From an OpenAI request's `tools`, `tool_choice` and `parallel_tool_calls`, with
    /// OpenAI's defaults (`auto` when there are tools, parallel calls allowed).
    pub fn from_openai(
        tools: Option<&Value>,
        tool_choice: Option<&Value>,
        parallel_tool_calls: Option<&Value>,
    ) -> Result<ToolCallSpec, ToolError> {
        let tools = match tools {
            None | Some(Value::Null) => ToolSet::default(),
            Some(t) => ToolSet::from_openai(t)?,
        };
        let choice = ToolChoice::from_openai(tool_choice, !tools.is_empty())?;
        let parallel = match parallel_tool_calls {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(ToolError::BadParallel { found: kind(other) }),
        };
        Ok(ToolCallSpec::new(tools, choice)?.with_parallel(parallel))
    }

    /// Allow several calls in one answer.
    pub fn with_parallel(mut self, parallel: bool) -> ToolCallSpec {
        self.parallel = parallel;
        self
    }

    /// At most `n` calls in one answer when parallel calls are allowed (1 to
    /// [`MAX_PARALLEL_CALLS`]; [`DEFAULT_MAX_PARALLEL_CALLS`] unless set).
    pub fn with_max_parallel_calls(mut self, n: usize) -> Result<ToolCallSpec, ToolError> {
        if !(1..=MAX_PARALLEL_CALLS).contains(&n) {
            return Err(ToolError::BadMaxCalls {
                found: n.to_string(),
                max: MAX_PARALLEL_CALLS,
            });
        }
        self.max_parallel = n;
        Ok(self)
    }

    /// Write calls in the chat template's own form (see [`CallSyntax`]).
    pub fn with_syntax(mut self, syntax: CallSyntax) -> Result<ToolCallSpec, ToolError> {
        if let CallSyntax::Wrapped { prefix, .. } = &syntax {
            if prefix.trim().is_empty() {
                return Err(ToolError::EmptyPrefix);
            }
        }
        self.syntax = syntax;
        Ok(self)
    }

    pub fn tools(&self) -> &ToolSet {
        &self.tools
    }

    pub fn choice(&self) -> &ToolChoice {
        &self.choice
    }

    pub fn parallel(&self) -> bool {
        self.parallel
    }

    /// The most calls one answer may hold: 1 unless parallel calls are allowed.
    pub fn max_calls(&self) -> usize {
        if self.parallel {
            self.max_parallel
        } else {
            1
        }
    }

    pub fn syntax(&self) -> &CallSyntax {
        &self.syntax
    }

    /// Whether a plain text answer is allowed.
    pub fn allows_text(&self) -> bool {
        matches!(self.choice, ToolChoice::Auto | ToolChoice::None) || self.tools.is_empty()
    }

    /// Whether a call is allowed.
    pub fn allows_calls(&self) -> bool {
        !self.tools.is_empty() && self.choice != ToolChoice::None
    }

    /// The functions a call may name.
    pub fn callable(&self) -> Vec<&super::Tool> {
        match &self.choice {
            ToolChoice::None => Vec::new(),
            ToolChoice::Function(name) => self.tools.get(name).into_iter().collect(),
            ToolChoice::Auto | ToolChoice::Required => self.tools.tools().iter().collect(),
        }
    }

    /// The Lark grammar of the answer under `layout` (what [`crate::ConstraintEngine::compile`]
    /// compiles; public for inspection).
    pub fn lark(&self, layout: &JsonLayout) -> String {
        grammar::lark(self, layout)
    }

    /// Reads a generated answer back into text or calls.
    pub fn parse(&self, output: &str) -> Result<ToolOutput, CallParseError> {
        parse_output(
            &self.syntax,
            self.parallel,
            self.max_calls(),
            self.allows_text(),
            self.allows_calls(),
            output,
        )
    }

    /// `calls` as this spec's constraint would have the model write them (the answer text
    /// of a training example): arguments in the order of each function's `properties`.
    pub fn render(&self, calls: &[ToolCall], layout: &JsonLayout) -> String {
        let order = |name: &str| -> Vec<String> {
            self.tools
                .get(name)
                .and_then(|t| t.parameters.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        self.syntax.render(calls, self.parallel, layout, &order)
    }
}
