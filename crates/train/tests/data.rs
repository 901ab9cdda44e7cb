//! Data loading: formats, masks, bad inputs reported with file:line, overlong handling, schema.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use smolt_task::{to_json_text, AnswerSchema, ByteEncoder, Format, JsonStyle, Overlong, Task};
use smolt_train::dataset::{load_dataset, load_for_task};
use smolt_train::TextEncoder;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn cfg() -> Task {
    Task {
        template: "Q: {input}\nA:".into(),
        ..Task::default()
    }
}

fn load_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.jsonl", text);
    let err = load_dataset(&p, &cfg(), &ByteEncoder, None).unwrap_err();
    format!("{err:#}")
}

#[test]
fn input_output_gives_template_prompt_and_masked_answer() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "t.jsonl",
        "{\"input\": \"hi\", \"output\": {\"a\": 1, \"b\": [2, 3]}}\n\n",
    );
    let ds = load_dataset(&p, &cfg(), &ByteEncoder, None).unwrap();
    assert_eq!(ds.format, Format::InputOutput);
    let ex = &ds.examples[0];
    let prompt = ByteEncoder.encode("Q: hi\nA:", true);
    let mut answer = ByteEncoder.encode("{\"a\":1,\"b\":[2,3]}", false);
    answer.push(ByteEncoder.eos_id());
    assert_eq!(ex.ids, [prompt.clone(), answer.clone()].concat());
    assert!(ex.loss_mask[..prompt.len()].iter().all(|&m| !m));
    assert!(ex.loss_mask[prompt.len()..].iter().all(|&m| m));
    assert_eq!(ex.n_targets(), answer.len());
    assert_eq!(ex.source.to_string(), format!("{}:1", p.display()));
}

#[test]
fn json_styles() {
    let v = json!({"shop": "Coop", "items": [1, {"x": null}]});
    assert_eq!(
        to_json_text(&v, JsonStyle::Compact),
        r#"{"shop":"Coop","items":[1,{"x":null}]}"#
    );
    assert_eq!(
        to_json_text(&v, JsonStyle::Python),
        r#"{"shop": "Coop", "items": [1, {"x": null}]}"#
    );
}

#[test]
fn prompt_completion_and_messages_formats() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pc.jsonl",
        "{\"prompt\": \"P\", \"completion\": \"C\"}\n",
    );
    let ds = load_dataset(&p, &cfg(), &ByteEncoder, None).unwrap();
    assert_eq!(ds.format, Format::PromptCompletion);
    assert_eq!(
        ds.examples[0].ids,
        vec![1, b'P' as u32 + 3, b'C' as u32 + 3, 2]
    );

    let line = json!({"messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"}
    ]});
    let p = write(dir.path(), "m.jsonl", &format!("{line}\n"));
    let ds = load_dataset(&p, &cfg(), &ByteEncoder, None).unwrap();
    assert_eq!(ds.format, Format::Messages);
    let ex = &ds.examples[0];
    let prompt = ByteEncoder.encode(
        "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n",
        true,
    );
    assert_eq!(&ex.ids[..prompt.len()], &prompt[..]);
    // The answer ends with the turn marker (id 0 in the byte encoder), then EOS.
    assert_eq!(&ex.ids[prompt.len()..], &[b'A' as u32 + 3, 0, 2]);
}

#[test]
fn bad_inputs_name_file_and_line() {
    let e = load_err("");
    assert!(e.contains("bad.jsonl:1") && e.contains("empty"), "{e}");

    let e = load_err("{\"input\": \"a\", \"output\": \"b\"}\nnot json\n");
    assert!(e.contains("bad.jsonl:2: not valid JSON"), "{e}");

    let e = load_err("{\"input\": \"a\", \"output\": \"b\"}\n{\"input\": \"a\"}\n");
    assert!(e.contains("bad.jsonl:2: missing field \"output\""), "{e}");

    let e = load_err("{\"input\": 5, \"output\": \"b\"}\n");
    assert!(
        e.contains("bad.jsonl:1: field \"input\" must be a string, found a number"),
        "{e}"
    );

    let e = load_err("[1, 2]\n");
    assert!(e.contains("bad.jsonl:1: expected a JSON object"), "{e}");

    let e = load_err("{\"text\": \"a\"}\n");
    assert!(e.contains("cannot tell the record format"), "{e}");

    let e = load_err("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n");
    assert!(e.contains("no assistant message"), "{e}");

    // All problems are reported at once, with a count.
    let e = load_err("{\"input\": \"a\", \"output\": \"b\"}\nx\ny\n{\"input\": 1}\n");
    assert!(e.contains("3 problems"), "{e}");
    assert!(
        e.contains(":2:") && e.contains(":3:") && e.contains(":4:"),
        "{e}"
    );
}

#[test]
fn overlong_examples_are_truncated_or_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(200);
    let text = format!(
        "{}\n{}\n{}\n",
        json!({"prompt": "short", "completion": "ok"}),
        json!({"prompt": format!("HEAD{long}TAIL"), "completion": "ok"}),
        json!({"prompt": "p", "completion": long}),
    );
    let p = write(dir.path(), "o.jsonl", &text);
    let mut c = Task {
        max_len: 64,
        ..cfg()
    };
    let ds = load_dataset(&p, &c, &ByteEncoder, None).unwrap();
    assert_eq!(ds.examples.len(), 2);
    assert_eq!((ds.stats.truncated, ds.stats.skipped), (1, 1));
    let ex = &ds.examples[1];
    assert_eq!(ex.len(), 64);
    // The start and the end of the prompt survive; the answer is intact.
    let ids = &ex.ids;
    assert_eq!(ids[0], 1);
    assert_eq!(&ids[1..4], &ByteEncoder.encode("HEA", false)[..]);
    let tail = ByteEncoder.encode("TAILok", false);
    assert_eq!(&ids[ids.len() - 7..ids.len() - 1], &tail[..]);
    assert_eq!(ex.n_targets(), 3);
    assert!(ds.describe(64).contains("1 truncated, 1 skipped"));

    c.overlong = Overlong::Skip;
    let ds = load_dataset(&p, &c, &ByteEncoder, None).unwrap();
    assert_eq!(ds.examples.len(), 1);
    assert_eq!((ds.stats.truncated, ds.stats.skipped), (0, 2));

    c.max_len = 8;
    let err = load_dataset(&p, &c, &ByteEncoder, None).unwrap_err();
    assert!(err.to_string().contains("all 3 examples"), "{err}");
}

#[test]
fn schema_violations_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let schema = json!({
        "type": "object",
        "properties": {"total": {"type": "number"}, "shop": {"type": "string"}},
        "required": ["total", "shop"]
    });
    let schema = AnswerSchema::from_value(Path::new("schema.json"), &schema).unwrap();
    let text = format!(
        "{}\n{}\n{}\n{}\n",
        json!({"input": "a", "output": {"total": 1.5, "shop": "Coop"}}),
        json!({"input": "b", "output": {"total": "1.5", "shop": "Coop"}}),
        json!({"input": "c", "output": {"total": 2}}),
        json!({"input": "d", "output": "not json at all"}),
    );
    let p = write(dir.path(), "s.jsonl", &text);
    let err = load_dataset(&p, &cfg(), &ByteEncoder, Some(&schema)).unwrap_err();
    let e = format!("{err:#}");
    assert!(
        e.contains("s.jsonl:2: answer violates the schema at /total"),
        "{e}"
    );
    assert!(
        e.contains("s.jsonl:3: answer violates the schema at /"),
        "{e}"
    );
    assert!(e.contains("\"shop\""), "{e}");
    assert!(e.contains("s.jsonl:4: answer is not JSON"), "{e}");
    assert!(!e.contains("s.jsonl:1:"), "{e}");

    // A string output holding JSON is validated as JSON.
    let p = write(
        dir.path(),
        "ok.jsonl",
        &format!(
            "{}\n",
            json!({"input": "a", "output": "{\"total\": 3, \"shop\": \"X\"}"})
        ),
    );
    load_dataset(&p, &cfg(), &ByteEncoder, Some(&schema)).unwrap();
}

#[test]
fn load_for_task_reads_train_valid_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let line = json!({"input": "a", "output": {"total": 1}});
    let t = write(dir.path(), "t.jsonl", &format!("{line}\n{line}\n"));
    let v = write(dir.path(), "v.jsonl", &format!("{line}\n"));
    let s = write(
        dir.path(),
        "s.json",
        r#"{"type": "object", "required": ["total"]}"#,
    );
    let c = Task {
        data: t,
        valid: Some(v),
        schema: Some(s.clone()),
        ..cfg()
    };
    let (train, valid) = load_for_task(&c, &ByteEncoder).unwrap();
    assert_eq!(
        (train.examples.len(), valid.unwrap().examples.len()),
        (2, 1)
    );

    fs::write(&s, r#"{"type": "object", "required": ["shop"]}"#).unwrap();
    let err = load_for_task(&c, &ByteEncoder).unwrap_err();
    assert!(
        format!("{err:#}").contains("t.jsonl:1: answer violates"),
        "{err:#}"
    );

    let err = load_for_task(&Task::default(), &ByteEncoder).unwrap_err();
    assert!(err.to_string().contains("--data"), "{err}");
}
