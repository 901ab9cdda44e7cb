//! Tool lists and choices that must be refused, and parsing calls back, without a tokenizer.

use serde_json::{json, Value};

use super::*;
use crate::JsonLayout;

fn tool(name: &str, parameters: Value) -> Value {
    json!({"type": "function", "function": {"name": name, "parameters": parameters}})
}

fn weather() -> Value {
    tool(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

fn refused(tools: Value) -> ToolError {
    let e = ToolSet::from_openai(&tools).expect_err("should be refused");
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn bad_tool_lists_are_refused_with_the_reason() {
    let obj = json!({"type": "object"});
    assert!(matches!(
        refused(json!({"a": 1})),
        ToolError::NotAList { .. }
    ));
    let e = refused(json!([weather(), weather()]));
    assert_eq!(
        e,
        ToolError::DuplicateName {
            index: 1,
            first: 0,
            name: "get_weather".into()
        }
    );
    for bad in ["get weather", "wetter/now", "é", ""] {
        let e = refused(json!([tool(bad, obj.clone())]));
        assert!(matches!(e, ToolError::BadName { .. }), "{bad:?}: {e}");
    }
    let e = refused(json!([tool(&"x".repeat(65), obj.clone())]));
    assert!(e.to_string().contains("longer than 64"), "{e}");
    // Every allowed character is allowed.
    ToolSet::from_openai(&json!([tool("a-Z_0.9", obj.clone())])).unwrap();
    let e = refused(json!([tool("f", json!({"type": "string"}))]));
    assert!(
        matches!(&e, ToolError::BadParameters { pointer, .. } if pointer == "/type"),
        "{e}"
    );
    let e = refused(json!([tool("f", json!([1]))]));
    assert!(matches!(e, ToolError::BadParameters { .. }), "{e}");
    let e = refused(json!([tool(
        "f",
        json!({"type": "object", "properties": {"n": {"type": "numbr"}}})
    )]));
    assert!(
        matches!(&e, ToolError::BadParameters { pointer, .. } if pointer == "/properties/n/type"),
        "{e}"
    );
    let e = refused(json!([tool(
        "f",
        json!({"type": "object", "properties": {}, "required": ["x"]})
    )]));
    assert!(e.to_string().contains("`x` is not in `properties`"), "{e}");
    let e = refused(json!([{"type": "retrieval"}]));
    assert!(matches!(e, ToolError::Malformed { index: 0, .. }), "{e}");
    let e = refused(json!([{"type": "function", "function": {"name": "f", "paramters": {}}}]));
    assert!(e.to_string().contains("paramters"), "{e}");
    assert_eq!(e.param(), "tools");
}

#[test]
fn a_function_without_parameters_takes_an_empty_object() {
    let set =
        ToolSet::from_openai(&json!([{"type": "function", "function": {"name": "now"}}])).unwrap();
    assert_eq!(set.tools()[0].parameters["type"], "object");
}

#[test]
fn tool_choice_follows_openai() {
    let set = ToolSet::from_openai(&json!([weather()])).unwrap();
    let spec = |c: Value| ToolCallSpec::from_openai(Some(&json!([weather()])), Some(&c), None);
    assert_eq!(spec(json!("auto")).unwrap().choice(), &ToolChoice::Auto);
    assert_eq!(spec(json!("none")).unwrap().choice(), &ToolChoice::None);
    assert_eq!(
        spec(json!("required")).unwrap().choice(),
        &ToolChoice::Required
    );
    let named = spec(json!({"type": "function", "function": {"name": "get_weather"}})).unwrap();
    assert_eq!(named.choice(), &ToolChoice::Function("get_weather".into()));
    assert!(named.parallel(), "OpenAI's default");
    let e = spec(json!({"type": "function", "function": {"name": "get_time"}})).unwrap_err();
    assert!(matches!(e, ToolError::UnknownChoice { .. }) && e.param() == "tool_choice");
    assert!(e.to_string().contains("get_weather"), "{e}");
    assert!(matches!(
        spec(json!("always")),
        Err(ToolError::BadChoice(_))
    ));
    assert!(matches!(spec(json!(1)), Err(ToolError::BadChoice(_))));
    assert_eq!(
        ToolCallSpec::new(ToolSet::default(), ToolChoice::Required),
        Err(ToolError::RequiredWithoutTools)
    );
    // No tools: no choice means none, and only text is allowed.
    let none = ToolCallSpec::from_openai(None, None, None).unwrap();
    assert!(none.allows_text() && !none.allows_calls());
    let auto = ToolCallSpec::new(set.clone(), ToolChoice::Auto).unwrap();
    assert!(auto.allows_text() && auto.allows_calls());
    let required = ToolCallSpec::new(set, ToolChoice::Required).unwrap();
    assert!(!required.allows_text() && required.allows_calls());
    let e = ToolCallSpec::from_openai(Some(&json!([weather()])), None, Some(&json!("yes")));
    assert!(matches!(e, Err(ToolError::BadParallel { .. })));
    let e = ToolCallSpec::from_openai(None, None, None)
        .unwrap()
        .with_syntax(CallSyntax::Wrapped {
            prefix: " \n".into(),
            suffix: String::new(),
            separator: String::new(),
        });
    assert_eq!(e, Err(ToolError::EmptyPrefix));
}

fn spec(parallel: bool, syntax: CallSyntax) -> ToolCallSpec {
    let set = ToolSet::from_openai(&json!([weather()])).unwrap();
    ToolCallSpec::new(set, ToolChoice::Auto)
        .unwrap()
        .with_parallel(parallel)
        .with_syntax(syntax)
        .unwrap()
}

#[test]
fn calls_parse_back_in_every_syntax() {
    let call = |city: &str| ToolCall::new("get_weather", json!({"city": city}));
    let two = vec![call("Paris"), call("Oslo")];
    for (parallel, syntax) in [
        (false, CallSyntax::Json),
        (true, CallSyntax::Json),
        (false, CallSyntax::hermes()),
        (true, CallSyntax::hermes()),
    ] {
        let s = spec(parallel, syntax.clone());
        let calls = if parallel {
            two.clone()
        } else {
            vec![call("Paris")]
        };
        let text = s.render(&calls, &JsonLayout::default());
        assert_eq!(s.parse(&text), Ok(ToolOutput::Calls(calls)), "{text}");
        // Whitespace around the calls is not a reason to misread them.
        assert!(matches!(
            s.parse(&format!("\n {text} \n")),
            Ok(ToolOutput::Calls(_))
        ));
        assert_eq!(
            s.parse("It is sunny."),
            Ok(ToolOutput::Text("It is sunny.".into()))
        );
    }
    assert_eq!(
        spec(true, CallSyntax::hermes()).render(&two, &JsonLayout::default()),
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\
         <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"
    );
}

#[test]
fn malformed_calls_say_where() {
    let s = spec(false, CallSyntax::Json);
    for (bad, why) in [
        ("{\"name\": \"f\"", "not valid JSON"),
        ("{\"name\": \"f\"}", "no `arguments`"),
        ("{\"name\": 3, \"arguments\": {}}", "string `name`"),
        (
            "{\"name\": \"f\", \"arguments\": [1]}",
            "must be a JSON object",
        ),
        (
            "{\"name\": \"f\", \"arguments\": {}, \"id\": 1}",
            "unknown key `id`",
        ),
        (
            "{\"name\": \"f\", \"arguments\": {}} and more",
            "unexpected text",
        ),
        (
            "[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"f\", \"arguments\": {}}]",
            "parallel",
        ),
    ] {
        let e = s.parse(bad).expect_err(bad);
        assert!(e.message.contains(why), "{bad}: {e}");
    }
    let h = spec(true, CallSyntax::hermes());
    let e = h
        .parse("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n")
        .unwrap_err();
    assert!(e.message.contains("</tool_call>"), "{e}");
    // Where only calls are allowed, text is an error, not an answer.
    let set = ToolSet::from_openai(&json!([weather()])).unwrap();
    let required = ToolCallSpec::new(set, ToolChoice::Required).unwrap();
    assert!(required.parse("sunny").is_err());
}

#[test]
fn openai_calls_convert_both_ways() {
    let c = ToolCall::new("get_weather", json!({"city": "Paris"}));
    let v = c.to_openai("call_1");
    assert_eq!(v["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(ToolCall::from_openai(&v), Ok(c.clone()));
    assert_eq!(
        ToolCall::from_openai(&json!({"name": "get_weather", "arguments": {"city": "Paris"}})),
        Ok(c)
    );
    assert!(ToolCall::from_openai(&json!({"name": "f", "arguments": "[1]"})).is_err());
}
