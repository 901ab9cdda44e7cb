//! `smolt distill` end to end against a fake teacher: a run killed mid-way (SIGKILL) resumes
//! without asking again for any answer it had received, a finished run reruns without a
//! request, and the API key appears in no file and no output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smolt_teacher::fake::{FakeTeacher, Hit, Reply};

const KEY: &str = "sk-never-on-disk-4821";

fn answer(prompt: &str) -> String {
    json!({"item": prompt, "total": prompt.len()}).to_string()
}

fn task_folder(dir: &Path, n: usize) {
    std::fs::write(
        dir.join("schema.json"),
        r#"{"type": "object", "properties": {"item": {"type": "string"}, "total": {"type": "number"}},
            "required": ["item", "total"], "additionalProperties": false}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("task.toml"),
        "template = \"{input}\"\nschema = \"schema.json\"\n",
    )
    .unwrap();
    let raw: String = (0..n)
        .map(|i| json!({"input": format!("receipt {i}")}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("raw.jsonl"), raw).unwrap();
}

fn distill_with(dir: &Path, url: &str, config: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smolt"));
    c.current_dir(dir)
        .args(["distill", "--teacher", url, "--inputs", "raw.jsonl"])
        .args(["--config", config, "--out", "labelled.jsonl"])
        .args(["--concurrency", "1", "--timeout", "60"])
        .env("OPENAI_API_KEY", KEY)
        .env_remove("SMOLT_MODEL");
    c
}

fn distill(dir: &Path, url: &str) -> Command {
    distill_with(dir, url, "task.toml")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "waited too long for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_run_resumes_without_asking_again_and_the_key_stays_off_disk() {
    let dir = tempfile::tempdir().unwrap();
    task_folder(dir.path(), 6);
    // The fourth request hangs: the run is killed while it waits.
    let fake = FakeTeacher::start(|h: &Hit| {
        let a = Reply::Answer(answer(&h.prompt));
        if h.n == 3 {
            Reply::After(Duration::from_secs(120), Box::new(a))
        } else {
            a
        }
    });
    let mut child = distill(dir.path(), fake.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the fourth request", || fake.hits() == 4);
    let cache = dir.path().join("labelled.cache.jsonl");
    let lines = || {
        std::fs::read_to_string(&cache)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    wait_for("three cached answers", || lines() == 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.path().join("labelled.jsonl").exists());
    assert_eq!(lines(), 3, "every answer received before the kill is kept");

    let out = distill(dir.path(), fake.url()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("3 answers in"), "{stderr}");
    // The model came from /v1/models; receipts 0-2 were not asked again.
    let bodies = fake.bodies();
    assert_eq!(bodies.len(), 4 + 3);
    assert!(bodies.iter().all(|b| b["model"] == "fake-teacher"));
    let asked = |i: usize| {
        bodies
            .iter()
            .filter(|b| b["messages"][0]["content"] == format!("receipt {i}"))
            .count()
    };
    assert_eq!(
        (0..6).map(asked).collect::<Vec<_>>(),
        [1, 1, 1, 2, 1, 1],
        "only the request cut off by the kill is asked twice"
    );
    let labelled = std::fs::read_to_string(dir.path().join("labelled.jsonl")).unwrap();
    let rows: Vec<Value> = labelled
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    for (i, r) in rows.iter().enumerate() {
        let p = format!("receipt {i}");
        assert_eq!(r["input"], p);
        assert_eq!(
            r["output"],
            serde_json::from_str::<Value>(&answer(&p)).unwrap()
        );
    }
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("labelled.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["answers_received"], 3);
    assert_eq!(report["answers_cached"], 3);
    assert_eq!(report["labelled"], 6);

    // Finished: a rerun sends nothing and writes the same file.
    let again = distill(dir.path(), fake.url()).output().unwrap();
    assert!(again.status.success());
    assert_eq!(fake.hits(), 7);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("labelled.jsonl")).unwrap(),
        labelled
    );
    let table = String::from_utf8_lossy(&again.stdout);
    assert!(
        table.contains("answers received / cached    0 / 6"),
        "{table}"
    );

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(KEY), "{} holds the API key", p.display());
    }
    for o in [&out, &again] {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(KEY));
        assert!(!String::from_utf8_lossy(&o.stderr).contains(KEY));
    }
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    task_folder(dir.path(), 1);
    std::fs::write(
        dir.path().join("no-schema.toml"),
        "template = \"{input}\"\n",
    )
    .unwrap();
    let out = distill_with(dir.path(), "http://127.0.0.1:9", "no-schema.toml")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("no-schema.toml names no schema"), "{e}");
    let out = distill(dir.path(), "http://127.0.0.1:9")
        .args(["--api-key-env", "SMOLT_TEST_UNSET_KEY_VAR"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("SMOLT_TEST_UNSET_KEY_VAR is not set"), "{e}");
    let out = distill(dir.path(), "127.0.0.1:9").output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("must start with http://"), "{e}");
}

/// `smolt eval --fallback`: the real base model on the task `smolt init` writes, a fake
/// fallback that answers every record with its truth. Routing more records to a perfect
/// fallback can only raise the pair's score; at threshold 0 nothing is routed and the pair is
/// the model alone; the fallback's own report is written; a rerun asks nothing again.
#[test]
fn eval_reports_what_routing_the_unsure_answers_to_a_fallback_scores() {
    let model = smolt_hub::model_for_tests().expect("the test needs Gemma 3 270M");
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("t");
    let init = Command::new(env!("CARGO_BIN_EXE_smolt"))
        .args(["init", task.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(init.status.success());
    // The records evaluated: any three of the task's examples serve here.
    let test = task.join("data/train.jsonl");
    let records: Vec<Value> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let truths = records.clone();
    let fake = FakeTeacher::start(move |h: &Hit| {
        let r = truths
            .iter()
            .find(|r| h.prompt.contains(r["input"].as_str().unwrap()))
            .expect("every prompt holds a record's input");
        Reply::Answer(r["output"].to_string())
    });
    let out = dir.path().join("eval");
    let eval = || {
        Command::new(env!("CARGO_BIN_EXE_smolt"))
            .args(["eval", "--config", task.join("task.toml").to_str().unwrap()])
            .args(["--model", model.to_str().unwrap()])
            .args(["--data", test.to_str().unwrap(), "--limit", "3"])
            .args(["--out", out.to_str().unwrap(), "--fallback", fake.url()])
            .args(["--fallback-model", "big"])
            .env("SMOLT_THREADS", "2")
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap()
    };
    let o = eval();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("routing below the threshold to big at"),
        "{stdout}"
    );
    assert_eq!(fake.hits(), 3);
    assert!(fake.bodies().iter().all(|b| b["model"] == "big"));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    let routing = &report["calibration"]["routing"];
    assert_eq!(routing["fallback_score"], 1.0, "{routing}");
    assert_eq!(routing["small_score"], report["mean_score"]);
    let points = routing["points"].as_array().unwrap();
    assert_eq!(points[0]["threshold"], 0.0);
    assert_eq!(points[0]["routed"], 0.0);
    assert_eq!(points[0]["score"], report["mean_score"]);
    let scores: Vec<f64> = points
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[1] >= w[0] - 1e-12),
        "{scores:?}"
    );
    assert_eq!(
        report["calibration"]["records"].as_array().unwrap().len(),
        points.len()
    );
    let fallback: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fallback/eval.json")).unwrap())
            .unwrap();
    assert_eq!(fallback["mean_score"], 1.0);
    assert!(std::fs::read_to_string(out.join("report.html"))
        .unwrap()
        .contains("pair's score"));
    // The answers are cached: a rerun asks nothing.
    assert!(eval().status.success());
    assert_eq!(fake.hits(), 3);

    // A fallback nobody answers at: the command fails, naming it, and keeps this model's
    // evaluation.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out2 = dir.path().join("eval2");
    let o = Command::new(env!("CARGO_BIN_EXE_smolt"))
        .args(["eval", "--config", task.join("task.toml").to_str().unwrap()])
        .args(["--model", model.to_str().unwrap()])
        .args(["--data", test.to_str().unwrap(), "--limit", "1"])
        .args(["--out", out2.to_str().unwrap(), "--fallback", &dead])
        .args(["--fallback-model", "big", "--fallback-timeout", "5"])
        .env("SMOLT_THREADS", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("asking the fallback"), "{err}");
    assert!(out2.join("eval.json").is_file());
}
