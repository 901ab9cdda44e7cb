//! Routing to a fallback model, end to end over HTTP on the real default model, with a fake
//! OpenAI endpoint as the fallback: JSON answers carry each field's confidence; an answer below
//! `min_confidence` is the fallback's, marked as such and counted; a fallback that fails leaves
//! the local answer (a 200, never a 5xx); streamed answers are never routed.

use std::time::Duration;

use serde_json::{json, Value};
use smolt_serve::{Background, Fallback, ServeConfig};
use smolt_teacher::fake::{FakeTeacher, Hit, Reply};

fn model_path() -> std::path::PathBuf {
    smolt_hub::model_for_tests().unwrap_or_else(|e| panic!("these tests need Gemma 3 270M: {e}"))
}

fn server(url: &str, min_confidence: f64) -> Background {
    let mut config = ServeConfig::new(model_path(), "base");
    config.max_model_len = Some(512);
    config.fallback = Some(Fallback {
        url: url.to_string(),
        model: "big".into(),
        min_confidence,
        api_key: Some("sk-fallback".into()),
        timeout: Duration::from_secs(30),
    });
    Background::start(config, "127.0.0.1:0").unwrap()
}

fn request(stream: bool) -> Value {
    json!({
        "model": "base",
        "messages": [{"role": "user", "content": "Which city is the capital of France? Answer in JSON."}],
        "max_tokens": 24,
        "temperature": 0,
        "stream": stream,
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true,
            "schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                       "required": ["city"], "additionalProperties": false}}},
    })
}

fn post(s: &Background, body: &Value) -> (u16, String) {
    let r = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build()
        .post(&format!("http://{}/v1/chat/completions", s.addr()))
        .send_json(body.clone());
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

fn metrics(s: &Background) -> String {
    ureq::get(&format!("http://{}/metrics", s.addr()))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

#[test]
fn unsure_answers_go_to_the_fallback_and_sure_ones_stay() {
    let fake = FakeTeacher::start(|h: &Hit| {
        assert_eq!(
            h.body["model"], "big",
            "the request names the fallback's model"
        );
        assert!(h.body["response_format"]["json_schema"]["schema"].is_object());
        assert_eq!(h.authorization.as_deref(), Some("Bearer sk-fallback"));
        Reply::Answer(r#"{"city": "Paris"}"#.into())
    });

    // Nothing is as sure as 2: every JSON answer is routed.
    let always = server(fake.url(), 2.0);
    let (status, text) = post(&always, &request(false));
    assert_eq!(status, 200, "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(a["answered_by"], "fallback", "{a}");
    assert_eq!(
        a["choices"][0]["message"]["content"],
        r#"{"city": "Paris"}"#
    );
    let least = a["local_confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&least), "{a}");
    assert_eq!(fake.hits(), 1);
    // A streamed answer is the server's own: its finish chunk carries the confidence.
    let (status, text) = post(&always, &request(true));
    assert_eq!(status, 200);
    let finish: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1, "{text}");
    assert!(
        finish[0]["choices"][0]["confidence"]["city"].is_number(),
        "{text}"
    );
    assert_eq!(fake.hits(), 1, "streams are not routed");
    let m = metrics(&always);
    assert!(
        m.contains("smolt_serve_routed_answers_total{answered_by=\"fallback\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("smolt_serve_routed_answers_total{answered_by=\"local\"} 0"),
        "{m}"
    );
    always.stop().unwrap();

    // Everything is as sure as 0: the local answer, with each field's confidence.
    let never = server(fake.url(), 0.0);
    let (status, text) = post(&never, &request(false));
    assert_eq!(status, 200, "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(a["answered_by"], "local", "{a}");
    let p = a["choices"][0]["confidence"]["city"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{a}");
    assert_eq!(fake.hits(), 1, "nothing was routed");
    never.stop().unwrap();
}

#[test]
fn a_failing_fallback_leaves_the_local_answer() {
    // A port nothing listens on: bind one, note it, let it go.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let s = server(&dead, 2.0);
    let (status, text) = post(&s, &request(false));
    assert_eq!(status, 200, "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(a["answered_by"], "local", "{a}");
    assert!(
        a["fallback_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{a}"
    );
    let content = a["choices"][0]["message"]["content"].as_str().unwrap();
    let v: Value = serde_json::from_str(content).unwrap();
    assert!(v["city"].is_string());
    let m = metrics(&s);
    assert!(m.contains("smolt_serve_fallback_errors_total 1"), "{m}");
    s.stop().unwrap();
}
