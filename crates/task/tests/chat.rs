//! Chat rendering: the built-in Gemma 3 format against Gemma 3's official chat template, other
//! templates rendered as Hugging Face renders them, clear errors, and a GGUF's
//! `tokenizer.chat_template` picked up end to end when data is read.

use std::path::{Path, PathBuf};

use serde_json::json;
use smolt_gguf::{Gguf, GgufWriter, Value, ValueType};
use smolt_task::chat::{
    parse_messages, render_gemma, ChatError, ChatFormat, ChatTemplate, ChatTemplateSetting,
    Message, ModelTemplate, Role,
};
use smolt_task::{read_jsonl, ByteEncoder, Task, TextEncoder, TextExample};
use smolt_tokenizer::Tokenizer;

/// The `chat_template` of google/gemma-3-270m-it (and the other Gemma 3 instruction models).
const GEMMA3: &str = include_str!("fixtures/gemma3_chat_template.jinja");

/// A ChatML template written the way Hugging Face templates often are: block tags on lines
/// of their own (gone under `trim_blocks` + `lstrip_blocks`), Python's `.strip()`.
const CHATML: &str = "\
{% for message in messages %}
    {% if message['role'] == 'system' and not loop.first %}
        {{ raise_exception('The system message must come first.') }}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'].strip() }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
";

fn m(role: Role, content: &str) -> Message {
    Message::new(role, content)
}

fn gemma3() -> ChatTemplate {
    ChatTemplate::new("gemma3", GEMMA3, "<bos>", "<eos>").unwrap()
}

fn conversations() -> Vec<Vec<Message>> {
    use Role::*;
    vec![
        vec![m(User, "Hi")],
        vec![m(User, "Hi"), m(Assistant, "Hello!")],
        vec![m(System, "Be brief."), m(User, "Hi")],
        vec![
            m(System, "Answer in JSON."),
            m(User, "Total of: 2 x 3.50"),
            m(Assistant, "{\"total\": 7.0}"),
        ],
        vec![
            m(User, "one"),
            m(Assistant, "1"),
            m(User, "two"),
            m(Assistant, "2"),
            m(User, "three"),
        ],
        // Contents are trimmed, the system prompt is not; inner newlines stay.
        vec![
            m(System, " keep my spaces "),
            m(User, "  padded\n\n"),
            m(Assistant, "\n{\"a\":\n 1}  \t"),
        ],
        vec![m(
            User,
            "\u{3000}wide space, émoji 🧾, <b>html</b> & 'quotes'\u{3000}",
        )],
        // Only a system message: nothing to show, as in the official template.
        vec![m(System, "S")],
        // A system message after the first turn is rendered as a "system" turn there.
        vec![m(User, "u"), m(System, "s")],
    ]
}

#[test]
fn the_builtin_gemma_format_is_gemma3s_official_template() {
    let t = gemma3();
    for conv in conversations() {
        for agp in [false, true] {
            let official = t.render(&conv, agp).unwrap();
            let builtin = render_gemma(&conv, agp).unwrap();
            assert_eq!(builtin, official, "{conv:?}, add_generation_prompt = {agp}");
        }
    }
    // Spelled out once, so that a change to both would still be caught.
    let conv = &conversations()[3];
    assert_eq!(
        render_gemma(conv, false).unwrap(),
        "<bos><start_of_turn>user\nAnswer in JSON.\n\nTotal of: 2 x 3.50<end_of_turn>\n\
         <start_of_turn>model\n{\"total\": 7.0}<end_of_turn>\n"
    );
    assert_eq!(
        render_gemma(&conv[..2], true).unwrap(),
        "<bos><start_of_turn>user\nAnswer in JSON.\n\nTotal of: 2 x 3.50<end_of_turn>\n\
         <start_of_turn>model\n"
    );
}

#[test]
fn both_gemma_formats_refuse_the_same_conversations() {
    use Role::*;
    let t = gemma3();
    for conv in [
        vec![m(User, "a"), m(User, "b")],
        vec![m(Assistant, "a")],
        vec![m(System, "s"), m(Assistant, "a")],
        vec![m(User, "a"), m(Assistant, "b"), m(Assistant, "c")],
    ] {
        let official = t.render(&conv, true).unwrap_err();
        let builtin = render_gemma(&conv, true).unwrap_err();
        for e in [&official, &builtin] {
            assert!(matches!(e, ChatError::Refused { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .ends_with("refuses this conversation: Conversation roles must alternate user/assistant/user/assistant/..."),
                "{e}"
            );
        }
    }
}

#[test]
fn prompts_and_examples_agree_between_the_official_template_and_the_builtin() {
    let model = ModelTemplate {
        source: GEMMA3.into(),
        bos_token: "<bos>".into(),
        eos_token: "<eos>".into(),
    };
    let official = ChatFormat::resolve(ChatTemplateSetting::Auto, Some(&model)).unwrap();
    assert!(matches!(official, ChatFormat::Template(_)));
    let builtin = ChatFormat::resolve(ChatTemplateSetting::Gemma, Some(&model)).unwrap();
    assert!(matches!(builtin, ChatFormat::Gemma));
    for conv in conversations() {
        let p = official.prompt(&conv).unwrap();
        assert_eq!(p, builtin.prompt(&conv).unwrap());
        // The encoder adds BOS: the text must not carry it too.
        assert!(!p.starts_with("<bos>"), "{p}");
        if conv.last().unwrap().role == Role::Assistant {
            let (prompt, answer) = official.example(&conv).unwrap();
            assert_eq!(
                (prompt.clone(), answer.clone()),
                builtin.example(&conv).unwrap()
            );
            assert!(prompt.ends_with("<start_of_turn>model\n"), "{prompt}");
            assert!(!prompt.starts_with("<bos>"), "{prompt}");
            let content = conv.last().unwrap().content.trim();
            assert_eq!(answer, format!("{content}<end_of_turn>"));
        }
    }
}

#[test]
fn another_template_renders_as_hugging_face_renders_it() {
    let t = ChatTemplate::new("chatml", CHATML, "", "<|endoftext|>").unwrap();
    let conv = [
        m(Role::System, "Be brief."),
        m(Role::User, "  Hi "),
        m(Role::Assistant, "Hello!"),
    ];
    assert_eq!(
        t.render(&conv, false).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello!<|im_end|>\n"
    );
    assert_eq!(
        t.render(&conv[..2], true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let chat = ChatFormat::Template(Box::new(t));
    let (prompt, answer) = chat.example(&conv).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert_eq!(answer, "Hello!<|im_end|>");
}

#[test]
fn templates_get_loop_controls_python_methods_and_the_special_tokens() {
    let src = "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}\
               {% if loop.index > 3 %}{% break %}{% endif %}\
               [{{ m.role.upper() }}|{{ m.content.split(',') | join('+') }}|{{ m.content.startswith('a') }}]\
               {% endfor %}{{ eos_token }}";
    let t = ChatTemplate::new("t", src, "<s>", "</s>").unwrap();
    let conv = [
        m(Role::System, "x"),
        m(Role::User, "a,b"),
        m(Role::Assistant, "c"),
        m(Role::User, "d"),
        m(Role::Assistant, "never shown"),
    ];
    // loop.index counts the skipped system message: the 4th message breaks the loop. Booleans
    // print as Python prints them.
    assert_eq!(
        t.render(&conv, false).unwrap(),
        "<s>[USER|a+b|True][ASSISTANT|c|False]</s>"
    );
}

#[test]
fn an_answer_closed_by_the_eos_text_leaves_it_to_the_eos_id() {
    // Llama 2 style: the assistant's turn ends with the EOS token's text.
    let src = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]\
               {% else %} {{ m.content }} {{ eos_token }}{% endif %}{% endfor %}";
    let model = ModelTemplate {
        source: src.into(),
        bos_token: "<s>".into(),
        eos_token: "</s>".into(),
    };
    let chat = ChatFormat::resolve(ChatTemplateSetting::Gguf, Some(&model)).unwrap();
    let (prompt, answer) = chat
        .example(&[m(Role::User, "Hi"), m(Role::Assistant, "Hello")])
        .unwrap();
    assert_eq!(prompt, "[INST] Hi [/INST]");
    assert_eq!(answer, " Hello ");
}

#[test]
fn template_errors_are_clear_and_never_panics() {
    // Syntax: named, with the line.
    let e = ChatTemplate::new(
        "tokenizer.chat_template",
        "{% for m in messages %}\n{{ m.content }\n{% endfor %}",
        "",
        "",
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ChatError::Compile { .. }), "{e:?}");
    assert!(
        s.starts_with("the chat template (tokenizer.chat_template) does not compile: syntax error"),
        "{s}"
    );
    assert!(s.contains("tokenizer.chat_template:2"), "{s}");
    let e = ChatTemplate::new("t", "{% if x %}never closed", "", "").unwrap_err();
    assert!(e.to_string().contains("does not compile"), "{e}");

    // raise_exception: the template's own message.
    let t = ChatTemplate::new(
        "t",
        "{% if messages | length > 1 %}{{ raise_exception('Only one message, please.') }}{% endif %}ok",
        "",
        "",
    )
    .unwrap();
    assert_eq!(t.render(&[m(Role::User, "a")], true).unwrap(), "ok");
    let e = t
        .render(&[m(Role::User, "a"), m(Role::User, "b")], true)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the chat template (t) refuses this conversation: Only one message, please."
    );

    // Anything else the template gets wrong at render time.
    let t = ChatTemplate::new("t", "{{ strftime_now('%Y') }}", "", "").unwrap();
    let e = t.render(&[m(Role::User, "a")], true).unwrap_err();
    assert!(matches!(e, ChatError::Render { .. }), "{e:?}");
    assert!(e.to_string().contains("strftime_now"), "{e}");
    let t = ChatTemplate::new("t", "{{ messages[0].content + 1 }}", "", "").unwrap();
    let e = t.render(&[m(Role::User, "a")], true).unwrap_err();
    assert!(
        e.to_string().starts_with("the chat template (t) failed"),
        "{e}"
    );

    // A template whose prompt is not the start of the whole conversation cannot train.
    let model = ModelTemplate {
        source: "{% if add_generation_prompt %}GO{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
            .into(),
        bos_token: String::new(),
        eos_token: String::new(),
    };
    let chat = ChatFormat::resolve(ChatTemplateSetting::Auto, Some(&model)).unwrap();
    let e = chat
        .example(&[m(Role::User, "a"), m(Role::Assistant, "b")])
        .unwrap_err();
    assert!(e.to_string().contains("cannot be told apart"), "{e}");

    // "gguf" with a model that has no template.
    let e = ChatFormat::resolve(ChatTemplateSetting::Gguf, None).unwrap_err();
    assert!(e.to_string().contains("no tokenizer.chat_template"), "{e}");
}

#[test]
fn messages_are_parsed_with_their_errors_located() {
    let v = json!([{"role": "model", "content": "x"}, {"role": "user", "content": "y"}]);
    assert_eq!(
        parse_messages(&v).unwrap(),
        vec![m(Role::Assistant, "x"), m(Role::User, "y")]
    );
    let err = |v: serde_json::Value| parse_messages(&v).unwrap_err();
    assert_eq!(
        err(json!({"role": "user"})),
        "field \"messages\" must be an array, found an object"
    );
    assert_eq!(err(json!(["x"])), "messages[0] must be an object");
    assert_eq!(
        err(json!([{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}])),
        "messages[1]: unknown role \"wizard\" (expected system, user, assistant or tool)"
    );
    // Function calling: calls instead of content, results with the call they answer.
    let calls = parse_messages(&json!([
        {"role": "assistant", "tool_calls": [{"type": "function",
            "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "2"}
    ]))
    .unwrap();
    assert_eq!(calls[0].content, "");
    assert_eq!(
        calls[0].tool_calls[0]["function"]["arguments"],
        json!({"x": 1})
    );
    assert_eq!(
        calls[1],
        Message::tool_result("2", Some("c1".into()), Some("f".into()))
    );
    assert!(err(json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]))
        .contains("must be a JSON object"));
    assert_eq!(
        err(json!([{"role": "user"}])),
        "messages[0]: missing field \"content\""
    );
    assert_eq!(
        err(json!([{"role": "user", "content": 3}])),
        "messages[0]: field \"content\" must be a string, found a number"
    );
}

// ---- end to end: a GGUF's tokenizer.chat_template through the data pipeline ----

const BOS: u32 = 2;
const EOS: u32 = 1;

/// A GGUF holding only a tokenizer: specials, ChatML's markers as control tokens, the space
/// piece and the 256 byte tokens (so any text encodes and decodes back), plus `chat_template` if given.
fn tokenizer_gguf(chat_template: Option<&str>) -> Gguf {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<|im_start|>",
        "<|im_end|>",
        "\u{2581}",
    ]
    .map(String::from)
    .to_vec();
    let mut types = vec![3, 3, 3, 2, 3, 3, 1];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut w = GgufWriter::new();
    w.set("tokenizer.ggml.model", Value::String("llama".into()));
    w.set(
        "tokenizer.ggml.scores",
        Value::Array(
            ValueType::F32,
            tokens.iter().map(|_| Value::F32(0.0)).collect(),
        ),
    );
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
    );
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            tokens.into_iter().map(Value::String).collect(),
        ),
    );
    w.set("tokenizer.ggml.bos_token_id", Value::U32(BOS));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(EOS));
    w.set("tokenizer.ggml.unknown_token_id", Value::U32(3));
    w.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    if let Some(t) = chat_template {
        w.set(Gguf::CHAT_TEMPLATE_KEY, Value::String(t.into()));
    }
    Gguf::from_bytes(w.to_bytes()).unwrap()
}

fn chat_file(dir: &Path) -> PathBuf {
    let p = dir.join("chat.jsonl");
    let line = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "{\"a\": 1}"}
    ]});
    std::fs::write(&p, format!("{line}\n")).unwrap();
    p
}

fn config(setting: ChatTemplateSetting) -> Task {
    Task {
        chat_template: setting,
        ..Task::default()
    }
}

fn first_example(enc: &dyn TextEncoder, task: &Task, data: &Path) -> TextExample {
    let (_, mut examples) = read_jsonl(data, task, enc).unwrap();
    examples.remove(0)
}

/// The ids a model is taught with, as training puts them together: the prompt with BOS, the
/// answer, EOS. The answer starts at the returned index.
fn example_ids(enc: &dyn TextEncoder, ex: &TextExample) -> (Vec<u32>, usize) {
    let mut ids = enc.encode(&ex.prompt, true);
    let n_prompt = ids.len();
    ids.extend(enc.encode(&ex.answer, false));
    ids.push(enc.eos_id());
    (ids, n_prompt)
}

/// The example's text, and its answer (the positions the loss is on).
fn texts(tok: &Tokenizer, task: &Task, data: &Path) -> (String, String) {
    let (ids, first) = example_ids(tok, &first_example(tok, task, data));
    (tok.decode(&ids, false), tok.decode(&ids[first..], false))
}

#[test]
fn a_ggufs_chat_template_is_used_for_chat_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = chat_file(dir.path());
    // The template prints the BOS text itself; the encoder adds the BOS id too.
    let src = format!("{{{{ bos_token }}}}{CHATML}");
    let tok = Tokenizer::from_gguf(&tokenizer_gguf(Some(&src))).unwrap();
    assert_eq!(tok.chat_template(), Some(src.as_str()));
    assert_eq!(
        tok.model_chat_template().unwrap(),
        ModelTemplate {
            source: src.clone(),
            bos_token: "<bos>".into(),
            eos_token: "<eos>".into()
        }
    );

    for setting in [ChatTemplateSetting::Auto, ChatTemplateSetting::Gguf] {
        let cfg = config(setting);
        let (ids, _) = example_ids(&tok, &first_example(&tok, &cfg, &data));
        // One BOS, not two, then ChatML's control token.
        assert_eq!(&ids[..2], &[BOS, 4], "{setting:?}");
        assert_eq!(*ids.last().unwrap(), EOS);
        assert_eq!(
            texts(&tok, &cfg, &data),
            (
                "<bos><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                 <|im_start|>assistant\n{\"a\": 1}<|im_end|><eos>"
                    .to_string(),
                "{\"a\": 1}<|im_end|><eos>".to_string()
            ),
            "{setting:?}"
        );
    }

    // "gemma" ignores the model's template.
    let (text, answer) = texts(&tok, &config(ChatTemplateSetting::Gemma), &data);
    assert_eq!(
        text,
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n\
         {\"a\": 1}<end_of_turn><eos>"
    );
    assert_eq!(answer, "{\"a\": 1}<end_of_turn><eos>");
}

#[test]
fn without_a_template_in_the_gguf_auto_is_gemma_and_gguf_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = chat_file(dir.path());
    let tok = Tokenizer::from_gguf(&tokenizer_gguf(None)).unwrap();
    assert_eq!(tok.chat_template(), None);
    let (text, _) = texts(&tok, &config(ChatTemplateSetting::Auto), &data);
    assert!(
        text.starts_with("<bos><start_of_turn>user\nBe brief."),
        "{text}"
    );
    let err = read_jsonl(&data, &config(ChatTemplateSetting::Gguf), &tok).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("chat.jsonl:1: chat_template = \"gguf\", but the model has no chat template"),
        "{err}"
    );
    // Data that is not chat never needs a template.
    let p = dir.path().join("io.jsonl");
    std::fs::write(&p, "{\"input\": \"x\", \"output\": \"y\"}\n").unwrap();
    read_jsonl(&p, &config(ChatTemplateSetting::Gguf), &tok).unwrap();
}

/// An encoder with a chat template, as a GGUF would give it.
struct WithTemplate(ModelTemplate);

impl TextEncoder for WithTemplate {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        ByteEncoder.encode(text, add_bos)
    }
    fn eos_id(&self) -> u32 {
        ByteEncoder.eos_id()
    }
    fn model_chat_template(&self) -> Option<ModelTemplate> {
        Some(self.0.clone())
    }
}

#[test]
fn template_errors_in_chat_data_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    let ok = json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]});
    let twice = json!({"messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}
    ]});
    std::fs::write(&p, format!("{ok}\n{twice}\n")).unwrap();
    let enc = WithTemplate(ModelTemplate {
        source: GEMMA3.into(),
        bos_token: "<bos>".into(),
        eos_token: "<eos>".into(),
    });
    let err = read_jsonl(&p, &Task::default(), &enc).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(
            "bad.jsonl:2: the chat template (tokenizer.chat_template) refuses this \
             conversation: Conversation roles must alternate"
        ),
        "{err}"
    );
    // A template that does not compile is reported once, at the first chat record.
    let enc = WithTemplate(ModelTemplate {
        source: "{% for %}".into(),
        bos_token: String::new(),
        eos_token: String::new(),
    });
    let err = read_jsonl(&p, &Task::default(), &enc).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("bad.jsonl:1: the chat template (tokenizer.chat_template) does not compile"),
        "{err}"
    );
    assert!(!err.contains("problems"), "{err}");
}

#[test]
fn tool_files_render_with_their_tools_and_report_bad_lines_with_their_number() {
    let dir = tempfile::tempdir().unwrap();
    let tools = json!([{"type": "function", "function": {"name": "set_light", "parameters": {
        "type": "object", "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
        "required": ["room", "on"]}}}]);
    let call = |args: serde_json::Value| {
        json!({"tools": tools, "messages": [
            {"role": "user", "content": "Kitchen lights off"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "set_light", "arguments": args.to_string()}}]}]})
    };
    let good = [
        call(json!({"room": "kitchen", "on": false})).to_string(),
        json!({"tools": tools, "messages": [{"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! What should I switch?"}]})
        .to_string(),
    ];
    let p = dir.path().join("tools.jsonl");
    std::fs::write(&p, good.join("\n") + "\n").unwrap();
    let task = Task::default();
    let (format, examples) = read_jsonl(&p, &task, &ByteEncoder).unwrap();
    assert_eq!(format, smolt_task::Format::Tools);
    assert_eq!(
        examples[0].answer,
        "[{\"name\":\"set_light\",\"arguments\":{\"room\":\"kitchen\",\"on\":false}}]<end_of_turn>"
    );
    assert!(examples[0].prompt.contains("\"name\":\"set_light\""));
    assert!(examples[0]
        .prompt
        .ends_with("Kitchen lights off<end_of_turn>\n<start_of_turn>model\n"));
    assert_eq!(
        examples[1].answer,
        "Hello! What should I switch?<end_of_turn>"
    );
    assert!(examples.iter().all(|e| e.tools.is_some()));

    let bad = [
        good[0].clone(),
        call(json!({"room": "kitchen", "on": "no"})).to_string(),
        json!({"messages": [{"role": "user", "content": "x"}]}).to_string(),
    ];
    std::fs::write(&p, bad.join("\n") + "\n").unwrap();
    let e = read_jsonl(&p, &task, &ByteEncoder).unwrap_err();
    let lines: Vec<usize> = e.errors.iter().map(|e| e.at.line).collect();
    assert_eq!(lines, [2, 3], "{e}");
    assert!(e.errors[0].message.contains("/on"), "{e}");
    assert!(
        e.errors[1].message.contains("missing field \"tools\""),
        "{e}"
    );
}
