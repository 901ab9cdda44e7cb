//! Conversations with tools → prompt text, for every chat format: the one place a tool list,
//! a call and a call's result become prompt text, so that serving and (later) training agree.
//!
//! A chat template that reads `tools` (Qwen 2.5's) renders them itself, as Hugging Face's
//! `apply_chat_template(messages, tools=...)` does: the tool list as OpenAI's
//! `{"type": "function", "function": {...}}` objects, an assistant's calls as
//! `message.tool_calls`, results as `tool` messages; its calls are written in `<tool_call>`
//! blocks ([`CallSyntax::hermes`]).
//!
//! Any other format (Gemma 3 has no tool support in its template) gets the plain rendering
//! [`plain_messages`], with calls in the bare JSON syntax ([`CallSyntax::Json`]):
//!
//! - the [`instruction`] (the tool list and the call format) is added to the system message,
//!   or is the system message when the conversation has none;
//! - an assistant message with calls is its text (if any), a newline, and the calls written as
//!   the model is asked to write them (`{"name": ..., "arguments": {...}}`, a JSON array of
//!   them when parallel calls are allowed or there are several);
//! - consecutive tool results become one user turn, each result as
//!   `Result of <name>:\n<content>` (`<name>` is the function, else the call id, else
//!   `the call`), results separated by a blank line.

use serde_json::{Map, Value};
use smolt_constrain::{CallSyntax, JsonLayout, ToolCall, ToolCallSpec, ToolOutput};

use crate::chat::{parse_messages, ChatError, ChatFormat, Message, Role};

/// The system instruction listing `spec`'s tools for formats without tool support: each tool
/// as OpenAI's JSON object on a line of its own, then how to write a call in the bare JSON
/// syntax (a list when `spec` allows parallel calls).
pub fn instruction(spec: &ToolCallSpec) -> String {
    let mut s =
        String::from("You can call the following functions. Each is described by a JSON object:\n");
    for t in spec.tools().tools() {
        s.push_str(&t.to_openai().to_string());
        s.push('\n');
    }
    let call = r#"{"name": "<function name>", "arguments": {<the arguments, as the function's parameters describe them>}}"#;
    if spec.parallel() {
        s.push_str(&format!(
            "\nTo call functions, answer with only a JSON array of calls, each written as \
             {call}, and nothing else."
        ));
    } else {
        s.push_str(&format!(
            "\nTo call a function, answer with only {call}, and nothing else."
        ));
    }
    s.push_str(" To answer without calling a function, answer in plain text.");
    s
}

/// `messages` for a format without tool support: system, user and assistant messages only,
/// with `spec`'s [`instruction`] in the system message (see the module's documentation).
pub fn plain_messages(messages: &[Message], spec: Option<&ToolCallSpec>) -> Vec<Message> {
    let parallel = spec.is_none_or(ToolCallSpec::parallel);
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    let mut results: Vec<String> = Vec::new();
    let flush = |results: &mut Vec<String>, out: &mut Vec<Message>| {
        if !results.is_empty() {
            out.push(Message::new(Role::User, results.join("\n\n")));
            results.clear();
        }
    };
    for m in messages {
        if m.role == Role::Tool {
            let who = m
                .name
                .as_deref()
                .or(m.tool_call_id.as_deref())
                .unwrap_or("the call");
            results.push(format!("Result of {who}:\n{}", m.content));
            continue;
        }
        flush(&mut results, &mut out);
        if m.tool_calls.is_empty() {
            out.push(Message::new(m.role, m.content.clone()));
            continue;
        }
        let calls: Vec<ToolCall> = m
            .tool_calls
            .iter()
            .filter_map(|c| ToolCall::from_openai(c).ok())
            .collect();
        let order = |name: &str| {
            spec.and_then(|s| s.tools().get(name))
                .and_then(|t| t.parameters.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        let text = CallSyntax::Json.render(
            &calls,
            parallel || calls.len() > 1,
            &JsonLayout::default(),
            &order,
        );
        let content = if m.content.trim().is_empty() {
            text
        } else {
            format!("{}\n{text}", m.content)
        };
        out.push(Message::new(Role::Assistant, content));
    }
    flush(&mut results, &mut out);
    if let Some(spec) = spec.filter(|s| !s.tools().is_empty()) {
        let text = instruction(spec);
        match out.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{text}", first.content);
            }
            _ => out.insert(0, Message::new(Role::System, text)),
        }
    }
    out
}

impl ChatFormat {
    /// How the model writes tool calls: in `<tool_call>` blocks when its template does
    /// (Qwen 2.5), else as bare JSON (the format [`crate::tools::instruction`] describes).
    pub fn call_syntax(&self) -> CallSyntax {
        match self {
            ChatFormat::Template(t) if t.writes_tool_call_blocks() => CallSyntax::hermes(),
            _ => CallSyntax::Json,
        }
    }

    /// [`ChatFormat::prompt`] for a conversation that may use tools: a template that reads
    /// `tools` gets them (and the messages' calls and results) as Hugging Face passes them;
    /// any other format gets the plain rendering of [`crate::tools`] (the tool list as a
    /// system instruction, calls and results as text).
    pub fn prompt_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&ToolCallSpec>,
    ) -> Result<String, ChatError> {
        let uses_tools = tools.is_some()
            || messages
                .iter()
                .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty());
        if !uses_tools {
            return self.prompt(messages);
        }
        let text = self.render_tools(messages, tools, true)?;
        Ok(self.without_bos(&text).to_string())
    }

    /// The full text of a conversation that may use tools, BOS text included: through the
    /// template where it reads `tools`, else the plain rendering.
    fn render_tools(
        &self,
        messages: &[Message],
        tools: Option<&ToolCallSpec>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        match self {
            ChatFormat::Template(t) if t.takes_tools() => {
                let list: Option<Vec<Value>> =
                    tools.map(|s| s.tools().tools().iter().map(|t| t.to_openai()).collect());
                t.render_with_tools(messages, list.as_deref(), add_generation_prompt)
            }
            _ => self.render(&plain_messages(messages, tools), add_generation_prompt),
        }
    }

    /// `spec` in the call syntax this format's model writes ([`ChatFormat::call_syntax`]):
    /// the spec to compile, to parse answers with and to render training answers with.
    pub fn tool_spec(&self, spec: &ToolCallSpec) -> ToolCallSpec {
        spec.clone()
            .with_syntax(self.call_syntax())
            .expect("the built-in call syntaxes have a non-empty prefix")
    }

    /// A training example from a tool record: the prompt ([`ChatFormat::prompt_with_tools`]
    /// of the context) and the answer text, which is the calls exactly as the constraint of
    /// [`ChatFormat::tool_spec`] under `layout` has the model write them (or the text
    /// answer), then the format's end-of-turn marker. The answer is read back with the spec
    /// and must give the record's answer again: an answer that decoding could not produce
    /// (a text answer that starts like a call, say) is refused.
    pub fn tool_example(
        &self,
        record: &ToolRecord,
        layout: &JsonLayout,
    ) -> Result<(String, String), ChatError> {
        let Some(answer) = &record.answer else {
            return Err(ChatError::Conversation(
                "the record has no assistant answer to learn from".into(),
            ));
        };
        let spec = self.tool_spec(&record.spec);
        let body = answer.text(&spec, layout);
        let read_back = spec.parse(&body).map_err(|e| {
            ChatError::Conversation(format!("the answer cannot be read back as written: {e}"))
        })?;
        let same = match (answer, &read_back) {
            (ToolAnswer::Calls(a), ToolOutput::Calls(b)) => a == b,
            (ToolAnswer::Text(_), ToolOutput::Text(_)) => true,
            _ => false,
        };
        if !same {
            return Err(ChatError::Conversation(format!(
                "the text answer starts like a call ({:?}); with tools, a text answer must not \
                 start with {:?}, or decoding would read it as a call",
                body.chars().take(20).collect::<String>(),
                spec.syntax().opener(spec.parallel()).trim()
            )));
        }
        let mut messages = record.context.clone();
        messages.push(Message::new(Role::Assistant, body));
        self.example_by(&messages, |m, agp| self.render_tools(m, Some(&spec), agp))
    }
}

/// What the assistant answers in a tool record.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolAnswer {
    /// One or more calls (more than one needs parallel calls).
    Calls(Vec<ToolCall>),
    /// A plain text answer: no tool fits.
    Text(String),
}

impl ToolAnswer {
    /// The answer as the model writes it under `spec` (in the model's call syntax) and
    /// `layout`, without the end-of-turn marker.
    pub fn text(&self, spec: &ToolCallSpec, layout: &JsonLayout) -> String {
        match self {
            ToolAnswer::Calls(calls) => spec.render(calls, layout),
            ToolAnswer::Text(text) => text.clone(),
        }
    }
}

/// A function-calling record, OpenAI's chat format with its request fields:
/// `{"tools": [...], "messages": [...], "tool_choice"?, "parallel_tool_calls"?}`. The last
/// message of a data record is the assistant's answer: `tool_calls` (calls to the listed
/// tools) or `content` (a text answer, where no tool fits).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRecord {
    /// The tools, the choice and whether parallel calls are allowed, in the bare JSON call
    /// syntax; [`ChatFormat::tool_spec`] puts it in a model's syntax.
    pub spec: ToolCallSpec,
    /// The conversation before the answer.
    pub context: Vec<Message>,
    /// The answer (`None` for a prompt, which ends where the answer would start).
    pub answer: Option<ToolAnswer>,
}

impl ToolRecord {
    /// Reads and checks a record. `parallel` is the default of `parallel_tool_calls` (the
    /// task's). With `with_answer` the last message must be the assistant's answer, and its
    /// calls must name listed tools, be allowed by `tool_choice` and `parallel_tool_calls`,
    /// and have arguments that satisfy the tool's `parameters` (checked with a JSON Schema
    /// validator; keys the schema does not define are refused as decoding refuses them).
    pub fn from_json(
        obj: &Map<String, Value>,
        parallel: bool,
        with_answer: bool,
    ) -> Result<ToolRecord, String> {
        let tools = obj
            .get("tools")
            .ok_or_else(|| "missing field \"tools\"".to_string())?;
        let parallel_field = match obj.get("parallel_tool_calls") {
            None | Some(Value::Null) => Value::Bool(parallel),
            Some(v) => v.clone(),
        };
        let spec =
            ToolCallSpec::from_openai(Some(tools), obj.get("tool_choice"), Some(&parallel_field))
                .map_err(|e| e.to_string())?;
        let messages = match obj.get("messages") {
            Some(v) => parse_messages(v)?,
            None => return Err("missing field \"messages\"".into()),
        };
        if !with_answer {
            if messages.is_empty() {
                return Err("no messages".into());
            }
            return Ok(ToolRecord {
                spec,
                context: messages,
                answer: None,
            });
        }
        let Some((last, context)) = messages.split_last() else {
            return Err("no messages".into());
        };
        if last.role != Role::Assistant {
            return Err("the last message must be the assistant's answer (tool_calls, or content where no tool fits)".into());
        }
        let answer = if last.tool_calls.is_empty() {
            if last.content.trim().is_empty() {
                return Err("the assistant's answer has neither tool_calls nor content".into());
            }
            if !spec.allows_text() {
                return Err(format!(
                    "the assistant answers in text, but tool_choice {} requires a call",
                    describe_choice(&spec)
                ));
            }
            ToolAnswer::Text(last.content.clone())
        } else {
            if !last.content.trim().is_empty() {
                return Err("the assistant's answer has both content and tool_calls; a tool answer is calls only".into());
            }
            let calls: Vec<ToolCall> = last
                .tool_calls
                .iter()
                .map(|c| ToolCall::from_openai(c).expect("parse_messages checked the calls"))
                .collect();
            check_calls(&spec, &calls)?;
            ToolAnswer::Calls(calls)
        };
        Ok(ToolRecord {
            spec,
            context: context.to_vec(),
            answer: Some(answer),
        })
    }

    /// The last user message, for reports.
    pub fn request(&self) -> &str {
        self.context
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str())
    }
}

fn describe_choice(spec: &ToolCallSpec) -> String {
    match spec.choice() {
        smolt_constrain::ToolChoice::Function(name) => format!("(the function {name:?})"),
        smolt_constrain::ToolChoice::Required => "\"required\"".into(),
        smolt_constrain::ToolChoice::Auto => "\"auto\"".into(),
        smolt_constrain::ToolChoice::None => "\"none\"".into(),
    }
}

/// The checks of [`ToolRecord::from_json`] on an answer's calls.
fn check_calls(spec: &ToolCallSpec, calls: &[ToolCall]) -> Result<(), String> {
    if !spec.allows_calls() {
        return Err(format!(
            "the assistant calls tools, but tool_choice {} allows none",
            describe_choice(spec)
        ));
    }
    if calls.len() > 1 && !spec.parallel() {
        return Err(format!(
            "{} calls in one answer, but parallel_tool_calls is false",
            calls.len()
        ));
    }
    let callable: Vec<&str> = spec.callable().iter().map(|t| t.name.as_str()).collect();
    for (j, call) in calls.iter().enumerate() {
        let Some(tool) = spec.tools().get(&call.name) else {
            return Err(format!(
                "tool_calls[{j}] calls {:?}, which is not in \"tools\" (they are: {})",
                call.name,
                spec.tools().names().join(", ")
            ));
        };
        if !callable.contains(&call.name.as_str()) {
            return Err(format!(
                "tool_calls[{j}] calls {:?}, but tool_choice {} does not allow it",
                call.name,
                describe_choice(spec)
            ));
        }
        let schema = &tool.parameters;
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            format!(
                "the parameters of {:?} are not a valid JSON Schema: {e}",
                tool.name
            )
        })?;
        if let Some(e) = validator.iter_errors(&call.arguments).next() {
            let at = e.instance_path.to_string();
            return Err(format!(
                "tool_calls[{j}] ({}): the arguments violate the tool's parameters at {}: {e}",
                call.name,
                if at.is_empty() { "/" } else { &at }
            ));
        }
        if let Some(k) = undefined_key(schema, &call.arguments) {
            return Err(format!(
                "tool_calls[{j}] ({}): {k:?} is not among the tool's parameters (decoding \
                 never writes a key the schema does not define)",
                call.name
            ));
        }
    }
    Ok(())
}

/// A key of `v` (recursively through objects) that `schema` does not define where it does
/// not allow others, as the constraint closes such objects.
fn undefined_key(schema: &Value, v: &Value) -> Option<String> {
    let (Value::Object(o), Some(props)) = (v, schema.get("properties").and_then(Value::as_object))
    else {
        return None;
    };
    let open = matches!(
        schema.get("additionalProperties"),
        Some(Value::Bool(true)) | Some(Value::Object(_))
    );
    for (k, item) in o {
        match props.get(k) {
            Some(s) => {
                if let Some(inner) = undefined_key(s, item) {
                    return Some(format!("{k}.{inner}"));
                }
            }
            None if !open => return Some(k.clone()),
            None => {}
        }
    }
    None
}

/// Whether a data line is a tool record (it carries a tool list).
pub fn is_tool_record(obj: &Map<String, Value>) -> bool {
    obj.contains_key("tools")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::{parse_calls, ChatTemplate};

    fn spec(parallel: bool) -> ToolCallSpec {
        let tools = json!([{"type": "function", "function": {"name": "get_time",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        ToolCallSpec::from_openai(Some(&tools), None, Some(&json!(parallel))).unwrap()
    }

    fn conversation() -> Vec<Message> {
        let calls = parse_calls(&json!([{"id": "c1", "type": "function",
            "function": {"name": "get_time", "arguments": "{\"city\": \"Oslo\"}"}}]))
        .unwrap();
        vec![
            Message::new(Role::User, "Time in Oslo and Rome?"),
            Message::calls("", calls),
            Message::tool_result("09:00", Some("c1".into()), Some("get_time".into())),
            Message::tool_result("09:01", Some("c2".into()), None),
        ]
    }

    #[test]
    fn the_gemma_format_gets_the_tools_calls_and_results_as_text() {
        let prompt = ChatFormat::Gemma
            .prompt_with_tools(&conversation(), Some(&spec(true)))
            .unwrap();
        let expected = format!(
            "<start_of_turn>user\n{}\n\nTime in Oslo and Rome?<end_of_turn>\n\
             <start_of_turn>model\n[{{\"name\": \"get_time\", \"arguments\": {{\"city\": \"Oslo\"}}}}]<end_of_turn>\n\
             <start_of_turn>user\nResult of get_time:\n09:00\n\nResult of c2:\n09:01<end_of_turn>\n\
             <start_of_turn>model\n",
            instruction(&spec(true))
        );
        assert_eq!(prompt, expected);
        assert!(instruction(&spec(false)).contains("answer with only {\"name\""));
        assert!(instruction(&spec(true)).contains("JSON array of calls"));
        assert_eq!(ChatFormat::Gemma.call_syntax(), CallSyntax::Json);
    }

    #[test]
    fn a_template_that_reads_tools_gets_them_and_the_calls() {
        let source = "{% if tools %}{% for t in tools %}{{ t.function.name }};{% endfor %}{% endif %}\
            {% for m in messages %}[{{ m.role }}]{{ m.content }}\
            {% for c in m.tool_calls %}<tool_call>{{ c.function.arguments | tojson }}</tool_call>{% endfor %}\
            {% if m.tool_call_id is defined %}({{ m.tool_call_id }}){% endif %}{% endfor %}";
        let t = ChatTemplate::new("t", source, "", "").unwrap();
        assert!(t.takes_tools());
        let format = ChatFormat::Template(Box::new(t));
        assert_eq!(format.call_syntax(), CallSyntax::hermes());
        let prompt = format
            .prompt_with_tools(&conversation(), Some(&spec(true)))
            .unwrap();
        assert_eq!(
            prompt,
            "get_time;[user]Time in Oslo and Rome?[assistant]<tool_call>{\"city\":\"Oslo\"}</tool_call>\
             [tool]09:00(c1)[tool]09:01(c2)"
        );
        let plain = ChatTemplate::new(
            "p",
            "{% for m in messages %}{{ m.content }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert!(!plain.takes_tools());
    }

    fn record(line: Value) -> Result<ToolRecord, String> {
        ToolRecord::from_json(line.as_object().unwrap(), true, true)
    }

    fn weather_tools() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "enum": ["c", "f"]},
                           "days": {"type": "integer", "minimum": 1}},
            "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}])
    }

    fn call_line(args: Value) -> Value {
        json!({"tools": weather_tools(), "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "tool_calls": [{"type": "function", "function":
                {"name": "get_weather", "arguments": args.to_string()}}]}]})
    }

    #[test]
    fn a_tool_record_trains_on_the_calls_as_decoding_writes_them() {
        let r = record(call_line(json!({"unit": "c", "city": "Oslo"}))).unwrap();
        assert_eq!(r.request(), "Weather in Oslo?");
        let (prompt, answer) = ChatFormat::Gemma
            .tool_example(&r, &crate::JsonStyle::Compact.layout())
            .unwrap();
        assert_eq!(
            prompt,
            ChatFormat::Gemma
                .prompt_with_tools(&r.context, Some(&r.spec))
                .unwrap()
        );
        // Arguments in the schema's order, a list because parallel calls are allowed.
        assert_eq!(
            answer,
            "[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\",\"unit\":\"c\"}}]<end_of_turn>"
        );
        let spec = ChatFormat::Gemma.tool_spec(&r.spec);
        let body = answer.strip_suffix("<end_of_turn>").unwrap();
        assert!(matches!(spec.parse(body), Ok(ToolOutput::Calls(c)) if c.len() == 1));

        // One call at most: the bare object.
        let mut line = call_line(json!({"city": "Oslo"}));
        line["parallel_tool_calls"] = json!(false);
        let r = record(line).unwrap();
        let (_, answer) = ChatFormat::Gemma
            .tool_example(&r, &JsonLayout::default())
            .unwrap();
        assert_eq!(
            answer,
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}<end_of_turn>"
        );

        // A template that knows tools: its own call blocks, its own end of turn.
        let source = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
            {% if tools %}{% endif %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{% if false %}<tool_call>{% endif %}";
        let t = ChatTemplate::new("t", source, "", "<|endoftext|>").unwrap();
        let format = ChatFormat::Template(Box::new(t));
        let (prompt, answer) = format
            .tool_example(&r, &crate::JsonStyle::Compact.layout())
            .unwrap();
        assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
        assert_eq!(
            answer,
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call><|im_end|>"
        );
    }

    #[test]
    fn a_text_answer_is_learnt_where_no_tool_fits_unless_it_looks_like_a_call() {
        let line = |text: &str| {
            json!({"tools": weather_tools(), "messages": [
                {"role": "user", "content": "Tell me a joke"},
                {"role": "assistant", "content": text}]})
        };
        let r = record(line("I cannot help with that.")).unwrap();
        assert_eq!(
            r.answer,
            Some(ToolAnswer::Text("I cannot help with that.".into()))
        );
        let (_, answer) = ChatFormat::Gemma
            .tool_example(&r, &crate::JsonStyle::Compact.layout())
            .unwrap();
        assert_eq!(answer, "I cannot help with that.<end_of_turn>");
        let r = record(line("[not a call]")).unwrap();
        let e = ChatFormat::Gemma
            .tool_example(&r, &crate::JsonStyle::Compact.layout())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("starts like a call") || e.contains("read back"),
            "{e}"
        );
    }

    #[test]
    fn bad_tool_records_say_what_is_wrong() {
        let err = |line: Value| record(line).unwrap_err();
        let e = err(call_line(json!({"city": 3})));
        assert!(
            e.contains("tool_calls[0] (get_weather)") && e.contains("/city"),
            "{e}"
        );
        let e = err(call_line(json!({"unit": "c"})));
        assert!(e.contains("city"), "{e}");
        let e = err(call_line(json!({"city": "Oslo", "zip": "0150"})));
        assert!(
            e.contains("\"zip\" is not among the tool's parameters"),
            "{e}"
        );
        let e = err(call_line(json!({"city": "Oslo", "unit": "k"})));
        assert!(e.contains("/unit"), "{e}");
        let mut line = call_line(json!({"city": "Oslo"}));
        line["messages"][1]["tool_calls"][0]["function"]["name"] = json!("get_news");
        let e = err(line);
        assert!(
            e.contains("\"get_news\", which is not in \"tools\" (they are: get_weather, get_time)"),
            "{e}"
        );
        let mut line = call_line(json!({"city": "Oslo"}));
        let c = line["messages"][1]["tool_calls"][0].clone();
        line["messages"][1]["tool_calls"] = json!([c.clone(), c]);
        line["parallel_tool_calls"] = json!(false);
        assert!(err(line).contains("2 calls in one answer, but parallel_tool_calls is false"));
        let mut line = call_line(json!({"city": "Oslo"}));
        line["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
        assert!(err(line).contains("does not allow it"));
        let mut line = call_line(json!({"city": "Oslo"}));
        line["tool_choice"] = json!("none");
        assert!(err(line).contains("allows none"));
        let line = json!({"tools": weather_tools(), "tool_choice": "required", "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]});
        assert!(err(line).contains("requires a call"));
        let line =
            json!({"tools": weather_tools(), "messages": [{"role": "user", "content": "hi"}]});
        assert!(err(line).contains("last message must be the assistant's answer"));
        let line = json!({"tools": [{"type": "function", "function": {"name": "bad name"}}],
            "messages": []});
        assert!(err(line).contains("tools[0]"));
        let line = json!({"tools": weather_tools()});
        assert!(err(line).contains("missing field \"messages\""));
    }
}
