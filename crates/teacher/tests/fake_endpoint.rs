//! Every failure path of a distillation run, against a fake OpenAI endpoint on a free port:
//! timeouts, 429 with Retry-After, 5xx, dropped connections, answers that are not JSON or
//! violate the schema (re-asked, then dropped and counted), a wrong key, and a rerun that
//! asks nothing. Delays are a few hundred milliseconds at most.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smolt_task::Task;
use smolt_teacher::fake::{usage_of, FakeTeacher, Hit, Reply};
use smolt_teacher::{
    distill, Cache, Client, ClientConfig, DistillConfig, Input, Outcome, Progress, Teacher,
};

const SCHEMA: &str = r#"{"type": "object",
  "properties": {"item": {"type": "string"}, "total": {"type": "number"}},
  "required": ["item", "total"], "additionalProperties": false}"#;

/// A task whose prompt is the input itself, so scripts can answer per input.
fn task(dir: &Path) -> Task {
    let schema = dir.join("schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    Task {
        schema: Some(schema),
        template: "{input}".into(),
        ..Task::default()
    }
}

fn inputs(n: usize) -> Vec<Input> {
    (0..n)
        .map(|i| Input {
            line: i + 1,
            text: format!("receipt {i}"),
        })
        .collect()
}

/// The right answer to a prompt: a test can tell which input an output belongs to.
fn answer(prompt: &str) -> String {
    let n: f64 = prompt.trim_start_matches("receipt ").parse().unwrap();
    json!({"item": prompt, "total": n + 0.5}).to_string()
}

fn client(url: &str) -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..ClientConfig::new(url)
    }
}

fn config() -> DistillConfig {
    DistillConfig {
        model: "teacher".into(),
        samples: 1,
        concurrency: 2,
        max_retries: 2,
        temperature: 0.0,
        retry_temperature: 0.7,
        max_tokens: None,
        seed: 0,
    }
}

fn run(
    fake: &FakeTeacher,
    dir: &Path,
    client_cfg: ClientConfig,
    cfg: &DistillConfig,
    n: usize,
) -> anyhow::Result<Outcome> {
    let teacher = Teacher {
        client: Client::new(client_cfg)?,
        cache: Cache::open(&dir.join("cache.jsonl"))?,
    };
    let _ = fake;
    distill(&teacher, &task(dir), &inputs(n), cfg, &|_: Progress| {})
}

fn assert_all_right(out: &Outcome, n: usize) {
    assert_eq!(out.labelled.len(), n);
    for r in &out.labelled {
        let want: Value = serde_json::from_str(&answer(&r.input)).unwrap();
        assert_eq!(r.output, want, "{}", r.input);
    }
}

#[test]
fn a_clean_run_counts_tokens_and_a_rerun_asks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| Reply::Answer(answer(&h.prompt)));
    let mut c = client(fake.url());
    c.api_key = Some("sk-test-secret".into());
    let out = run(&fake, dir.path(), c.clone(), &config(), 5).unwrap();
    assert_all_right(&out, 5);
    let r = &out.report;
    assert_eq!((r.labelled, r.dropped, r.retried), (5, 0, 0));
    assert_eq!((r.answers_received, r.answers_cached), (5, 0));
    assert_eq!(r.transport.requests, 5);
    let (mut tin, mut tout) = (0, 0);
    for i in 0..5 {
        let p = format!("receipt {i}");
        let u = usage_of(&p, &answer(&p));
        tin += u["prompt_tokens"].as_u64().unwrap();
        tout += u["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!((r.tokens.prompt, r.tokens.completion), (tin, tout));
    assert_eq!(fake.hits(), 5);
    // The request: the task's prompt, its schema as response_format, the key in the header.
    let b = &fake.bodies()[0];
    assert_eq!(b["model"], "teacher");
    assert_eq!(b["response_format"]["type"], "json_schema");
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    assert_eq!(b["response_format"]["json_schema"]["schema"], schema);

    let again = run(&fake, dir.path(), c, &config(), 5).unwrap();
    assert_eq!(fake.hits(), 5, "a rerun asks nothing");
    assert_all_right(&again, 5);
    let r = &again.report;
    assert_eq!((r.answers_received, r.answers_cached), (0, 5));
    assert_eq!(r.tokens.prompt + r.tokens.completion, 0);
    assert_eq!(
        (r.tokens_cached.prompt, r.tokens_cached.completion),
        (tin, tout)
    );
    let cache = std::fs::read_to_string(dir.path().join("cache.jsonl")).unwrap();
    assert_eq!(cache.lines().count(), 5);
    assert!(!cache.contains("sk-test-secret"));
}

#[test]
fn the_api_key_goes_in_the_authorization_header() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| {
        if h.authorization.as_deref() == Some("Bearer sk-1") {
            Reply::Answer(answer(&h.prompt))
        } else {
            Reply::Status {
                code: 401,
                retry_after: None,
                body: "{\"error\": \"bad key\"}".into(),
            }
        }
    });
    let mut c = client(fake.url());
    c.api_key = Some("sk-1".into());
    assert_all_right(&run(&fake, dir.path(), c, &config(), 2).unwrap(), 2);
    // A wrong key stops the run at once: every request would fail alike.
    let dir = tempfile::tempdir().unwrap();
    let mut c = client(fake.url());
    c.api_key = Some("sk-wrong".into());
    let mut cfg = config();
    cfg.concurrency = 1;
    let before = fake.hits();
    let e = run(&fake, dir.path(), c, &cfg, 4).err().unwrap();
    let e = format!("{e:#}");
    assert!(e.contains("401") && e.contains("API key"), "{e}");
    assert!(!e.contains("sk-wrong"), "{e}");
    assert_eq!(fake.hits() - before, 1);
}

#[test]
fn a_timeout_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| {
        let a = Reply::Answer(answer(&h.prompt));
        if h.prompt_seen == 0 && h.prompt == "receipt 1" {
            Reply::After(Duration::from_millis(800), Box::new(a))
        } else {
            a
        }
    });
    let mut c = client(fake.url());
    c.timeout = Duration::from_millis(250);
    let t = Instant::now();
    let out = run(&fake, dir.path(), c, &config(), 3).unwrap();
    assert_all_right(&out, 3);
    assert_eq!(out.report.transport.timeouts, 1);
    assert_eq!(out.report.transport.requests, 4);
    assert!(t.elapsed() >= Duration::from_millis(250));
}

#[test]
fn a_429_waits_as_long_as_retry_after_says() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| {
        if h.n == 0 {
            Reply::Status {
                code: 429,
                retry_after: Some("0.4".into()),
                body: "slow down".into(),
            }
        } else {
            Reply::Answer(answer(&h.prompt))
        }
    });
    // A backoff far longer than Retry-After: the test sees which one was honoured.
    let mut c = client(fake.url());
    c.backoff = Duration::from_secs(20);
    c.max_backoff = Duration::from_secs(20);
    let mut cfg = config();
    cfg.concurrency = 1;
    let t = Instant::now();
    let out = run(&fake, dir.path(), c, &cfg, 2).unwrap();
    let took = t.elapsed();
    assert_all_right(&out, 2);
    assert_eq!(out.report.transport.rate_limited, 1);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn server_errors_are_retried_then_the_input_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| match h.prompt.as_str() {
        // Two 500s, then an answer.
        "receipt 0" if h.prompt_seen < 2 => Reply::Status {
            code: 500,
            retry_after: None,
            body: "oops".into(),
        },
        // Always down.
        "receipt 1" => Reply::Status {
            code: 503,
            retry_after: None,
            body: "down".into(),
        },
        p => Reply::Answer(answer(p)),
    });
    let out = run(&fake, dir.path(), client(fake.url()), &config(), 3).unwrap();
    let r = &out.report;
    assert_eq!((r.labelled, r.dropped), (2, 1));
    // 2 + 1 for input 0; 1 + max_retries (3) for input 1; 1 for input 2.
    assert_eq!(r.transport.server_errors, 2 + 4);
    assert_eq!(r.transport.requests, 3 + 4 + 1);
    assert_eq!(fake.hits(), 8);
    assert_eq!(r.dropped_inputs[0].line, 2);
    let why = &r.dropped_inputs[0].reason;
    assert!(why.contains("503") && why.contains("4 tries"), "{why}");
    assert_eq!(out.labelled[1].input, "receipt 2");
    // Failures are not cached: a rerun asks for the dropped input again, and only for it.
    let again = run(&fake, dir.path(), client(fake.url()), &config(), 3).unwrap();
    assert_eq!(again.report.transport.requests, 4);
    assert_eq!(fake.hits(), 12);
}

#[test]
fn a_dropped_connection_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| {
        if h.n == 0 {
            Reply::Drop
        } else {
            Reply::Answer(answer(&h.prompt))
        }
    });
    let mut cfg = config();
    cfg.concurrency = 1;
    let out = run(&fake, dir.path(), client(fake.url()), &cfg, 2).unwrap();
    assert_all_right(&out, 2);
    assert_eq!(out.report.transport.connection_errors, 1);
}

#[test]
fn a_refused_connection_is_retried_then_dropped() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| Reply::Answer(answer(&h.prompt)));
    let out = run(
        &fake,
        dir.path(),
        client(&format!("http://127.0.0.1:{port}")),
        &config(),
        1,
    )
    .unwrap();
    assert_eq!(out.report.dropped, 1);
    assert_eq!(out.report.transport.connection_errors, 4);
}

#[test]
fn answers_that_are_not_json_or_break_the_schema_are_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| match (h.prompt.as_str(), h.prompt_seen) {
        ("receipt 0", 0) => Reply::Answer("Sure! Here is the JSON: {".into()),
        ("receipt 1", 0) => Reply::Answer(json!({"item": "x", "total": "12.50"}).to_string()),
        ("receipt 1", 1) => Reply::Answer(json!({"item": "x"}).to_string()),
        (p, _) => Reply::Answer(answer(p)),
    });
    let out = run(&fake, dir.path(), client(fake.url()), &config(), 3).unwrap();
    assert_all_right(&out, 3);
    let r = &out.report;
    assert_eq!((r.retried, r.dropped, r.answers_received), (3, 0, 6));
    // Each re-ask is a new request (its own seed), so the cache keeps every answer.
    let tries: Vec<(u64, f64)> = fake
        .bodies()
        .iter()
        .filter(|b| b["messages"][0]["content"] == "receipt 1")
        .map(|b| {
            (
                b["seed"].as_u64().unwrap(),
                b["temperature"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tries.len(), 3);
    assert!(
        tries[0].0 != tries[1].0 && tries[1].0 != tries[2].0,
        "{tries:?}"
    );
    // Re-asks sample: a deterministic teacher would repeat its invalid answer.
    let temps: Vec<f64> = tries.iter().map(|t| t.1).collect();
    assert_eq!(temps, [0.0, 0.7, 0.7]);
    // The rerun replays the same invalid answers from the cache and lands on the same records.
    let hits = fake.hits();
    let again = run(&fake, dir.path(), client(fake.url()), &config(), 3).unwrap();
    assert_eq!(fake.hits(), hits);
    assert_eq!(again.labelled, out.labelled);
    assert_eq!(again.report.retried, 3);
}

#[test]
fn an_answer_that_always_breaks_the_schema_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| {
        if h.prompt == "receipt 2" {
            Reply::Answer(json!({"item": "x", "total": 1, "extra": true}).to_string())
        } else {
            Reply::Answer(answer(&h.prompt))
        }
    });
    let out = run(&fake, dir.path(), client(fake.url()), &config(), 4).unwrap();
    let r = &out.report;
    assert_eq!((r.labelled, r.dropped, r.dropped_samples), (3, 1, 1));
    assert_eq!(r.retried, 2);
    assert_eq!(fake.hits(), 3 + 3);
    let why = &r.dropped_inputs[0].reason;
    assert!(why.contains("schema") && why.contains("3 tries"), "{why}");
    assert_eq!(r.dropped_inputs[0].line, 3);
    assert!(out.labelled.iter().all(|l| l.input != "receipt 2"));
}

#[test]
fn two_samples_give_agreement_per_field() {
    let dir = tempfile::tempdir().unwrap();
    // The second sample (seeds from 1000) of inputs 0 and 1 reads the total differently.
    let fake = FakeTeacher::start(|h: &Hit| {
        let mut a: Value = serde_json::from_str(&answer(&h.prompt)).unwrap();
        let second = h.body["seed"].as_u64().unwrap() >= 1000;
        if second && (h.prompt == "receipt 0" || h.prompt == "receipt 1") {
            a["total"] = json!(99);
        }
        Reply::Answer(a.to_string())
    });
    let mut cfg = config();
    cfg.samples = 2;
    cfg.temperature = 1.0;
    let out = run(&fake, dir.path(), client(fake.url()), &cfg, 4).unwrap();
    assert_all_right(&out, 4);
    let a = out.report.agreement.as_ref().unwrap();
    assert_eq!(a.compared, 4);
    assert_eq!(a.all_fields, 0.5);
    let by: Vec<(&str, f64)> = a
        .fields
        .iter()
        .map(|f| (f.field.as_str(), f.agree))
        .collect();
    assert_eq!(by, [("item", 1.0), ("total", 0.5)]);
    assert_eq!(fake.hits(), 8);
    assert!(out.report.to_table().contains("total"));
}

#[test]
fn a_rate_limit_spaces_requests() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTeacher::start(|h: &Hit| Reply::Answer(answer(&h.prompt)));
    let mut c = client(fake.url());
    c.rate_limit = Some(20.0);
    let mut cfg = config();
    cfg.concurrency = 4;
    let t = Instant::now();
    let out = run(&fake, dir.path(), c, &cfg, 6).unwrap();
    assert_all_right(&out, 6);
    // Six slots 50 ms apart: the last leaves at 250 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
}
