//! Tool lists and `tool_choice`, as OpenAI's API writes them, checked before anything is built
//! from them.

use serde_json::{Map, Value};

use crate::meta_schema;

/// OpenAI's limit on a function name's length.
pub const MAX_NAME_LEN: usize = 64;

/// What is wrong with a tool list or a tool choice. Each message names the tool (by index and
/// name) and the OpenAI field, so a server can answer 400 with it as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("`tools` must be an array of {{\"type\": \"function\", \"function\": {{...}}}} objects, found {found}")]
    NotAList { found: String },

    /// A tool that is not `{"type": "function", "function": {"name", "description",
    /// "parameters", "strict"}}`.
    #[error("tools[{index}]: {message}")]
    Malformed { index: usize, message: String },

    #[error("tools[{index}]: the function name {name:?} {reason}")]
    BadName {
        index: usize,
        name: String,
        reason: String,
    },

    #[error("tools[{index}]: the function name {name:?} is already used by tools[{first}]")]
    DuplicateName {
        index: usize,
        first: usize,
        name: String,
    },

    /// `parameters` is not an object schema, or not a valid JSON Schema.
    #[error("tools[{index}] ({name}): `parameters` at {pointer}: {message}")]
    BadParameters {
        index: usize,
        name: String,
        /// JSON pointer into `parameters`, `/` for the root.
        pointer: String,
        message: String,
    },

    #[error("`tool_choice` {0}")]
    BadChoice(String),

    #[error("`tool_choice` names the function {name:?}, which is not in `tools` (they are: {})",
        if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownChoice { name: String, known: Vec<String> },

    #[error("`tool_choice` is \"required\" but `tools` is empty: there is nothing to call")]
    RequiredWithoutTools,

    #[error("`parallel_tool_calls` must be true or false, found {found}")]
    BadParallel { found: String },

    #[error("`max_parallel_tool_calls` must be an integer from 1 to {max}, found {found}")]
    BadMaxCalls { found: String, max: usize },

    /// A [`crate::CallSyntax::Wrapped`] with an empty prefix: a call would be
    /// indistinguishable from a text answer.
    #[error("a wrapped call syntax needs a non-empty prefix to tell calls from text")]
    EmptyPrefix,
}

impl ToolError {
    /// The OpenAI request field the error is about (`param` in an API error).
    pub fn param(&self) -> &'static str {
        match self {
            ToolError::NotAList { .. }
            | ToolError::Malformed { .. }
            | ToolError::BadName { .. }
            | ToolError::DuplicateName { .. }
            | ToolError::BadParameters { .. }
            | ToolError::EmptyPrefix => "tools",
            ToolError::BadChoice(_)
            | ToolError::UnknownChoice { .. }
            | ToolError::RequiredWithoutTools => "tool_choice",
            ToolError::BadParallel { .. } => "parallel_tool_calls",
            ToolError::BadMaxCalls { .. } => "max_parallel_tool_calls",
        }
    }
}

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// 1 to 64 characters among `A-Z a-z 0-9 _ - .`.
    pub name: String,
    /// For the prompt; the constraint does not read it.
    pub description: Option<String>,
    /// A JSON Schema with `"type": "object"`: what `arguments` must match.
    pub parameters: Value,
}

impl Tool {
    /// A function without parameters gets the empty object schema, as OpenAI treats it.
    pub fn new(
        name: impl Into<String>,
        description: Option<String>,
        parameters: Option<Value>,
    ) -> Tool {
        Tool {
            name: name.into(),
            description,
            parameters: parameters
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        }
    }

    /// The OpenAI form, `{"type": "function", "function": {...}}`.
    pub fn to_openai(&self) -> Value {
        let mut f = Map::new();
        f.insert("name".into(), Value::String(self.name.clone()));
        if let Some(d) = &self.description {
            f.insert("description".into(), Value::String(d.clone()));
        }
        f.insert("parameters".into(), self.parameters.clone());
        serde_json::json!({"type": "function", "function": f})
    }
}

/// A checked tool list: unique, well-formed names and object schemas that are valid JSON
/// Schema. Only [`ToolSet::new`] and [`ToolSet::from_openai`] make one, so whatever holds a
/// `ToolSet` can build a constraint from it without checking again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolSet {
    tools: Vec<Tool>,
}

impl ToolSet {
    pub fn new(tools: Vec<Tool>) -> Result<ToolSet, ToolError> {
        for (index, tool) in tools.iter().enumerate() {
            check_name(index, &tool.name)?;
            if let Some(first) = tools[..index].iter().position(|t| t.name == tool.name) {
                return Err(ToolError::DuplicateName {
                    index,
                    first,
                    name: tool.name.clone(),
                });
            }
            check_parameters(index, tool)?;
        }
        Ok(ToolSet { tools })
    }

    /// OpenAI's `tools`: `[{"type": "function", "function": {"name", "description",
    /// "parameters", "strict"}}, ...]`. Keys OpenAI does not define are refused rather than
    /// ignored, so a misspelt `parameters` does not silently become "no arguments".
    pub fn from_openai(tools: &Value) -> Result<ToolSet, ToolError> {
        let Value::Array(items) = tools else {
            return Err(ToolError::NotAList { found: kind(tools) });
        };
        let parsed = items
            .iter()
            .enumerate()
            .map(|(index, item)| tool_from_openai(index, item))
            .collect::<Result<Vec<_>, _>>()?;
        ToolSet::new(parsed)
    }

    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name.clone()).collect()
    }
}

/// What the model may do with the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Answer in text or call tools: the model decides.
    Auto,
    /// Answer in text only.
    None,
    /// Call one or more tools; no text answer.
    Required,
    /// Call this tool (OpenAI's `{"type": "function", "function": {"name": ...}}`).
    Function(String),
}

impl ToolChoice {
    /// OpenAI's `tool_choice`; absent means `auto` when there are tools and `none` otherwise,
    /// as in OpenAI's API. Whether a named tool exists is checked where the tools are known
    /// ([`crate::ToolCallSpec::new`]).
    pub fn from_openai(v: Option<&Value>, have_tools: bool) -> Result<ToolChoice, ToolError> {
        let bad = |m: String| Err(ToolError::BadChoice(m));
        match v {
            None | Some(Value::Null) => Ok(if have_tools {
                ToolChoice::Auto
            } else {
                ToolChoice::None
            }),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => bad(format!(
                    "must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \
                     \"function\": {{\"name\": ...}}}}, found \"{other}\""
                )),
            },
            Some(Value::Object(o)) => {
                if o.get("type").and_then(Value::as_str) != Some("function") {
                    return bad("must have \"type\": \"function\" when it is an object".into());
                }
                if let Some(k) = o.keys().find(|k| *k != "type" && *k != "function") {
                    return bad(format!("has an unknown key `{k}`"));
                }
                match o.get("function").and_then(|f| f.get("name")) {
                    Some(Value::String(name)) => Ok(ToolChoice::Function(name.clone())),
                    _ => bad(
                        "must name the function: {\"type\": \"function\", \"function\": \
                              {\"name\": \"...\"}}"
                            .into(),
                    ),
                }
            }
            Some(other) => bad(format!(
                "must be a string or an object, found {}",
                kind(other)
            )),
        }
    }
}

fn tool_from_openai(index: usize, item: &Value) -> Result<Tool, ToolError> {
    let malformed = |message: String| ToolError::Malformed { index, message };
    let Value::Object(o) = item else {
        return Err(malformed(format!(
            "must be an object {{\"type\": \"function\", \"function\": {{...}}}}, found {}",
            kind(item)
        )));
    };
    match o.get("type") {
        Some(Value::String(t)) if t == "function" => {}
        Some(other) => {
            return Err(malformed(format!(
                "`type` must be \"function\" (the only kind of tool), found {other}"
            )))
        }
        None => {
            return Err(malformed(
                "`type` is missing: it must be \"function\"".into(),
            ))
        }
    }
    if let Some(k) = o.keys().find(|k| *k != "type" && *k != "function") {
        return Err(malformed(format!("unknown key `{k}`")));
    }
    let Some(Value::Object(f)) = o.get("function") else {
        return Err(malformed(
            "`function` must be an object {\"name\", \"description\", \"parameters\"}".into(),
        ));
    };
    if let Some(k) = f
        .keys()
        .find(|k| !["name", "description", "parameters", "strict"].contains(&k.as_str()))
    {
        return Err(malformed(format!(
            "unknown key `function.{k}` (known: name, description, parameters, strict)"
        )));
    }
    let name = match f.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(other) => {
            return Err(malformed(format!(
                "`function.name` must be a string, found {}",
                kind(other)
            )))
        }
        None => return Err(malformed("`function.name` is missing".into())),
    };
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(other) => {
            return Err(malformed(format!(
                "`function.description` must be a string, found {}",
                kind(other)
            )))
        }
    };
    // `strict` asks OpenAI to enforce the schema; here it always is.
    match f.get("strict") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(other) => {
            return Err(malformed(format!(
                "`function.strict` must be true or false, found {}",
                kind(other)
            )))
        }
    }
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => None,
        Some(p) => Some(p.clone()),
    };
    Ok(Tool::new(name, description, parameters))
}

fn check_name(index: usize, name: &str) -> Result<(), ToolError> {
    let bad = |reason: String| {
        Err(ToolError::BadName {
            index,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("is empty".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return bad(format!("is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return bad(format!(
            "has the character {c:?}; names may use only A-Z, a-z, 0-9, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

fn check_parameters(index: usize, tool: &Tool) -> Result<(), ToolError> {
    let bad = |pointer: &str, message: String| {
        Err(ToolError::BadParameters {
            index,
            name: tool.name.clone(),
            pointer: pointer.into(),
            message,
        })
    };
    let Value::Object(p) = &tool.parameters else {
        return bad(
            "/",
            format!(
                "must be an object schema such as {{\"type\": \"object\", \"properties\": \
                 {{...}}}}, found {}",
                kind(&tool.parameters)
            ),
        );
    };
    // Arguments are always a JSON object: the call format and every chat template put them
    // under `"arguments": {...}`.
    if p.get("type") != Some(&Value::String("object".into())) {
        return bad(
            "/type",
            format!(
                "must be \"object\" (arguments are a JSON object), found {}",
                p.get("type")
                    .map_or("nothing".to_string(), Value::to_string)
            ),
        );
    }
    if let Err(v) = meta_schema::check(&tool.parameters) {
        return bad(&v.pointer, v.message);
    }
    let properties = p.get("properties").and_then(Value::as_object);
    let open = p.get("additionalProperties").is_some_and(|a| a != false);
    if let (Some(Value::Array(required)), false) = (p.get("required"), open) {
        for (i, r) in required.iter().enumerate() {
            let r = r.as_str().unwrap_or_default();
            if !properties.is_some_and(|props| props.contains_key(r)) {
                return bad(
                    &format!("/required/{i}"),
                    format!(
                        "the required argument `{r}` is not in `properties`, so no call \
                         could ever have it"
                    ),
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}
