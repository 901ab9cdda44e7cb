//! Scoring function calls as the Berkeley Function Calling Leaderboard's AST checker does.
//!
//! A case is the functions offered, what the model answered ([`Answer`]) and what it should
//! have done ([`Expected`]): call these functions with one of these values per argument, or
//! not call at all. [`check_case`] says pass or fail and why (which call, which argument, what
//! was wrong); [`ToolCallStats`] aggregates per tool and per argument for reports.
//!
//! The rules, as the leaderboard applies them:
//! - The function name must match.
//! - Every argument the schema requires must be present.
//! - No argument the schema does not define, and none the truth does not list.
//! - Types: the value's JSON type must be the schema's (`string`, `integer`, `number`,
//!   `boolean`, `array`, `object`; the leaderboard's `float`, `dict`, `tuple` and `any` too);
//!   an integer is accepted for a `number`. Array items are checked one level deep.
//! - Values against the truth's list of acceptable values per argument: strings compared
//!   after lower-casing and removing spaces and `,./-_*^` (and `'` read as `"`); lists
//!   compared in order, their string items standardised alike; objects key by key against
//!   acceptable values per key; other values by equality (numbers by value).
//! - An optional argument may be absent only where its acceptable list holds `""`.
//! - Several expected calls (parallel) are matched to the output's calls in any order; the
//!   counts must be equal.
//! - A "no call" case (irrelevance) passes when the model did not call: text, an empty list
//!   of calls, or output that is not a call.
//!
//! Where this differs from the leaderboard's code, on purpose:
//! - Parallel calls are matched by a maximum matching, not greedily in the truth's order: a
//!   greedy pass can pair a call with the wrong expectation and fail a correct answer.
//! - An integer is accepted for a `number` inside arrays too (the leaderboard accepts it only
//!   at the top level): JSON does not tell `1` from `1.0`, and a JSON Schema `number`
//!   array holds integers.
//! - The leaderboard's "variable" escape (a string accepted for another type when the truth
//!   lists a string) is not applied: truth here is JSON, not Python source.
//! - Every problem of a call is reported, not only the first, so per-argument accuracy sees
//!   every argument.

mod check;
mod report;
mod stats;
mod values;

use serde::Serialize;
use serde_json::{Map, Value};

pub use check::check_case;
pub use report::{ScoredCase, ToolCallReport, ToolEvaluator, ToolSample, TOOL_CALLS_KIND};
pub use stats::{ArgumentStat, Rate, ToolCallStats, NO_CALL};
pub use values::standardize;

/// A function the model was offered: its name and JSON Schema `parameters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Function {
    pub name: String,
    pub parameters: Value,
}

impl Function {
    /// A tool list in OpenAI's form (`[{"type": "function", "function": {...}}]`) or the
    /// leaderboard's (`[{"name", "description", "parameters"}]`).
    pub fn list_from_json(tools: &Value) -> Result<Vec<Function>, String> {
        let items = tools
            .as_array()
            .ok_or_else(|| format!("a tool list must be an array, found {tools}"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let f = t.get("function").unwrap_or(t);
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("tools[{i}] has no string `name`"))?;
                Ok(Function {
                    name: name.to_string(),
                    parameters: f
                        .get("parameters")
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                })
            })
            .collect()
    }

    fn property(&self, name: &str) -> Option<&Value> {
        self.parameters.get("properties")?.get(name)
    }

    fn required(&self) -> Vec<&str> {
        self.parameters
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// One call the model made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub name: String,
    pub arguments: Value,
}

impl Call {
    pub fn new(name: impl Into<String>, arguments: Value) -> Call {
        Call {
            name: name.into(),
            arguments,
        }
    }
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Answer {
    Text(String),
    Calls(Vec<Call>),
    /// Output that looked like a call but did not parse (the parser's message).
    Malformed(String),
}

/// One expected call: the function and, per argument, the values accepted (`""` in a list
/// means the argument may be left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

impl ExpectedCall {
    /// The leaderboard's form: `{"function_name": {"argument": [acceptable, ...], ...}}`.
    pub fn from_bfcl(v: &Value) -> Result<ExpectedCall, String> {
        let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
            format!("an expected call is {{\"function\": {{\"argument\": [values]}}}}, found {v}")
        })?;
        let (name, args) = obj.iter().next().expect("one key");
        let args = args
            .as_object()
            .ok_or_else(|| format!("the arguments of `{name}` must be an object"))?;
        for (k, vals) in args {
            if !vals.is_array() {
                return Err(format!(
                    "`{name}`.`{k}`: acceptable values must be a list, found {vals}"
                ));
            }
        }
        Ok(ExpectedCall {
            name: name.clone(),
            arguments: args.clone(),
        })
    }

    /// A single true call: each argument's value is the only one accepted, and arguments the
    /// call leaves out must stay out. Objects (and lists of objects) are written as the
    /// leaderboard writes them — each key mapped to its list of acceptable values — since that
    /// is the form its object comparison reads.
    pub fn exact(call: &Call) -> ExpectedCall {
        /// `{k: v}` → `{k: [v]}`, the acceptable-values form of one object.
        fn object_form(v: &Value) -> Value {
            match v {
                Value::Object(o) => Value::Object(
                    o.iter()
                        .map(|(k, v)| (k.clone(), Value::Array(vec![v.clone()])))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        let form = |v: &Value| match v {
            Value::Object(_) => object_form(v),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                Value::Array(items.iter().map(object_form).collect())
            }
            other => other.clone(),
        };
        let arguments = call
            .arguments
            .as_object()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.clone(), Value::Array(vec![form(v)])))
                    .collect()
            })
            .unwrap_or_default();
        ExpectedCall {
            name: call.name.clone(),
            arguments,
        }
    }

    fn acceptable(&self, argument: &str) -> Option<&[Value]> {
        self.arguments
            .get(argument)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
    }
}

/// What the model should have done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Expected {
    /// Not call any function (the leaderboard's irrelevance cases).
    NoCall,
    /// Make exactly these calls, in any order.
    Calls(Vec<ExpectedCall>),
}

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A call where none was expected.
    CalledWhenNoCallExpected {
        names: Vec<String>,
    },
    /// A text answer where calls were expected.
    NoCall,
    /// Output that did not parse as calls.
    Malformed {
        message: String,
    },
    WrongCount {
        expected: usize,
        got: usize,
    },
    WrongFunction {
        expected: String,
        got: String,
    },
    /// The truth names a function that is not in the list (a broken case, not a model error).
    UnknownFunction {
        name: String,
    },
    ArgumentsNotObject {
        function: String,
    },
    MissingRequired {
        function: String,
        argument: String,
    },
    /// An argument the function's schema does not define.
    UndefinedArgument {
        function: String,
        argument: String,
    },
    /// An argument the schema defines but the truth does not list.
    UnexpectedArgument {
        function: String,
        argument: String,
    },
    WrongType {
        function: String,
        argument: String,
        expected: String,
        got: Value,
    },
    WrongValue {
        function: String,
        argument: String,
        got: Value,
        acceptable: Vec<Value>,
    },
    /// An optional argument left out where the truth does not allow leaving it out.
    MissingOptional {
        function: String,
        argument: String,
    },
    /// An expected call (index into the truth) that no output call satisfies; `closest`
    /// holds the problems of the nearest output call.
    Unmatched {
        expected: usize,
        function: String,
        closest: Vec<Problem>,
    },
}

impl Problem {
    /// A short name for the kind of problem (`wrong_value`), for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::CalledWhenNoCallExpected { .. } => "called_when_no_call_expected",
            Problem::NoCall => "no_call",
            Problem::Malformed { .. } => "malformed",
            Problem::WrongCount { .. } => "wrong_count",
            Problem::WrongFunction { .. } => "wrong_function",
            Problem::UnknownFunction { .. } => "unknown_function",
            Problem::ArgumentsNotObject { .. } => "arguments_not_object",
            Problem::MissingRequired { .. } => "missing_required",
            Problem::UndefinedArgument { .. } => "undefined_argument",
            Problem::UnexpectedArgument { .. } => "unexpected_argument",
            Problem::WrongType { .. } => "wrong_type",
            Problem::WrongValue { .. } => "wrong_value",
            Problem::MissingOptional { .. } => "missing_optional",
            Problem::Unmatched { .. } => "unmatched",
        }
    }

    /// The argument the problem is about, if it is about one.
    pub fn argument(&self) -> Option<&str> {
        match self {
            Problem::MissingRequired { argument, .. }
            | Problem::UndefinedArgument { argument, .. }
            | Problem::UnexpectedArgument { argument, .. }
            | Problem::WrongType { argument, .. }
            | Problem::WrongValue { argument, .. }
            | Problem::MissingOptional { argument, .. } => Some(argument),
            _ => None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CalledWhenNoCallExpected { names } => {
                write!(f, "called {} where no call was expected", names.join(", "))
            }
            Problem::NoCall => write!(f, "answered in text where a call was expected"),
            Problem::Malformed { message } => {
                write!(f, "the output is not a valid call: {message}")
            }
            Problem::WrongCount { expected, got } => {
                write!(f, "{got} calls where {expected} were expected")
            }
            Problem::WrongFunction { expected, got } => {
                write!(f, "called `{got}` instead of `{expected}`")
            }
            Problem::UnknownFunction { name } => {
                write!(
                    f,
                    "the truth names `{name}`, which is not among the functions"
                )
            }
            Problem::ArgumentsNotObject { function } => {
                write!(f, "`{function}`: the arguments are not a JSON object")
            }
            Problem::MissingRequired { function, argument } => {
                write!(
                    f,
                    "`{function}`: the required argument `{argument}` is missing"
                )
            }
            Problem::UndefinedArgument { function, argument } => {
                write!(f, "`{function}` has no argument `{argument}`")
            }
            Problem::UnexpectedArgument { function, argument } => {
                write!(f, "`{function}`: `{argument}` was given but not expected")
            }
            Problem::WrongType {
                function,
                argument,
                expected,
                got,
            } => write!(
                f,
                "`{function}`.`{argument}`: expected {expected}, got {got}"
            ),
            Problem::WrongValue {
                function,
                argument,
                got,
                acceptable,
            } => write!(
                f,
                "`{function}`.`{argument}`: {got} is not one of {}",
                Value::Array(acceptable.clone())
            ),
            Problem::MissingOptional { function, argument } => write!(
                f,
                "`{function}`: `{argument}` is missing and the truth does not allow leaving it out"
            ),
            Problem::Unmatched {
                expected,
                function,
                closest,
            } => {
                write!(f, "no call matches expected call {expected} (`{function}`)")?;
                if !closest.is_empty() {
                    let c: Vec<String> = closest.iter().map(|p| p.to_string()).collect();
                    write!(f, "; closest: {}", c.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

/// How one expected argument came out, for per-argument accuracy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgumentOutcome {
    pub function: String,
    pub argument: String,
    pub correct: bool,
}

/// The verdict on one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub passed: bool,
    /// Empty exactly when the case passed.
    pub problems: Vec<Problem>,
    /// The functions the truth expects called, in its order (empty for "no call").
    pub expected_functions: Vec<String>,
    /// Every expected argument of every expected call.
    pub arguments: Vec<ArgumentOutcome>,
}

impl CaseResult {
    /// The problems as one line.
    pub fn reason(&self) -> String {
        self.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests;
