//! The `smolt` binary end to end: what a user types, what they see.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn smolt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smolt"))
        .args(args)
        .env("SMOLT_THREADS", "2")
        .output()
        .expect("run smolt")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn real_model() -> PathBuf {
    smolt_hub::model_for_tests().unwrap_or_else(|e| panic!("the CLI tests need Gemma 3 270M: {e}"))
}

fn fixture(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn tiny_model_file(dir: &Path) -> PathBuf {
    let s = smolt_model::testing::TinySpec::default();
    let w =
        smolt_model::testing::tiny_writer(&s, &smolt_model::testing::tiny_tensors(&s, 3), "gemma3");
    let path = dir.join("tiny.gguf");
    w.write(&path).unwrap();
    path
}

#[test]
fn help_teaches_every_command() {
    let o = smolt(&["--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for cmd in [
        "demo", "init", "generate", "tokenize", "inspect", "fetch", "train", "eval", "data",
        "bench", "serve", "export", "tune",
    ] {
        assert!(text.contains(cmd), "--help should list `{cmd}`:\n{text}");
    }
    let o = smolt(&["generate", "--help"]);
    assert!(stdout(&o).contains("Examples:"), "{}", stdout(&o));
    let o = smolt(&["serve", "--help"]);
    for needle in [
        "Examples:",
        "POST /v1/chat/completions",
        "curl",
        "--adapter <NAME=DIR>",
    ] {
        assert!(
            stdout(&o).contains(needle),
            "serve --help lacks {needle}:\n{}",
            stdout(&o)
        );
    }
}

#[test]
fn inspect_shows_metadata_and_tensors_of_any_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model_file(dir.path());
    let o = smolt(&["inspect", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "gemma3.embedding_length",
        "blk.0.attn_q.weight",
        "token_embd.weight",
        "Q5_0",
    ] {
        assert!(
            text.contains(needle),
            "inspect output lacks {needle}:\n{text}"
        );
    }
    assert!(
        text.contains("chat template: none (no tokenizer.chat_template)"),
        "{text}"
    );
    // A model with a chat template says so, with its size and first line.
    let s = smolt_model::testing::TinySpec::default();
    let mut w =
        smolt_model::testing::tiny_writer(&s, &smolt_model::testing::tiny_tensors(&s, 3), "gemma3");
    w.set(
        smolt::gguf::Gguf::CHAT_TEMPLATE_KEY,
        smolt::gguf::Value::String(
            "{{ bos_token }}\n{%- for m in messages -%}{{ m.content }}{%- endfor -%}".into(),
        ),
    );
    let chat = dir.path().join("chat.gguf");
    w.write(&chat).unwrap();
    let o = smolt(&["inspect", chat.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "chat template: 70 chars, 2 lines, from tokenizer.chat_template: {{ bos_token }}\n"
        ),
        "{text}"
    );
}

#[test]
fn bad_files_give_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(tiny_model_file(dir.path())).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "magic.gguf",
            b"GGML\x03\x00\x00\x00".to_vec(),
            "not a GGUF file",
        ),
        ("empty.gguf", Vec::new(), "truncated"),
        (
            "half.gguf",
            good[..good.len() / 2].to_vec(),
            "truncated download?",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for args in [
            vec!["inspect", path.to_str().unwrap()],
            vec!["generate", "--model", path.to_str().unwrap(), "hi"],
        ] {
            let o = smolt(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains(needle),
                "{args:?} should say {needle:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        }
    }
    let o = smolt(&["inspect", "/nonexistent/model.gguf"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/model.gguf"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tokenize_ids_equal_llama_cpp() {
    let model = real_model();
    let fx = fixture("tokenizer/tests/fixtures/tokenizer_gemma3.json");
    let cases = fx["cases"].as_array().unwrap();
    // Every tenth case through the binary (the library test covers all of them).
    for case in cases.iter().step_by(10) {
        let text = case["text"].as_str().unwrap();
        for (flag, key) in [(None, "with_bos"), (Some("--no-bos"), "no_bos")] {
            let mut args = vec!["tokenize", "--ids", "--model", model.to_str().unwrap()];
            args.extend(flag);
            args.push("--");
            args.push(text);
            let o = smolt(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            let got: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
            assert_eq!(got, case[key], "{key} ids of {text:?}");
        }
    }
}

#[test]
fn greedy_f32_generation_reproduces_the_reference() {
    let model = real_model();
    let fx = fixture("model/tests/fixtures/greedy_gemma3.json");
    let prompt = &fx["prompts"]["a"];
    let steps = prompt["hf_f32"]["steps"].as_array().unwrap();
    // Up to the first near-tie (margin < 0.02), the reference ids are the only right answer.
    let n = steps
        .iter()
        .position(|s| s[2].as_f64().unwrap() < 0.02)
        .unwrap_or(steps.len())
        .min(12);
    let want: Vec<u64> = steps[..n].iter().map(|s| s[0].as_u64().unwrap()).collect();
    let o = smolt(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--precision",
        "f32",
        "--temperature",
        "0",
        "--ids",
        "--ignore-eos",
        "-n",
        &n.to_string(),
        prompt["text"].as_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<u64> = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(got, want);

    // The text form of the default (fast) precision is a readable continuation.
    let o = smolt(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "-n",
        "8",
        prompt["text"].as_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().len() > 8, "{}", stdout(&o));
}

#[test]
fn schema_constrained_generation_is_valid_or_reported_truncated() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("receipt.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{
            "company":{"type":"string","maxLength":40},
            "total":{"type":"string","pattern":"^[0-9]{1,5}\\.[0-9]{2}$"}},
           "required":["company","total"],"additionalProperties":false}"#,
    )
    .unwrap();
    let prompt = "Receipt:\nACME HARDWARE\nHAMMER 12.50\nTOTAL 12.50\n\nJSON:";
    let m = model.to_str().unwrap();
    let s = schema.to_str().unwrap();
    let o = smolt(&["generate", "--model", m, "--schema", s, "-n", "80", prompt]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("output is JSON");
    let total = v["total"].as_str().unwrap();
    assert!(total.contains('.') && total.len() >= 4, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");

    // The same prompt from a file gives the same answer.
    let pf = dir.path().join("prompt.txt");
    std::fs::write(&pf, prompt).unwrap();
    let p = pf.to_str().unwrap();
    let o2 = smolt(&[
        "generate", "--model", m, "--schema", s, "-n", "80", "--file", p,
    ]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(stdout(&o2), stdout(&o));

    // Too few tokens to close the object: an error, never a silently invalid answer.
    let o = smolt(&["generate", "--model", m, "--schema", s, "-n", "3", prompt]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("NOT valid"), "{}", stderr(&o));

    // A schema llguidance cannot satisfy is refused before any generation.
    std::fs::write(&schema, r#"{"type":"integer","minimum":10,"maximum":5}"#).unwrap();
    let o = smolt(&["generate", "--model", m, "--schema", s, prompt]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("minimum"), "{}", stderr(&o));
}

#[test]
fn demo_runs_the_whole_pipeline_and_reuses_a_finished_run() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let args = [
        "demo",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--train",
        "6",
        "--test",
        "2",
        "--few-shot",
        "1",
        "--fields",
        "retailer,timestamp",
    ];
    let o = smolt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for stage in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(err.contains(stage), "missing {stage}: {err}");
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("demo.json")).unwrap()).unwrap();
    assert_eq!(
        summary["fields"],
        serde_json::json!(["retailer", "timestamp"])
    );
    for k in [
        "few_shot_mean_field_accuracy",
        "fine_tuned_mean_field_accuracy",
    ] {
        let v = summary[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    assert!(summary["fine_tuned_fields"]["timestamp"].is_number());
    for f in [
        "compare.html",
        "few-shot/report.html",
        "fine-tuned/eval.json",
        "train/adapter_model.safetensors",
        "train/loss.png",
        "data/test.jsonl",
        "data/schema.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The test set is the later period, and the schema holds only the chosen fields.
    let test = std::fs::read_to_string(out.join("data/test.jsonl")).unwrap();
    assert_eq!(test.lines().count(), 2);
    for line in test.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let ts = r["output"]["timestamp"].as_str().unwrap();
        assert!(ts.starts_with("2020-"), "{line}");
    }
    let train = std::fs::read_to_string(out.join("data/train.jsonl")).unwrap();
    for line in train.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let year: u32 = r["output"]["timestamp"].as_str().unwrap()[..4]
            .parse()
            .unwrap();
        assert!(
            year < 2020,
            "a training receipt from the test period: {line}"
        );
    }
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data/schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        schema["required"],
        serde_json::json!(["retailer", "timestamp"])
    );
    assert!(stdout(&o).contains("mean field accuracy"), "{}", stdout(&o));

    // A second run reuses the finished training instead of training again.
    let o = smolt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reusing the finished run"),
        "{}",
        stderr(&o)
    );

    // Other settings (here a third epoch) train again instead of reusing that run.
    let mut more = args.to_vec();
    more.extend(["--epochs", "3"]);
    let o = smolt(&more);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("with other settings or data: training again"),
        "{}",
        stderr(&o)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["epochs"], 3.0);
    for f in ["few-shot/predictions.jsonl", "fine-tuned/predictions.jsonl"] {
        assert_eq!(
            std::fs::read_to_string(out.join(f))
                .unwrap()
                .lines()
                .count(),
            2,
            "{f}"
        );
    }

    // The two evaluations compare from the command line too.
    let o = smolt(&[
        "eval",
        "--compare",
        out.join("few-shot").to_str().unwrap(),
        out.join("fine-tuned/eval.json").to_str().unwrap(),
        "--out",
        dir.path().join("cmp").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("retailer"), "{}", stdout(&o));
    assert!(dir.path().join("cmp/compare.html").is_file());
}

#[test]
fn tool_demo_trains_and_compares_on_a_tool_list() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tools-demo");
    // A team's own two tools, one with a nested object and an enum.
    let tools = dir.path().join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "book_room", "description": "Book a meeting room",
             "parameters": {"type": "object", "properties": {
               "room": {"type": "string", "enum": ["oak", "pine", "birch"]},
               "hours": {"type": "integer", "minimum": 1, "maximum": 8},
               "extras": {"type": "object", "properties": {"projector": {"type": "boolean"}}}},
             "required": ["room", "hours"]}}},
            {"type": "function", "function": {"name": "order_lunch", "description": "Order lunch for the team",
             "parameters": {"type": "object", "properties": {
               "dish": {"type": "string", "enum": ["soup", "salad", "pasta"]},
               "people": {"type": "integer", "minimum": 1, "maximum": 30}},
             "required": ["dish", "people"]}}}]"#,
    )
    .unwrap();
    let args = [
        "demo",
        "--task",
        "tools",
        "--tools",
        tools.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--train",
        "4",
        "--test",
        "3",
        "--few-shot",
        "1",
    ];
    let o = smolt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for stage in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(err.contains(stage), "missing {stage}: {err}");
    }
    assert!(err.contains("book_room, order_lunch"), "{err}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("demo.json")).unwrap()).unwrap();
    assert_eq!(summary["task"], "tools");
    assert_eq!(summary["test_requests"], 3);
    for k in ["few_shot_accuracy", "fine_tuned_accuracy"] {
        let v = summary[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    // Calls are decoded under the tools' constraint: every answer is well formed.
    assert_eq!(summary["fine_tuned_well_formed"], 1.0, "{summary}");
    for f in [
        "compare.html",
        "few-shot/report.html",
        "fine-tuned/eval.json",
        "fine-tuned/predictions.jsonl",
        "train/adapter_model.safetensors",
        "data/train.jsonl",
        "data/test.jsonl",
        "data/tools.json",
        "data/task.toml",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The data is the team's tools, split as asked, and trains with the task file beside it.
    let count = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(
        (count("data/train.jsonl"), count("data/test.jsonl")),
        (4, 3)
    );
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(out.join("data/test.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        offered
            .iter()
            .all(|n| ["book_room", "order_lunch"].contains(n)),
        "{offered:?}"
    );
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.contains("Tools and arguments"), "compare.html");
    assert!(
        stdout(&o).contains("accuracy: few-shot base"),
        "{}",
        stdout(&o)
    );

    // The two tool evaluations compare from the command line too, with a page.
    let o = smolt(&[
        "eval",
        "--compare",
        out.join("few-shot").to_str().unwrap(),
        out.join("fine-tuned").to_str().unwrap(),
        "--out",
        dir.path().join("cmp").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("accuracy"), "{}", stdout(&o));
    assert!(dir.path().join("cmp/compare.html").is_file());

    // A second run reuses the finished training.
    let o = smolt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reusing the finished run"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn demo_and_eval_reject_bad_options_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let o = smolt(&[
        "demo",
        "--fields",
        "retailer,colour",
        "--out",
        dir.path().join("d").to_str().unwrap(),
        "--model",
        "/nonexistent.gguf",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("colour"), "{}", stderr(&o));
    let o = smolt(&[
        "eval",
        "--compare",
        dir.path().to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("eval.json"), "{}", stderr(&o));
    let o = smolt(&["eval", "--data", "x.jsonl", "--out", "y", "--few-shot", "2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--shots"), "{}", stderr(&o));
    // The tool demo: receipts-only options and unusable tool lists are named.
    let d = dir.path().join("t");
    let d = d.to_str().unwrap();
    let o = smolt(&["demo", "--task", "tools", "--fields", "total", "--out", d]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--fields is for the receipts demo"),
        "{}",
        stderr(&o)
    );
    let bad = dir.path().join("bad-tools.json");
    std::fs::write(
        &bad,
        r#"[{"type": "function", "function": {"parameters": {}}}]"#,
    )
    .unwrap();
    let o = smolt(&[
        "demo",
        "--task",
        "tools",
        "--tools",
        bad.to_str().unwrap(),
        "--out",
        d,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a usable tool list"),
        "{}",
        stderr(&o)
    );
    let o = smolt(&["demo", "--tools", bad.to_str().unwrap(), "--out", d]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--task tools"), "{}", stderr(&o));
}

#[test]
fn data_check_lists_problems_with_file_and_line() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"input\": \"Total 9.00\", \"output\": {\"total\": 9.0}}\n\
         {\"input\": \"Total 9.00\", \"output\": {\"total\": 9.0}}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"input\": \"Total 9.00\", \"output\": {\"total\": \"nine\"}}\n{oops\n",
    )
    .unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}"#,
    )
    .unwrap();
    let run = |file: &Path| {
        smolt(&[
            "data",
            "check",
            file.to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
    };
    let o = run(&good);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("good.jsonl:2: duplicate of line 1"), "{out}");
    assert!(out.contains("p50"), "{out}");
    let o = run(&bad);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("bad.jsonl:2: not valid JSON"), "{out}");
}

#[test]
fn init_gives_a_task_that_trains_and_evaluates_as_printed() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("invoices");
    let o = smolt(&["init", task.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("smolt train --config"),
        "{}",
        stdout(&o)
    );
    // Refuses to write over it.
    assert!(!smolt(&["init", task.to_str().unwrap()]).status.success());

    let cfg = task.join("task.toml");
    let run = dir.path().join("run");
    let o = smolt(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = dir.path().join("eval");
    let o = smolt(&[
        "eval",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--data",
        task.join("data/test.jsonl").to_str().unwrap(),
        "--adapter",
        run.to_str().unwrap(),
        "--out",
        ev.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(ev.join("eval.json")).unwrap()).unwrap();
    // The schema came from task.toml: the output is valid JSON with exactly the task's keys.
    assert_eq!(report["validity_rate"], 1.0, "{report}");
    let keys: Vec<&str> = report["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["vendor", "date", "total"]);
}

/// `smolt tune` on the task `smolt init` writes: two two-pass candidates, each pass scored on
/// the validation records, the best copied out with a report that names it.
#[test]
fn tune_scores_candidates_and_keeps_the_best() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("t");
    assert!(smolt(&["init", task.to_str().unwrap()]).status.success());
    let out = dir.path().join("tuned");
    let cfg = task.join("task.toml");
    let valid = task.join("data/valid.jsonl");
    let tune_args = [
        "tune",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--valid",
        valid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lr",
        "1e-3,1e-4",
        "--epochs",
        "2",
        "--rank",
        "4",
        "--valid-limit",
        "2",
        "-n",
        "48",
    ];
    let o = smolt(&tune_args);
    assert!(o.status.success(), "{}", stderr(&o));
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tune.json")).unwrap()).unwrap();
    let trials = t["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2, "{t}");
    let score = |tr: &Value| tr["outcome"]["score"].as_f64().unwrap();
    let best = trials
        .iter()
        .find(|tr| tr["id"] == t["best"])
        .expect("a best trial");
    assert!(trials.iter().all(|tr| score(tr) <= score(best)), "{t}");
    // Both passes of each candidate were scored, and the kept adapter is the best pass's.
    for tr in trials {
        assert_eq!(
            tr["outcome"]["pass_scores"].as_array().unwrap().len(),
            2,
            "{t}"
        );
    }
    let pass = best["outcome"]["best_pass"].as_u64().unwrap();
    let run = std::fs::read_dir(out.join("candidates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{:02}-", best["id"].as_u64().unwrap()))
        })
        .unwrap();
    let chosen = if pass == 2 { run } else { run.join("pass-1") };
    // The winner's adapter is what --adapter OUT loads, and the report says why.
    assert_eq!(
        std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(chosen.join("adapter_model.safetensors")).unwrap()
    );
    assert!(out.join("config.toml").is_file());
    let md = std::fs::read_to_string(out.join("tune.md")).unwrap();
    assert!(md.contains(&format!("Chose trial {}", best["id"])), "{md}");
    assert!(std::fs::read_to_string(out.join("tune.html"))
        .unwrap()
        .contains("<svg"));
    // Run again: every candidate is reused, nothing retrained.
    let o2 = smolt(&tune_args);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(
        stderr(&o2)
            .matches("reusing the finished candidate")
            .count(),
        2
    );
}

#[test]
fn generate_answers_a_jsonl_file_of_prompts_one_json_line_each() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"input\": \"STARBUCKS\\nTotal 4.50\"}\n\n{\"prompt\": \"Name a colour as JSON: \"}\n\"Five as JSON: \"\n",
    )
    .unwrap();
    let schema = dir.path().join("s.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"a":{"type":"string","maxLength":20}},"required":["a"],"additionalProperties":false}"#,
    )
    .unwrap();
    let m = model.to_str().unwrap();
    let p = prompts.to_str().unwrap();
    let o = smolt(&[
        "generate",
        "-m",
        m,
        "--prompts",
        p,
        "--schema",
        schema.to_str().unwrap(),
        "-n",
        "32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3, 4]
    );
    for r in &rows {
        assert_eq!(r["valid"], true, "{r}");
        assert!(r["json"]["a"].is_string(), "{r}");
    }
    // A limit too small to finish: every line is still answered, flagged, and the exit is 1.
    let o = smolt(&[
        "generate",
        "-m",
        m,
        "--prompts",
        p,
        "--schema",
        schema.to_str().unwrap(),
        "-n",
        "2",
    ]);
    assert!(!o.status.success());
    assert_eq!(stdout(&o).lines().count(), 3);
    assert!(
        stdout(&o).contains("\"finish\":\"truncated\""),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("NOT valid"), "{}", stderr(&o));
    // Bad lines are all reported, with their line numbers, before any work.
    std::fs::write(&prompts, "{\"input\": \"x\"}\n{\"foo\": 1}\nnope\n").unwrap();
    let o = smolt(&["generate", "-m", m, "--prompts", p, "--json"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("p.jsonl:2:") && e.contains("p.jsonl:3: not valid JSON"),
        "{e}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn generate_renders_messages_lines_as_training_does() {
    let model = real_model();
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    let p = prompts.to_str().unwrap();
    // The default model has no chat template: the built-in Gemma 3 format, BOS from the encoder.
    std::fs::write(
        &prompts,
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Answer in one word.\"}, \
         {\"role\": \"user\", \"content\": \"The colour of the sky?\"}]}\n\
         {\"prompt\": \"<start_of_turn>user\\nAnswer in one word.\\n\\nThe colour of the sky?\
         <end_of_turn>\\n<start_of_turn>model\\n\"}\n",
    )
    .unwrap();
    let o = smolt(&["generate", "-m", m, "--prompts", p, "-n", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["output"], rows[1]["output"], "{rows:?}");
    assert_eq!(rows[0]["tokens"], rows[1]["tokens"], "{rows:?}");

    // A conversation the format refuses is reported with its line, before any generation.
    std::fs::write(
        &prompts,
        "{\"prompt\": \"x\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, \
         {\"role\": \"user\", \"content\": \"b\"}]}\n{\"messages\": [{\"role\": \"robot\", \"content\": \"c\"}]}\n",
    )
    .unwrap();
    let o = smolt(&["generate", "-m", m, "--prompts", p, "-n", "4"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("p.jsonl:3: messages[0]: unknown role \"robot\""),
        "{e}"
    );
    std::fs::write(
        &prompts,
        "{\"prompt\": \"x\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, \
         {\"role\": \"user\", \"content\": \"b\"}]}\n",
    )
    .unwrap();
    let o = smolt(&["generate", "-m", m, "--prompts", p, "-n", "4"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(
            "p.jsonl:2: the built-in Gemma 3 chat format refuses this conversation: \
                    Conversation roles must alternate"
        ),
        "{e}"
    );
    assert!(stdout(&o).is_empty());

    // chat_template = "gguf" with a model that has none.
    let cfg = dir.path().join("task.toml");
    std::fs::write(&cfg, "chat_template = \"gguf\"\n").unwrap();
    std::fs::write(
        &prompts,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n",
    )
    .unwrap();
    let o = smolt(&[
        "generate",
        "-m",
        m,
        "--prompts",
        p,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("chat_template = \"gguf\", but the model has no chat template"),
        "{e}"
    );
}

/// Kills the child on the way out, so that a failing test leaves no server behind.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `smolt serve` loads the model, answers over HTTP, and on SIGTERM (what `docker stop` and
/// systemd send) stops accepting and exits with status 0.
#[test]
fn serve_answers_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let model = real_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smolt"))
        .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
        .args(["--served-model-name", "m", "--max-queue", "2"])
        .env("SMOLT_THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run smolt serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = Reaper(child);
    let addr = loop {
        let line = lines
            .next()
            .expect("smolt serve exited before it listened")
            .unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split("/v1").next().unwrap().to_string();
        }
    };
    let health: Value = serde_json::from_str(
        &ureq::get(&format!("http://{addr}/health"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["models"], serde_json::json!(["m"]));
    assert_eq!(health["max_queue"], 2);
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = child;
    let status = child.0.wait().unwrap();
    assert!(status.success(), "smolt serve exited with {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn serve_refuses_a_malformed_adapter_flag() {
    let o = smolt(&["serve", "--adapter", "runs/receipts"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NAME=DIR"), "{}", stderr(&o));
}

/// `smolt export` writes every format from a run, each reads back into smolt and gives the
/// run's own greedy tokens (GGUF LoRA and PEFT hold the same f32 tensors); the merged model
/// loads as a plain model stamped with what was merged; mistakes are clear errors.
#[test]
fn export_writes_every_format_and_each_reads_back() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("task");
    assert!(smolt(&["init", task.to_str().unwrap()]).status.success());
    let run = dir.path().join("run");
    let o = smolt(&[
        "train",
        "--config",
        task.join("task.toml").to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "2",
        "--set",
        "lr=5e-3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let export = |format: &str, out: &str, extra: &[&str]| {
        let mut a = vec![
            "export",
            run.to_str().unwrap(),
            "--format",
            format,
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        smolt(&a)
    };
    for (format, out) in [
        ("gguf-lora", p("lora.gguf")),
        ("gguf-lora", p("lora-q8.gguf")),
        ("peft", p("peft")),
        ("merged-gguf", p("merged.gguf")),
        ("ollama", p("ollama")),
    ] {
        let extra: &[&str] = if out.ends_with("q8.gguf") {
            &["--lora-type", "q8_0"]
        } else {
            &[]
        };
        let o = export(format, &out, extra);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
    }
    let greedy = |model: &Path, adapter: Option<&str>| {
        let mut a = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--temperature",
            "0",
            "--ids",
            "--ignore-eos",
            "-n",
            "6",
            "Vendor: ACME\nTotal: 12.50",
        ];
        if let Some(ad) = adapter {
            a.extend(["--adapter", ad]);
        }
        let o = smolt(&a);
        assert!(o.status.success(), "{adapter:?}: {}", stderr(&o));
        stdout(&o)
    };
    let want = greedy(&model, Some(run.to_str().unwrap()));
    assert_eq!(greedy(&model, Some(&p("lora.gguf"))), want);
    assert_eq!(greedy(&model, Some(&p("peft"))), want);
    // Q8_0 factors: close, not bit-exact; the file reads and generates.
    assert!(!greedy(&model, Some(&p("lora-q8.gguf"))).trim().is_empty());
    let merged = PathBuf::from(p("merged.gguf"));
    assert!(!greedy(&merged, None).trim().is_empty());
    let o = smolt(&["inspect", "--metadata", merged.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("smolt.merged.adapter"),
        "{}",
        stdout(&o)
    );

    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(p("peft") + "/adapter_config.json").unwrap())
            .unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "google/gemma-3-270m");
    let modelfile = std::fs::read_to_string(p("ollama") + "/Modelfile").unwrap();
    assert!(modelfile.contains("ADAPTER ./adapter.gguf"), "{modelfile}");
    assert!(modelfile.contains("{{ .Prompt }}"), "{modelfile}");
    assert!(Path::new(&(p("ollama") + "/adapter.gguf")).is_file());

    // Mistakes: an existing --out, an adapter without a known base, a model as the adapter.
    let o = export("gguf-lora", &p("lora.gguf"), &[]);
    assert!(
        !o.status.success() && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    let o = smolt(&[
        "export",
        &p("lora.gguf"),
        "--format",
        "peft",
        "--out",
        &p("x"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--model"),
        "{}",
        stderr(&o)
    );
    let o = smolt(&[
        "export",
        model.to_str().unwrap(),
        "--format",
        "peft",
        "--model",
        model.to_str().unwrap(),
        "--out",
        &p("y"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("not a LoRA adapter"),
        "{}",
        stderr(&o)
    );
}

/// Function calling from a tool list alone: synthetic data, checked, trained on, evaluated
/// by the leaderboard's rules, and a tools line answered with a call (a tiny random model:
/// the plumbing, not the quality).
#[test]
fn a_tool_task_goes_from_a_tool_list_to_scored_calls() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    smolt_model::testing::tiny_text_model(4)
        .write(&model)
        .unwrap();
    let m = model.to_str().unwrap();
    let data = dir.path().join("tools");
    let d = |f: &str| data.join(f).to_str().unwrap().to_string();
    let o = smolt(&[
        "data",
        "synth",
        "tools",
        "--n",
        "30",
        "--seed",
        "2",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("train 24, valid 3, test 3"),
        "{}",
        stderr(&o)
    );
    let o = smolt(&[
        "data",
        "check",
        &d("train.jsonl"),
        "--config",
        &d("task.toml"),
        "--model",
        m,
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("function calling"), "{}", stdout(&o));

    let run = dir.path().join("run");
    let o = smolt(&[
        "train",
        "--config",
        &d("task.toml"),
        "--model",
        m,
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = dir.path().join("eval");
    let o = smolt(&[
        "eval",
        "--config",
        &d("task.toml"),
        "--model",
        m,
        "--adapter",
        run.to_str().unwrap(),
        "--data",
        &d("test.jsonl"),
        "--out",
        ev.to_str().unwrap(),
        "-n",
        "48",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("tool calls —"), "{}", stdout(&o));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(ev.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["kind"], "tool_calls");
    assert_eq!(report["n_cases"], 3);
    assert!(report["stats"]["per_tool"]
        .as_object()
        .is_some_and(|t| !t.is_empty()));
    let predictions = std::fs::read_to_string(ev.join("predictions.jsonl")).unwrap();
    assert_eq!(predictions.lines().count(), 3);
    assert!(std::fs::read_to_string(ev.join("report.html"))
        .unwrap()
        .contains("Per tool"));
    // The few-shot baseline: solved requests as earlier turns.
    let base = dir.path().join("base");
    let o = smolt(&[
        "eval",
        "--config",
        &d("task.toml"),
        "--model",
        m,
        "--data",
        &d("test.jsonl"),
        "--few-shot",
        "2",
        "--shots",
        &d("train.jsonl"),
        "--out",
        base.to_str().unwrap(),
        "-n",
        "48",
        "--limit",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(2-shot)"), "{}", stdout(&o));
    // Compared with itself: no change.
    let o = smolt(&[
        "eval",
        "--compare",
        ev.to_str().unwrap(),
        ev.to_str().unwrap(),
    ]);
    assert!(
        o.status.success() && stdout(&o).contains("accuracy") && stdout(&o).contains("+0.0 pt"),
        "{}",
        stdout(&o)
    );

    // A tools line, a call required: answered with a call to the listed tool.
    let tools: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("tools.json")).unwrap()).unwrap();
    let light = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "set_light")
        .unwrap();
    let prompts = dir.path().join("p.jsonl");
    let line = serde_json::json!({"tools": [light], "tool_choice": "required",
        "parallel_tool_calls": false,
        "messages": [{"role": "user", "content": "Kitchen light on"}]});
    std::fs::write(&prompts, format!("{line}\n")).unwrap();
    let o = smolt(&[
        "generate",
        "--prompts",
        prompts.to_str().unwrap(),
        "--model",
        m,
        "--adapter",
        run.to_str().unwrap(),
        "-n",
        "64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        row["tool_calls"][0]["function"]["name"], "set_light",
        "{row}"
    );
    let args: Value = serde_json::from_str(
        row["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(args["room"].is_string() && args["on"].is_boolean(), "{row}");

    // A bad line is named with its file and line.
    let bad = dir.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(data.join("test.jsonl")).unwrap();
    text.push_str(
        &serde_json::json!({"tools": [light], "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function":
            {"name": "set_light", "arguments": "{\"room\": \"garage\", \"on\": true}"}}]}]})
        .to_string(),
    );
    std::fs::write(&bad, text + "\n").unwrap();
    let o = smolt(&["data", "check", bad.to_str().unwrap(), "--model", m]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("bad.jsonl:4") && stdout(&o).contains("/room"),
        "{}",
        stdout(&o)
    );
    // A value the schema's format refuses: JSON Schema validators let it pass, the constraint
    // would never write it, so data check and training refuse it.
    let clock = serde_json::json!({"type": "function", "function": {"name": "alarm", "parameters":
        {"type": "object", "properties": {"at": {"type": "string", "format": "time"}}}}});
    let alarm = dir.path().join("alarm.jsonl");
    let line = serde_json::json!({"tools": [clock], "messages": [
        {"role": "user", "content": "wake me at 7"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function":
            {"name": "alarm", "arguments": "{\"at\": \"07:00\"}"}}]}]});
    std::fs::write(&alarm, format!("{line}\n")).unwrap();
    let o = smolt(&["data", "check", alarm.to_str().unwrap(), "--model", m]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("alarm.jsonl:1: decoding could not write this answer"),
        "{}",
        stdout(&o)
    );
    let o = smolt(&[
        "train",
        "--data",
        alarm.to_str().unwrap(),
        "--model",
        m,
        "--out",
        dir.path().join("run2").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("alarm.jsonl:1"), "{}", stderr(&o));
}

/// `smolt data drift` on synthetic receipts of two periods: the 2020 layouts (weekday dates,
/// app receipts) show up as line shapes the earlier years never have, and every later
/// timestamp is a value the old set lacks; raw inputs without outputs compare too.
#[test]
fn data_drift_finds_the_later_periods_new_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let synth = |year: &str, name: &str| {
        let out = dir.path().join(name);
        let o = smolt(&[
            "data",
            "synth",
            "receipts",
            "--n",
            "60",
            "--year",
            year,
            "--seed",
            "4",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out.join("receipts.jsonl")
    };
    let old = synth("2018", "old");
    let new = synth("2020", "new");
    let report = dir.path().join("drift");
    let o = smolt(&[
        "data",
        "drift",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("drift.json")).unwrap()).unwrap();
    assert!(
        d["records_with_unseen_lines"].as_f64().unwrap() > 0.2,
        "{d}"
    );
    let ts = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "timestamp")
        .unwrap();
    assert_eq!(ts["unseen_values"], 1.0, "{ts}");
    assert!(stdout(&o).contains("layout the old set never shows"));
    assert!(std::fs::read_to_string(report.join("drift.html"))
        .unwrap()
        .contains("<svg"));
    // Against itself: nothing is new.
    let o = smolt(&[
        "data",
        "drift",
        old.to_str().unwrap(),
        old.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("never shows: 0.0% of new lines"),
        "{}",
        stdout(&o)
    );
    // Raw inputs (no outputs) compare by their inputs.
    let raw = dir.path().join("raw.jsonl");
    std::fs::write(
        &raw,
        "{\"input\": \"Thu Oct 29 2020 12:33pm\"}\n\"TOTAL 5.00\"\n",
    )
    .unwrap();
    let o = smolt(&[
        "data",
        "drift",
        old.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A bad file is named.
    std::fs::write(&raw, "{not json\n").unwrap();
    let o = smolt(&[
        "data",
        "drift",
        old.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("raw.jsonl:1"), "{}", stderr(&o));
}

/// Continual training: `--from RUN` starts from the run's adapter and settings on new data,
/// `--replay` mixes the run's own records back in; a run folder without an adapter is refused.
#[test]
fn train_from_a_run_continues_its_adapter_with_replay() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("t");
    assert!(smolt(&["init", task.to_str().unwrap()]).status.success());
    let first = dir.path().join("first");
    let m = model.to_str().unwrap();
    let o = smolt(&[
        "train",
        "--config",
        task.join("task.toml").to_str().unwrap(),
        "--model",
        m,
        "--out",
        first.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Two "new" records: the task's validation and test records.
    let new = dir.path().join("new.jsonl");
    let text = std::fs::read_to_string(task.join("data/valid.jsonl")).unwrap()
        + &std::fs::read_to_string(task.join("data/test.jsonl")).unwrap();
    std::fs::write(&new, &text).unwrap();
    let second = dir.path().join("second");
    let o = smolt(&[
        "train",
        "--from",
        first.to_str().unwrap(),
        "--data",
        new.to_str().unwrap(),
        "--replay",
        "0.5",
        "--model",
        m,
        "--out",
        second.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 new records + 2 replayed"),
        "{}",
        stderr(&o)
    );
    let mix = std::fs::read_to_string(second.join("replay-train.jsonl")).unwrap();
    assert_eq!(mix.lines().count(), 4);
    assert!(mix.starts_with(&text));
    let cfg = std::fs::read_to_string(second.join("config.toml")).unwrap();
    assert!(cfg.contains("init_adapter = "), "{cfg}");
    // The first run's settings came along (the template smolt init wrote).
    assert!(cfg.contains("Extract the information"), "{cfg}");
    // Not a finished run: named.
    let o = smolt(&[
        "train",
        "--from",
        task.to_str().unwrap(),
        "--data",
        new.to_str().unwrap(),
        "--model",
        m,
        "--out",
        dir.path().join("third").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("config.toml"), "{}", stderr(&o));
    let o = smolt(&[
        "train",
        "--from",
        first.to_str().unwrap(),
        "--data",
        new.to_str().unwrap(),
        "--replay",
        "1",
        "--out",
        dir.path().join("fourth").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--replay"), "{}", stderr(&o));
}

/// A public dataset's records (xLAM's form) become tool records that `data check` accepts
/// (every call names a listed tool with arguments its converted schema allows); a wrong
/// --format is refused with what to check.
#[test]
fn import_tools_converts_xlam_records_that_data_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let tools = serde_json::json!([
        {"name": "get_weather", "description": "Current weather of a city",
         "parameters": {"city": {"type": "str", "description": "City name"},
                        "days": {"type": "int, optional", "default": 1},
                        "units": {"type": "List[str]"}}},
        {"name": "convert", "parameters": {"amount": {"type": "float"}, "to": {"type": "str"}}}
    ]);
    let lines = [
        serde_json::json!({"query": "Weather in Oslo for 3 days, metric?", "tools": tools.to_string(),
            "answers": "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"days\": 3, \"units\": [\"metric\"]}}]"}),
        serde_json::json!({"query": "Convert 12.5 to euros and weather in Lima", "tools": tools.to_string(),
            "answers": "[{\"name\": \"convert\", \"arguments\": {\"amount\": 12.5, \"to\": \"EUR\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\", \"units\": []}}]"}),
    ];
    let input = dir.path().join("xlam.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out/tools.jsonl");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = smolt(&["data", "import-tools", i, "--format", "xlam", "--out", o]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("wrote 2 tool records (2 with calls"),
        "{}",
        stderr(&r)
    );
    let m = real_model();
    let r = smolt(&["data", "check", o, "--model", m.to_str().unwrap()]);
    assert!(r.status.success(), "{}{}", stdout(&r), stderr(&r));
    let r = smolt(&["data", "import-tools", i, "--format", "glaive", "--out", o]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("is --format right?"), "{}", stderr(&r));
}
