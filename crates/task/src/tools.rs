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

use serde_json::Value;
use smolt_constrain::{CallSyntax, JsonLayout, ToolCall, ToolCallSpec};

use crate::chat::{ChatError, ChatFormat, Message, Role};

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
        let text = match self {
            ChatFormat::Template(t) if t.takes_tools() => {
                let list: Option<Vec<Value>> =
                    tools.map(|s| s.tools().tools().iter().map(|t| t.to_openai()).collect());
                t.render_with_tools(messages, list.as_deref(), true)?
            }
            _ => self.render(&plain_messages(messages, tools), true)?,
        };
        Ok(self.without_bos(&text).to_string())
    }
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
}
