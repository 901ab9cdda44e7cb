//! Public function-calling datasets → smolt's tool records (`{"tools": [...], "messages":
//! [...]}`, OpenAI's chat format), so that a team can start from them or mix them with its own.
//!
//! Two formats, the most common ones:
//! - **xLAM** (Salesforce's `xlam-function-calling-60k` and the APIGen data made like it): one
//!   object per line or a JSON array, `{"query": "...", "tools": "<JSON list>", "answers":
//!   "<JSON list>"}` (the lists may also be inline JSON). A tool is `{"name", "description",
//!   "parameters": {"arg": {"type": "str", "description", "default"}}}` with Python type names
//!   (`str`, `int`, `float`, `bool`, `List[str]`, `Dict`, `Tuple`, `Any`, `…, optional`); they
//!   become JSON Schema (`string`, `integer`, `number`, `boolean`, `array` with `items`,
//!   `object`), and an argument is required unless its type says `optional` or it has a
//!   default. Answers are `[{"name", "arguments"}]`, parallel where there are several; an empty
//!   list is a request no tool fits.
//! - **Glaive** (`glaive-function-calling-v2`): `{"system": "SYSTEM: ... -\n{function}\n{...}",
//!   "chat": "USER: ...\n\n\nASSISTANT: <functioncall> {\"name\": ..., \"arguments\": '{...}'}
//!   <|endoftext|>\n\n\nFUNCTION RESPONSE: ..."}`. The functions are read from the system
//!   text, the first user turn is the request and the first assistant turn the answer: a call
//!   (its arguments written as a quoted JSON string, as Glaive does) or text.
//!
//! A record that cannot be read is skipped and counted with its line and the reason, never
//! guessed at. The Berkeley Function Calling Leaderboard's data is an external test: do not
//! convert it for training.

use crate::tool_synth::openai_tool;
use serde_json::{json, Map, Value};

/// The formats [`import_tool_records`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    Xlam,
    Glaive,
}

impl ToolFormat {
    pub fn parse(s: &str) -> Option<ToolFormat> {
        match s {
            "xlam" => Some(ToolFormat::Xlam),
            "glaive" => Some(ToolFormat::Glaive),
            _ => None,
        }
    }
}

/// What an import made: the records, and the lines it skipped with why.
#[derive(Debug, Default)]
pub struct Imported {
    pub records: Vec<Value>,
    /// `(line or item number, 1-based; reason)`.
    pub skipped: Vec<(usize, String)>,
}

/// Reads `text` (JSON lines, or one JSON array) in `format`.
pub fn import_tool_records(text: &str, format: ToolFormat) -> Imported {
    let items: Vec<(usize, Result<Value, String>)> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, Ok(v)))
            .collect(),
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                (
                    i + 1,
                    serde_json::from_str(l).map_err(|e| format!("not JSON: {e}")),
                )
            })
            .collect(),
    };
    let mut out = Imported::default();
    for (line, item) in items {
        let record = item.and_then(|v| match format {
            ToolFormat::Xlam => from_xlam(&v),
            ToolFormat::Glaive => from_glaive(&v),
        });
        match record {
            Ok(r) => out.records.push(r),
            Err(e) => out.skipped.push((line, e)),
        }
    }
    out
}

/// A field that holds JSON either inline or as a JSON string.
fn json_field(v: &Value, key: &str) -> Result<Value, String> {
    match v.get(key) {
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("`{key}` is not JSON: {e}"))
        }
        Some(other) => Ok(other.clone()),
        None => Err(format!("no `{key}`")),
    }
}

fn from_xlam(v: &Value) -> Result<Value, String> {
    let query = v
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
        .ok_or("no string `query`")?;
    let Value::Array(tools) = json_field(v, "tools")? else {
        return Err("`tools` is not a list".into());
    };
    if tools.is_empty() {
        return Err("`tools` is empty".into());
    }
    let tools = tools.iter().map(xlam_tool).collect::<Result<Vec<_>, _>>()?;
    let Value::Array(answers) = json_field(v, "answers")? else {
        return Err("`answers` is not a list".into());
    };
    let calls = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let name = a
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("answers[{i}] has no string `name`"))?;
            let args = a.get("arguments").cloned().unwrap_or_else(|| json!({}));
            if !args.is_object() {
                return Err(format!("answers[{i}].arguments is not an object"));
            }
            Ok(json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let answer = if calls.is_empty() {
        json!({"role": "assistant", "content": "None of the available functions can do that."})
    } else {
        json!({"role": "assistant", "tool_calls": calls})
    };
    Ok(json!({
        "tools": tools,
        "messages": [{"role": "user", "content": query}, answer],
    }))
}

fn xlam_tool(t: &Value) -> Result<Value, String> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a tool has no string `name`")?;
    let mut properties = Map::new();
    let mut required = Vec::new();
    let params = t.get("parameters").cloned().unwrap_or_else(|| json!({}));
    // Some converted copies already carry JSON Schema: keep it as it is.
    if params.get("type") == Some(&json!("object")) && params.get("properties").is_some() {
        return Ok(openai_tool(name, t.get("description"), params));
    }
    let Value::Object(params) = params else {
        return Err(format!("`{name}`: `parameters` is not an object"));
    };
    for (arg, spec) in &params {
        let ty = spec.get("type").and_then(Value::as_str).unwrap_or("str");
        let optional = ty.contains("optional") || spec.get("default").is_some();
        let mut schema = python_type(ty.split(", optional").next().unwrap_or(ty).trim());
        if let Some(d) = spec.get("description").and_then(Value::as_str) {
            schema["description"] = json!(d);
        }
        properties.insert(arg.clone(), schema);
        if !optional {
            required.push(arg.clone());
        }
    }
    Ok(openai_tool(
        name,
        t.get("description"),
        json!({"type": "object", "properties": properties, "required": required}),
    ))
}

/// A Python type annotation as xLAM writes it → JSON Schema.
fn python_type(t: &str) -> Value {
    let lower = t.to_ascii_lowercase();
    let inner = |s: &str| {
        s.find('[')
            .and_then(|i| s.rfind(']').map(|j| s[i + 1..j].to_string()))
    };
    match lower.split('[').next().unwrap_or("").trim() {
        "str" | "string" => json!({"type": "string"}),
        "int" | "integer" => json!({"type": "integer"}),
        "float" | "number" | "double" => json!({"type": "number"}),
        "bool" | "boolean" => json!({"type": "boolean"}),
        "list" | "tuple" | "set" | "array" => match inner(t) {
            // `Dict[str, int]` items and the like: only the first type names the items.
            Some(i) => {
                json!({"type": "array", "items": python_type(i.split(',').next().unwrap_or("").trim())})
            }
            None => json!({"type": "array"}),
        },
        "dict" | "object" | "mapping" => json!({"type": "object"}),
        // `Any`, `Union[...]`, unknown names: no constraint on the value.
        _ => json!({}),
    }
}

fn from_glaive(v: &Value) -> Result<Value, String> {
    let system = v
        .get("system")
        .and_then(Value::as_str)
        .ok_or("no string `system`")?;
    let chat = v
        .get("chat")
        .and_then(Value::as_str)
        .ok_or("no string `chat`")?;
    let tools = glaive_functions(system)?;
    if tools.is_empty() {
        return Err("the system text lists no functions".into());
    }
    let turns = glaive_turns(chat);
    let user = turns
        .iter()
        .find(|(who, _)| *who == "USER")
        .map(|(_, t)| t.clone())
        .ok_or("the chat has no USER turn")?;
    let reply = turns
        .iter()
        .skip_while(|(who, _)| *who != "USER")
        .find(|(who, _)| *who == "ASSISTANT")
        .map(|(_, t)| t.clone())
        .ok_or("the chat has no ASSISTANT turn after the user's")?;
    let answer = match reply.trim().strip_prefix("<functioncall>") {
        Some(call) => {
            let (name, args) = glaive_call(call.trim())?;
            json!({"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]})
        }
        None => json!({"role": "assistant", "content": reply.trim()}),
    };
    Ok(json!({
        "tools": tools,
        "messages": [{"role": "user", "content": user.trim()}, answer],
    }))
}

/// The JSON objects written one after another in the system text (after its first `{`).
fn glaive_functions(system: &str) -> Result<Vec<Value>, String> {
    let Some(start) = system.find('{') else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(&system[start..]).into_iter::<Value>();
    for f in stream {
        let f = f.map_err(|e| format!("a function in the system text is not JSON: {e}"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a function in the system text has no `name`")?;
        let params = f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        out.push(openai_tool(name, f.get("description"), params));
    }
    Ok(out)
}

/// `(speaker, text)` turns of a Glaive chat, `<|endoftext|>` removed.
fn glaive_turns(chat: &str) -> Vec<(&'static str, String)> {
    const SPEAKERS: [&str; 3] = ["USER:", "ASSISTANT:", "FUNCTION RESPONSE:"];
    let mut turns: Vec<(&'static str, String)> = Vec::new();
    let mut rest = chat;
    loop {
        let next = SPEAKERS
            .iter()
            .filter_map(|s| rest.find(s).map(|i| (i, *s)))
            .min_by_key(|(i, _)| *i);
        let Some((i, s)) = next else {
            if let Some(last) = turns.last_mut() {
                last.1.push_str(rest);
            }
            break;
        };
        if let Some(last) = turns.last_mut() {
            last.1.push_str(&rest[..i]);
        }
        turns.push((s.trim_end_matches(':'), String::new()));
        rest = &rest[i + s.len()..];
    }
    for t in &mut turns {
        t.1 = t.1.replace("<|endoftext|>", "").trim().to_string();
    }
    turns
}

/// `{"name": "f", "arguments": '{"a": 1}'}`: Glaive quotes the arguments' JSON in single
/// quotes, which is not JSON; plain JSON arguments are read too.
fn glaive_call(s: &str) -> Result<(String, Value), String> {
    if let Ok(v) = serde_json::from_str::<Value>(s) {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a call has no `name`")?;
        let args = match v.get("arguments") {
            Some(Value::String(a)) => {
                serde_json::from_str(a).map_err(|e| format!("arguments not JSON: {e}"))?
            }
            Some(a) => a.clone(),
            None => json!({}),
        };
        return Ok((name.to_string(), args));
    }
    let name_at = s.find("\"name\"").ok_or("a call has no \"name\"")?;
    let after = &s[name_at + 6..];
    let q1 = after.find('"').ok_or("a call's name is not a string")?;
    let q2 = after[q1 + 1..]
        .find('"')
        .ok_or("a call's name is not a string")?;
    let name = after[q1 + 1..q1 + 1 + q2].to_string();
    let args = match (s.find('\''), s.rfind('\'')) {
        (Some(a), Some(b)) if b > a => serde_json::from_str(&s[a + 1..b])
            .map_err(|e| format!("the arguments of `{name}` are not JSON: {e}"))?,
        _ => json!({}),
    };
    if !args.is_object() {
        return Err(format!("the arguments of `{name}` are not an object"));
    }
    Ok((name, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlam_lines_become_tool_records_with_json_schema() {
        let line = json!({
            "id": 1,
            "query": "Where can I find live giveaways for beta access and games?",
            "answers": "[{\"name\": \"live_giveaways_by_type\", \"arguments\": {\"type\": \"beta\"}}, {\"name\": \"live_giveaways_by_type\", \"arguments\": {\"type\": \"game\"}}]",
            "tools": "[{\"name\": \"live_giveaways_by_type\", \"description\": \"Retrieve live giveaways from the GamerPower API based on the specified type.\", \"parameters\": {\"type\": {\"description\": \"The type of giveaways to retrieve (e.g., game, loot, beta).\", \"type\": \"str\", \"default\": \"game\"}, \"ids\": {\"description\": \"Ids.\", \"type\": \"List[int]\"}, \"limit\": {\"type\": \"int, optional\"}}}]"
        });
        let text = format!(
            "{line}\nnot json\n{}\n",
            json!({"query": "x", "tools": "[]", "answers": "[]"})
        );
        let got = import_tool_records(&text, ToolFormat::Xlam);
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.skipped.len(), 2);
        assert_eq!(got.skipped[0].0, 2);
        assert!(got.skipped[1].1.contains("empty"), "{:?}", got.skipped);
        let r = &got.records[0];
        let params = &r["tools"][0]["function"]["parameters"];
        assert_eq!(params["properties"]["type"]["type"], "string");
        assert_eq!(
            params["properties"]["ids"],
            json!({"type": "array", "items": {"type": "integer"}, "description": "Ids."})
        );
        assert_eq!(params["properties"]["limit"]["type"], "integer");
        // `type` has a default and `limit` says optional: only `ids` is required.
        assert_eq!(params["required"], json!(["ids"]));
        let calls = r["messages"][1]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1]["function"]["arguments"], "{\"type\":\"game\"}");
        assert_eq!(r["messages"][0]["content"], line["query"]);
    }

    #[test]
    fn glaive_chats_give_their_first_exchange() {
        let system = "SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n{\n    \"name\": \"calculate_bmi\",\n    \"description\": \"Calculate BMI\",\n    \"parameters\": {\"type\": \"object\", \"properties\": {\"weight\": {\"type\": \"number\"}, \"height\": {\"type\": \"number\"}}, \"required\": [\"weight\", \"height\"]}\n}\n{\n    \"name\": \"get_time\",\n    \"parameters\": {}\n}";
        let call = json!({"system": system, "chat": "USER: My weight is 70 kg and height 1.75 m.\n\n\nASSISTANT: <functioncall> {\"name\": \"calculate_bmi\", \"arguments\": '{\"weight\": 70, \"height\": 1.75}'} <|endoftext|>\n\n\nFUNCTION RESPONSE: {\"bmi\": 22.86}\n\n\nASSISTANT: Your BMI is 22.86. <|endoftext|>"});
        let text = json!({"system": system, "chat": "USER: Order me a pizza.\n\n\nASSISTANT: Sorry, I can't order food. <|endoftext|>"});
        let input = format!(
            "{call}\n{text}\n{}\n",
            json!({"system": "SYSTEM: no tools", "chat": "USER: hi"})
        );
        let got = import_tool_records(&input, ToolFormat::Glaive);
        assert_eq!(got.records.len(), 2, "{:?}", got.skipped);
        assert_eq!(got.skipped.len(), 1);
        let r = &got.records[0];
        assert_eq!(r["tools"].as_array().unwrap().len(), 2);
        assert_eq!(
            r["messages"][0]["content"],
            "My weight is 70 kg and height 1.75 m."
        );
        let f = &r["messages"][1]["tool_calls"][0]["function"];
        assert_eq!(f["name"], "calculate_bmi");
        let args: Value = serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"weight": 70, "height": 1.75}));
        assert_eq!(
            got.records[1]["messages"][1]["content"],
            "Sorry, I can't order food."
        );
    }
}
