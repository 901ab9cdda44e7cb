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
    for cmd in ["generate", "tokenize", "inspect", "fetch", "bench"] {
        assert!(text.contains(cmd), "--help should list `{cmd}`:\n{text}");
    }
    let o = smolt(&["generate", "--help"]);
    assert!(stdout(&o).contains("Examples:"), "{}", stdout(&o));
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
