//! The server end to end over HTTP, on the real default model: each test is a client request
//! and what it must get back. One server (base model + a random adapter) is shared by the
//! tests of this file; `queue_limits_keys_and_graceful_shutdown` starts its own.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smolt_model::{Model, Precision};
use smolt_serve::{AdapterSpec, Background, ServeConfig};

mod common;
use common::{model_path, random_adapter};

/// Prompt + output tokens per request on the shared server: small, so that a prompt over the
/// context is cheap to build.
const CONTEXT: usize = 1024;
/// The shared server's body limit.
const BODY_LIMIT: usize = 256 << 10;

struct Fixture {
    server: Background,
    model: PathBuf,
    adapter_dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let model = model_path();
        // Kept for the whole test run: the server reads the adapter at start only, but the
        // routing test attaches it again to compare.
        let adapter_dir = tempfile::tempdir().unwrap().keep();
        random_adapter(&Model::load(&model, Precision::Fast).unwrap(), &adapter_dir);
        let mut config = ServeConfig::new(&model, "base");
        config.adapters.push(AdapterSpec {
            name: "rnd".into(),
            dir: adapter_dir.clone(),
        });
        config.max_model_len = Some(CONTEXT);
        config.max_body_bytes = BODY_LIMIT;
        let server = Background::start(config, "127.0.0.1:0").unwrap();
        Fixture {
            server,
            model,
            adapter_dir,
        }
    })
}

fn url(path: &str) -> String {
    format!("http://{}{path}", fixture().server.addr())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build()
}

/// Status and body of any answer, 4xx and 5xx included.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

fn post_to(base: &str, path: &str, body: &str) -> (u16, String) {
    answer(
        agent()
            .post(&format!("{base}{path}"))
            .set("Content-Type", "application/json")
            .send_string(body),
    )
}

fn post(path: &str, body: &Value) -> (u16, String) {
    post_to(&url(""), path, &body.to_string())
}

/// A request that must succeed; its JSON.
fn ok(path: &str, body: &Value) -> Value {
    let (status, text) = post(path, body);
    assert_eq!(status, 200, "{body} → {text}");
    serde_json::from_str(&text).unwrap()
}

fn get(path: &str) -> (u16, String) {
    answer(agent().get(&url(path)).call())
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "base",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 12,
    });
    merge(&mut body, extra);
    body
}

fn merge(body: &mut Value, extra: Value) {
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            body[k] = v;
        }
    }
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// What the library generates for `prompt` greedily, with the adapter in `adapter` attached:
/// the server must produce exactly this.
/// The model as the library loads it, with the KV cache type the server's seats use (f16
/// by default: rounding that moves greedy paths, so the two must agree to compare).
fn library_model() -> Model {
    let f = fixture();
    let mut model = Model::load(&f.model, Precision::Fast).unwrap();
    model.kv_type = ServeConfig::new(&f.model, "base").kv_type();
    model
}

fn library_greedy(prompt: &str, max_tokens: usize, adapter: Option<&std::path::Path>) -> String {
    let mut model = library_model();
    if let Some(dir) = adapter {
        smolt_lora::attach_adapter(&mut model, dir).unwrap();
    }
    let tok = smolt_tokenizer::Tokenizer::from_gguf(model.gguf()).unwrap();
    let ids = tok.encode(prompt, tok.add_bos_token(), true);
    let opts = smolt_decode::GenerateOptions {
        max_new_tokens: max_tokens,
        stop_at_end_of_generation: false,
        ..Default::default()
    };
    let g = smolt_decode::generate(&model, &ids, &opts, |_| true).unwrap();
    tok.decode(&g.ids, true)
}

/// On a server of its own: greedy answers repeat exactly only when the batch around them does
/// too (a batched row's logits move in the last bits with its neighbours), and the other tests
/// send requests to the shared server at the same time.
#[test]
fn a_chat_completion_has_openai_shape_and_is_deterministic_when_greedy() {
    let server =
        Background::start(ServeConfig::new(&fixture().model, "base"), "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr());
    let ok = |path: &str, body: &Value| -> Value {
        let (status, text) = post_to(&base, path, &body.to_string());
        assert_eq!(status, 200, "{body} → {text}");
        serde_json::from_str(&text).unwrap()
    };
    let body = chat("Name a colour.", json!({}));
    let a = ok("/v1/chat/completions", &body);
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["model"], "base");
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &a["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty(), "{a}");
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &a["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    // The chat template wraps the 5-token question in turn markers.
    assert!(p > 8, "{u}");
    assert!((1..=12).contains(&c), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    let b = ok("/v1/chat/completions", &body);
    assert_eq!(b["choices"][0]["message"]["content"], text);
    server.stop().unwrap();
}

#[test]
fn a_completion_is_what_the_library_generates() {
    let prompt = "The capital of France is";
    let a = ok(
        "/v1/completions",
        &json!({"model": "base", "prompt": prompt, "max_tokens": 6, "temperature": 0,
                "ignore_eos": true}),
    );
    assert_eq!(a["object"], "text_completion");
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    assert_eq!(a["usage"]["completion_tokens"], 6);
    assert_eq!(a["choices"][0]["text"], library_greedy(prompt, 6, None));
}

/// On a server of its own: the test compares greedy answers across requests, which the other
/// tests' requests in the same batch could change in the last bits (and so at a near tie).
#[test]
fn stop_strings_end_the_text_before_them() {
    let server =
        Background::start(ServeConfig::new(&fixture().model, "base"), "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr());
    let post = |path: &str, body: &Value| post_to(&base, path, &body.to_string());
    let ok = |path: &str, body: &Value| -> Value {
        let (status, text) = post(path, body);
        assert_eq!(status, 200, "{body} → {text}");
        serde_json::from_str(&text).unwrap()
    };
    let prompt = "Here is a list of fruits: apple, banana,";
    let body = json!({"model": "base", "prompt": prompt, "max_tokens": 12, "temperature": 0,
                      "ignore_eos": true});
    let full = ok("/v1/completions", &body)["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    // A stop string taken from the middle of the free answer.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    assert!(chars.len() >= 6, "{full:?}");
    let (start, end) = (chars[chars.len() / 2].0, chars[chars.len() / 2 + 2].0);
    let stop = &full[start..end];
    let expected = &full[..full.find(stop).unwrap()];
    for stream in [false, true] {
        let mut b = body.clone();
        b["stop"] = json!(["@@never@@", stop]);
        b["stream"] = json!(stream);
        let (status, text) = post("/v1/completions", &b);
        assert_eq!(status, 200, "{text}");
        let (got, finish) = if stream {
            let chunks: Vec<Value> = sse_data(&text)
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let got: String = chunks
                .iter()
                .map(|c| c["choices"][0]["text"].as_str().unwrap())
                .collect();
            (
                got,
                chunks.last().unwrap()["choices"][0]["finish_reason"].clone(),
            )
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            (
                v["choices"][0]["text"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"].clone(),
            )
        };
        assert_eq!(
            got, expected,
            "stop {stop:?} in {full:?} (stream: {stream})"
        );
        assert_eq!(finish, "stop");
    }
    server.stop().unwrap();
}

fn city_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": false
    })
}

#[test]
fn json_schema_answers_parse_and_validate() {
    let schema = city_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (model, temperature) in [("base", 0.0), ("base", 0.8), ("rnd", 0.0)] {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "Which city is the capital of France? Answer in JSON."}],
            "max_tokens": 32,
            "temperature": temperature,
            "seed": 11,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "city", "schema": schema, "strict": true}},
        });
        let a = ok("/v1/chat/completions", &body);
        let text = a["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(a["choices"][0]["finish_reason"], "stop", "{text}");
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(validator.is_valid(&v), "{model} at {temperature}: {v}");
    }
}

#[test]
fn json_object_mode_answers_an_object() {
    let a = ok(
        "/v1/chat/completions",
        &chat(
            "Give a JSON object with one key.",
            json!({"max_tokens": 16, "response_format": {"type": "json_object"}}),
        ),
    );
    let text = a["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with('{'), "{text}");
    if a["choices"][0]["finish_reason"] == "stop" {
        let v: Value = serde_json::from_str(text).unwrap();
        assert!(v.is_object(), "{v}");
    }
}

/// Streamed chunks (`data:` lines) put together give the text of the same request unstreamed;
/// `[DONE]` is last, and the usage chunk comes when asked for. On a server of its own: the
/// two requests must meet the same batch around them to give the same text (a neighbour's
/// rows move the f16 KV rounding, and greedy paths with it).
#[test]
fn streams_reassemble_to_the_unstreamed_answer() {
    let server =
        Background::start(ServeConfig::new(&fixture().model, "base"), "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr());
    let post = |path: &str, body: &Value| post_to(&base, path, &body.to_string());
    let ok = |path: &str, body: &Value| -> Value {
        let (status, text) = post(path, body);
        assert_eq!(status, 200, "{body} → {text}");
        serde_json::from_str(&text).unwrap()
    };
    for extra in [
        json!({}),
        json!({"temperature": 0.9, "seed": 7}),
        json!({"max_tokens": 32, "response_format": {"type": "json_schema",
               "json_schema": {"name": "city", "schema": city_schema()}}}),
    ] {
        let body = chat("Tell me about Paris.", extra.clone());
        let whole = ok("/v1/chat/completions", &body);
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        let (status, text) = post("/v1/chat/completions", &streamed);
        assert_eq!(status, 200, "{text}");
        let data = sse_data(&text);
        assert_eq!(data.last().unwrap(), "[DONE]", "{text}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}")))
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            content, whole["choices"][0]["message"]["content"],
            "{extra}"
        );
        let finishes: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [&whole["choices"][0]["finish_reason"]]);
        // The usage chunk: no choices, the same counts as unstreamed; `usage: null` before it.
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"], whole["usage"]);
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null()));
    }
    // Without include_usage: no usage anywhere.
    let (status, text) = post(
        "/v1/completions",
        &json!({"model": "base", "prompt": "Once upon a time", "max_tokens": 4, "stream": true}),
    );
    assert_eq!(status, 200);
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        assert_eq!(c["object"], "text_completion");
        assert!(c.get("usage").is_none(), "{c}");
    }
    server.stop().unwrap();
}

#[test]
fn models_lists_the_base_and_each_adapter() {
    let (status, text) = get("/v1/models");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["base", "rnd"]);
    assert!(v["data"][0]["parent"].is_null());
    assert_eq!(v["data"][1]["parent"], "base");
    assert_eq!(
        v["data"][1]["root"],
        fixture().adapter_dir.display().to_string()
    );
    assert_eq!(v["data"][0]["max_model_len"], CONTEXT);
}

#[test]
fn health_says_ready_with_the_queue() {
    let (status, text) = get("/health");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["models"], json!(["base", "rnd"]));
    assert!(v["queue_depth"].is_u64() && v["running"].is_u64());
}

/// `model: "rnd"` is answered by the adapter: exactly what the library generates with it
/// attached, and not what the base model says.
#[test]
fn an_adapter_name_routes_to_the_adapter() {
    let f = fixture();
    let prompt = "The capital of France is";
    let body = |model: &str| {
        json!({"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0,
               "ignore_eos": true})
    };
    let adapted = ok("/v1/completions", &body("rnd"));
    let base = ok("/v1/completions", &body("base"));
    let adapted = adapted["choices"][0]["text"].as_str().unwrap();
    assert_eq!(adapted, library_greedy(prompt, 8, Some(&f.adapter_dir)));
    assert_ne!(adapted, base["choices"][0]["text"].as_str().unwrap());
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_requests_tokens_and_latency() {
    let before = get("/metrics").1;
    let a = ok(
        "/v1/completions",
        &json!({"model": "base", "prompt": "Hello", "max_tokens": 3}),
    );
    assert_eq!(
        post("/v1/completions", &json!({"model": "nope", "prompt": "x"})).0,
        404
    );
    let (status, after) = get("/metrics");
    assert_eq!(status, 200);
    let grew = |series: &str| metric(&after, series) - metric(&before, series);
    assert!(grew("smolt_serve_requests_total{endpoint=\"/v1/completions\",status=\"200\"}") >= 1.0);
    assert!(grew("smolt_serve_requests_total{endpoint=\"/v1/completions\",status=\"404\"}") >= 1.0);
    assert!(
        grew("smolt_serve_completion_tokens_total{model=\"base\"}")
            >= a["usage"]["completion_tokens"].as_f64().unwrap()
    );
    assert!(grew("smolt_serve_prompt_tokens_total{model=\"base\"}") >= 2.0);
    assert!(
        grew("smolt_serve_request_duration_seconds_count{endpoint=\"/v1/completions\"}") >= 2.0
    );
    assert!(after.contains("# TYPE smolt_serve_request_duration_seconds histogram"));
    assert!(after.contains("smolt_serve_queue_depth "));
}

/// What a bad request is, where it goes, the body, the status and words it must get back, and
/// the `param` named (`Some("")`: the `model_not_found` code instead).
type BadCase = (
    &'static str,
    &'static str,
    String,
    u16,
    &'static str,
    Option<&'static str>,
);

/// Every bad request gets the right 4xx and an OpenAI error body that says what is wrong.
#[test]
fn bad_requests_get_a_4xx_that_says_why() {
    let hi = json!([{"role": "user", "content": "hi"}]);
    let chat_with = |extra: Value| {
        let mut b = json!({"model": "base", "messages": hi, "max_tokens": 4});
        merge(&mut b, extra);
        b.to_string()
    };
    // About 1.5 tokens per repetition: well over the 1024-token context.
    let long_prompt = "the quick brown fox jumps over the lazy dog ".repeat(200);
    let huge = format!(
        "{{\"model\": \"base\", \"prompt\": \"{}\"}}",
        "a".repeat(BODY_LIMIT + 1)
    );
    let cases: Vec<BadCase> = vec![
        ("malformed JSON", "/v1/chat/completions", "{\"model\": ".into(), 400, "not valid JSON", None),
        ("body not an object", "/v1/chat/completions", "[1, 2]".into(), 400, "must be a JSON object", None),
        ("wrong type", "/v1/chat/completions", chat_with(json!({"max_tokens": "ten"})), 400, "must be an integer", Some("max_tokens")),
        ("missing messages", "/v1/chat/completions", json!({"model": "base"}).to_string(), 400, "required", Some("messages")),
        ("empty messages", "/v1/chat/completions", json!({"model": "base", "messages": []}).to_string(), 400, "empty", Some("messages")),
        ("bad role", "/v1/chat/completions", json!({"model": "base", "messages": [{"role": "wizard", "content": "x"}]}).to_string(), 400, "unknown role", Some("messages")),
        ("template refuses", "/v1/chat/completions", json!({"model": "base", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}).to_string(), 400, "alternate", Some("messages")),
        ("unknown model", "/v1/chat/completions", chat_with(json!({"model": "gpt-9"})), 404, "does not exist", Some("")),
        ("invalid schema", "/v1/chat/completions", chat_with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}})), 400, "not a valid JSON Schema", Some("response_format")),
        ("schema not enforceable", "/v1/chat/completions", chat_with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 5, "maximum": 1}}}})), 400, "invalid response_format", Some("response_format")),
        ("unsupported parameter", "/v1/chat/completions", chat_with(json!({"functions": [{"name": "f"}]})), 400, "not supported", Some("functions")),
        ("logprobs not a boolean", "/v1/chat/completions", chat_with(json!({"logprobs": 2})), 400, "true or false", Some("logprobs")),
        ("top_logprobs over 20", "/v1/chat/completions", chat_with(json!({"logprobs": true, "top_logprobs": 21})), 400, "between 0 and 20", Some("top_logprobs")),
        ("negative top_logprobs", "/v1/chat/completions", chat_with(json!({"logprobs": true, "top_logprobs": -1})), 400, "between 0 and 20", Some("top_logprobs")),
        ("top_logprobs without logprobs", "/v1/chat/completions", chat_with(json!({"top_logprobs": 2})), 400, "needs `logprobs`", Some("top_logprobs")),
        ("completion logprobs over 5", "/v1/completions", json!({"model": "base", "prompt": "x", "logprobs": 6}).to_string(), 400, "between 0 and 5", Some("logprobs")),
        ("completion logprobs not an integer", "/v1/completions", json!({"model": "base", "prompt": "x", "logprobs": true}).to_string(), 400, "an integer", Some("logprobs")),
        ("top_logprobs on completions", "/v1/completions", json!({"model": "base", "prompt": "x", "top_logprobs": 1}).to_string(), 400, "unrecognized", Some("top_logprobs")),
        ("unknown parameter", "/v1/chat/completions", chat_with(json!({"temprature": 0})), 400, "unrecognized", Some("temprature")),
        ("negative max_tokens", "/v1/chat/completions", chat_with(json!({"max_tokens": -5})), 400, "at least 1", Some("max_tokens")),
        ("max_tokens beyond the context", "/v1/chat/completions", chat_with(json!({"max_tokens": 5000})), 400, "maximum context length", Some("max_tokens")),
        ("prompt over the context", "/v1/completions", json!({"model": "base", "prompt": long_prompt}).to_string(), 400, "maximum context length", Some("prompt")),
        ("oversized body", "/v1/completions", huge, 413, "larger than", None),
        ("n over 16", "/v1/chat/completions", chat_with(json!({"stream": true, "n": 17})), 400, "between 1 and 16", Some("n")),
        ("n zero", "/v1/chat/completions", chat_with(json!({"n": 0})), 400, "between 1 and 16", Some("n")),
        ("n not an integer", "/v1/completions", json!({"model": "base", "prompt": "x", "n": "2"}).to_string(), 400, "an integer", Some("n")),
        ("best_of other than n", "/v1/completions", json!({"model": "base", "prompt": "x", "n": 2, "best_of": 1}).to_string(), 400, "must equal `n`", Some("best_of")),
        ("temperature out of range", "/v1/chat/completions", chat_with(json!({"temperature": 7})), 400, "between 0 and 2", Some("temperature")),
        ("stream_options without stream", "/v1/chat/completions", chat_with(json!({"stream_options": {"include_usage": true}})), 400, "only allowed", Some("stream_options")),
        ("missing prompt", "/v1/completions", json!({"model": "base"}).to_string(), 400, "required", Some("prompt")),
        ("too many stops", "/v1/completions", json!({"model": "base", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}).to_string(), 400, "at most 4", Some("stop")),
    ];
    assert!(cases.len() >= 12);
    for (what, path, body, status, words, param) in cases {
        let (got, text) = post_to(&url(""), path, &body);
        assert_eq!(got, status, "{what}: {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
        let err = &v["error"];
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{what}: {message}");
        assert!(err["type"].is_string(), "{what}: {v}");
        match param {
            Some("") => assert_eq!(err["code"], "model_not_found", "{what}"),
            Some(p) => assert_eq!(err["param"], p, "{what}: {v}"),
            None => assert!(err["param"].is_null(), "{what}: {v}"),
        }
    }
    // Routes and methods outside the API answer in the same error shape.
    let (status, text) = get("/v1/embeddings");
    assert_eq!(status, 404);
    assert!(text.contains("no route"), "{text}");
    let (status, text) = get("/v1/chat/completions");
    assert_eq!(status, 405);
    assert!(text.contains("does not take GET"), "{text}");
}

/// Waits until the server has counted more cancelled sequences than `before`.
fn wait_for_cancellation(before: f64) {
    let start = Instant::now();
    loop {
        let text = get("/metrics").1;
        if metric(&text, "smolt_serve_cancelled_total") > before {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the sequence was not cancelled:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Clients that go away stop their generation: the worker counts each cancelled long before
/// the 400 tokens it asked for. One test, one after the other, because no other test of the
/// shared server cancels anything: each count is this test's own.
#[test]
fn disconnected_clients_cancel_their_sequences() {
    a_disconnected_stream_cancels_its_sequence();
    a_client_that_times_out_cancels_its_sequence();
}

/// Hanging up mid-stream.
fn a_disconnected_stream_cancels_its_sequence() {
    use std::io::{BufRead, BufReader};
    let before = metric(&get("/metrics").1, "smolt_serve_cancelled_total");
    let body = json!({"model": "base", "prompt": "Count: 1, 2, 3,", "max_tokens": 400,
                      "ignore_eos": true, "temperature": 0, "stream": true});
    let response = agent()
        .post(&url("/v1/completions"))
        .send_string(&body.to_string())
        .unwrap();
    let mut reader = BufReader::new(response.into_reader());
    let mut line = String::new();
    // Read until the first piece of text, then hang up.
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
        if line.starts_with("data: {") {
            break;
        }
    }
    drop(reader);
    wait_for_cancellation(before);
}

/// Giving up on a whole answer: the request's future is dropped, and with it the sequence.
fn a_client_that_times_out_cancels_its_sequence() {
    let before = metric(&get("/metrics").1, "smolt_serve_cancelled_total");
    let body = json!({"model": "base", "prompt": "Count: 1, 2, 3,", "max_tokens": 400,
                      "ignore_eos": true, "temperature": 0});
    let impatient = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_millis(1500))
        .build();
    let r = impatient
        .post(&url("/v1/completions"))
        .send_string(&body.to_string());
    assert!(
        matches!(r, Err(ureq::Error::Transport(_))),
        "400 tokens came back within the timeout: {:?}",
        r.map(|r| r.status())
    );
    wait_for_cancellation(before);
}

/// A server of its own with one queue slot and an API key: the key is required on /v1/*, a
/// third request while one runs and one waits is answered 429 with Retry-After, and stopping
/// the server lets both accepted requests finish before it closes.
#[test]
fn queue_limits_keys_and_graceful_shutdown() {
    let mut config = ServeConfig::new(model_path(), "m");
    // One seat, one place in the queue: the second request waits, the third is refused.
    config.max_batch = 1;
    config.max_queue = 1;
    config.api_key = Some("sekret".into());
    config.max_model_len = Some(512);
    let server = Background::start(config, "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr());
    let call = {
        let base = base.clone();
        move |body: Value, key: Option<&str>| {
            let mut r = agent()
                .post(&format!("{base}/v1/completions"))
                .set("Content-Type", "application/json");
            if let Some(k) = key {
                r = r.set("Authorization", &format!("Bearer {k}"));
            }
            answer(r.send_string(&body.to_string()))
        }
    };
    let health = || -> Value {
        serde_json::from_str(&answer(agent().get(&format!("{base}/health")).call()).1).unwrap()
    };
    let short = json!({"model": "m", "prompt": "Hello", "max_tokens": 2});
    for key in [None, Some("wrong")] {
        let (status, text) = call(short.clone(), key);
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("invalid_api_key"), "{text}");
    }
    assert_eq!(health()["status"], "ok", "health needs no key");

    let long = json!({"model": "m", "prompt": "Count: 1, 2, 3,", "max_tokens": 96,
                      "ignore_eos": true, "temperature": 0});
    let wait_for = |what: &str, ok: &dyn Fn(&Value) -> bool| {
        let start = Instant::now();
        loop {
            let h = health();
            if ok(&h) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "never {what}: {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = {
        let (call, long) = (call.clone(), long.clone());
        std::thread::spawn(move || call(long, Some("sekret")))
    };
    wait_for("running", &|h| h["running"] == 1);
    let second = {
        let (call, short) = (call.clone(), short.clone());
        std::thread::spawn(move || call(short, Some("sekret")))
    };
    wait_for("queued", &|h| h["queue_depth"] == 1);
    let third = agent()
        .post(&format!("{base}/v1/completions"))
        .set("Authorization", "Bearer sekret")
        .send_string(&short.to_string());
    match third {
        Err(ureq::Error::Status(429, r)) => {
            assert_eq!(r.header("Retry-After"), Some("1"));
            let text = r.into_string().unwrap();
            assert!(text.contains("busy"), "{text}");
        }
        other => panic!("expected 429, got {:?}", other.map(|r| r.status())),
    }

    // Stop while the first runs and the second waits: both are answered in full.
    let addr = server.addr();
    server.stop().unwrap();
    let (status, text) = first.join().unwrap();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 96);
    let (status, text) = second.join().unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the server still accepts connections after stopping"
    );
}

/// Concurrent requests for the base and the adapter are decoded together: the engine's steps
/// carry several sequences at once, and each answer is what the library generates for that
/// sequence alone (greedy), the adapter's with the adapter. A batched row meets the kernels in
/// other groupings than a lone one, so its logits differ in the last bits (bounded in
/// smolt-model's real-model tests), which flips a near-tie now and then ("the skin" for "the
/// walls" after ten tokens): answers are held to the library's for their first words, and the
/// adapter's to differ from the base's.
#[test]
fn concurrent_requests_of_different_adapters_share_forward_passes() {
    let f = fixture();
    let before = get("/metrics").1;
    let prompts = [
        "The capital of France is",
        "One, two, three,",
        "My favourite colour is",
        "The capital of France is",
    ];
    let jobs: Vec<(&str, &str)> = prompts
        .iter()
        .flat_map(|p| [("base", *p), ("rnd", *p)])
        .collect();
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(model, prompt)| {
                s.spawn(move || {
                    let a = ok(
                        "/v1/completions",
                        &json!({"model": model, "prompt": prompt, "max_tokens": 12,
                                "temperature": 0, "ignore_eos": true}),
                    );
                    a["choices"][0]["text"].as_str().unwrap().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = get("/metrics").1;
    let grew = |series: &str| metric(&after, series) - metric(&before, series);
    let (steps, seqs) = (
        grew("smolt_serve_batch_steps_total"),
        grew("smolt_serve_batch_sequences_total"),
    );
    eprintln!("{} steps carried {} sequences", steps, seqs);
    // 8 requests × 12 tokens one at a time would take ≥ 96 steps of one sequence each.
    assert!(
        seqs / steps > 1.5,
        "{steps} steps for {seqs} sequence-steps: not batched"
    );
    for (k, ((model, prompt), got)) in jobs.iter().zip(&answers).enumerate() {
        let adapter = (*model == "rnd").then_some(f.adapter_dir.as_path());
        let alone = library_greedy(prompt, 12, adapter);
        let start = |s: &str| s.chars().take(6).collect::<String>();
        assert_eq!(start(got), start(&alone), "{model}: {got:?} vs {alone:?}");
        if adapter.is_some() {
            assert_ne!(
                got,
                &answers[k - 1],
                "{prompt}: the adapter changed nothing"
            );
        }
    }
}

/// Adapters come and go without a restart (vLLM's endpoints and bodies): a loaded adapter
/// answers as the same adapter given at start does, `/v1/models` lists it, unloading makes it
/// a 404 again; bad bodies, taken names, the base and missing folders get a 4xx that says why.
#[test]
fn adapters_load_and_unload_at_run_time() {
    let f = fixture();
    // A server of its own, so the other tests' model lists do not change under them.
    let config = ServeConfig::new(&f.model, "base");
    let server = Background::start(config, "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr());
    let post = |path: &str, body: Value| post_to(&base, path, &body.to_string());
    let prompt = "The capital of France is";
    let ask = |model: &str| {
        post(
            "/v1/completions",
            json!({"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0,
                   "ignore_eos": true}),
        )
    };
    assert_eq!(ask("late").0, 404);
    let dir = f.adapter_dir.display().to_string();
    let (status, text) = post(
        "/v1/load_lora_adapter",
        json!({"lora_name": "late", "lora_path": dir}),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = ask("late");
    assert_eq!(status, 200, "{text}");
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        got["choices"][0]["text"],
        library_greedy(prompt, 8, Some(&f.adapter_dir))
    );
    let (_, models) = answer(agent().get(&format!("{base}/v1/models")).call());
    assert!(models.contains("\"late\""), "{models}");

    let bad: [(Value, u16, &str); 6] = [
        (
            json!({"lora_name": "late", "lora_path": dir}),
            400,
            "already served",
        ),
        (json!({"lora_name": "x"}), 400, "lora_path"),
        (json!({"lora_path": dir}), 400, "lora_name"),
        (
            json!({"lora_name": 3, "lora_path": dir}),
            400,
            "must be a string",
        ),
        (
            json!({"lora_name": "x", "lora_path": "/nonexistent/adapter"}),
            400,
            "adapter",
        ),
        (
            json!({"lora_name": "base", "lora_path": dir}),
            400,
            "already served",
        ),
    ];
    for (body, want, words) in bad {
        let (status, text) = post("/v1/load_lora_adapter", body.clone());
        assert_eq!(status, want, "{body}: {text}");
        assert!(text.contains(words), "{body}: {text}");
    }
    let (status, text) = post_to(&base, "/v1/load_lora_adapter", "{not json");
    assert_eq!(status, 400, "{text}");

    let (status, text) = post("/v1/unload_lora_adapter", json!({"lora_name": "base"}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("base model"), "{text}");
    let (status, text) = post("/v1/unload_lora_adapter", json!({"lora_name": "late"}));
    assert_eq!(status, 200, "{text}");
    assert_eq!(ask("late").0, 404);
    let (status, text) = post("/v1/unload_lora_adapter", json!({"lora_name": "late"}));
    assert_eq!(status, 404, "{text}");
    server.stop().unwrap();
}

/// The log-softmax the library gives the first output token of `prompt` (the model's own
/// distribution: no constraint).
fn library_first_logprobs(prompt: &str) -> Vec<f32> {
    let model = library_model();
    let tok = smolt_tokenizer::Tokenizer::from_gguf(model.gguf()).unwrap();
    let ids = tok.encode(prompt, tok.add_bos_token(), true);
    let mut cache = model.new_cache();
    let logits = model
        .forward(&ids, &mut cache, smolt_model::Logits::Last)
        .unwrap();
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    logits.iter().map(|&l| l - lse).collect()
}

/// Legacy completions: `tokens` spell the text, `text_offset` says where each starts,
/// `token_logprobs` are the model's (the first one checked against the library's own
/// log-softmax), and each step's `top_logprobs` holds the `logprobs` best plus the chosen one.
#[test]
fn completion_logprobs_are_the_models_distribution() {
    let prompt = "The capital of France is";
    let a = ok(
        "/v1/completions",
        &json!({"model": "base", "prompt": prompt, "max_tokens": 6, "temperature": 0,
                "ignore_eos": true, "logprobs": 3}),
    );
    let choice = &a["choices"][0];
    let text = choice["text"].as_str().unwrap();
    let lp = &choice["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 6, "{lp}");
    assert_eq!(tokens.concat(), text, "{lp}");
    let offsets: Vec<usize> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap() as usize)
        .collect();
    let mut at = 0;
    for (t, &o) in tokens.iter().zip(&offsets) {
        assert_eq!(o, at, "{lp}");
        at += t.chars().count();
    }
    let library = library_first_logprobs(prompt);
    let best = library.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let first = lp["token_logprobs"][0].as_f64().unwrap() as f32;
    // A batched pass rounds like any prefill: the same numbers to within a few hundredths.
    assert!(
        (first - best).abs() < 0.05,
        "{first} vs the library's {best}"
    );
    for (k, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!((3..=4).contains(&top.len()), "{top:?}");
        let chosen = lp["token_logprobs"][k].as_f64().unwrap();
        assert!(chosen <= 0.0);
        // Greedy: the chosen token is the most likely.
        let max = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(top[tokens[k]].as_f64().unwrap(), chosen, "{top:?}");
        assert_eq!(chosen, max, "{top:?}");
    }
    // logprobs: 0 still gives each chosen token's.
    let a = ok(
        "/v1/completions",
        &json!({"model": "base", "prompt": prompt, "max_tokens": 2, "temperature": 0,
                "ignore_eos": true, "logprobs": 0}),
    );
    let top = &a["choices"][0]["logprobs"]["top_logprobs"][0];
    assert_eq!(top.as_object().unwrap().len(), 1, "{a}");
    // Not asked: null, as OpenAI answers.
    let a = ok(
        "/v1/completions",
        &json!({"model": "base", "prompt": prompt, "max_tokens": 2}),
    );
    assert!(a["choices"][0]["logprobs"].is_null(), "{a}");
}

/// Chat `logprobs.content`, unstreamed and streamed: one entry per output token, the bytes
/// spell the token, `top_logprobs` as many as asked, most likely first; under a schema, forced
/// tokens are certain and every token's alternatives are ones the grammar allowed.
#[test]
fn chat_logprobs_come_per_token_and_in_stream_chunks() {
    let entries = |content: &Value| -> Vec<Value> { content.as_array().unwrap().clone() };
    let check = |e: &Value, top: usize| {
        let token = e["token"].as_str().unwrap();
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        if let Ok(s) = std::str::from_utf8(&bytes) {
            assert_eq!(s, token, "{e}");
        } else {
            assert!(token.starts_with("bytes:"), "{e}");
        }
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0, "{e}");
        let alts = e["top_logprobs"].as_array().unwrap();
        assert!(alts.len() <= top, "{e}");
        for w in alts.windows(2) {
            assert!(w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64(), "{e}");
        }
        // Greedy: the chosen token is the first alternative.
        if top > 0 {
            assert_eq!(alts[0]["token"], e["token"], "{e}");
            assert_eq!(alts[0]["logprob"], e["logprob"], "{e}");
        }
    };
    let body = chat(
        "Name a colour.",
        json!({"logprobs": true, "top_logprobs": 2, "max_tokens": 8}),
    );
    let whole = ok("/v1/chat/completions", &body);
    let choice = &whole["choices"][0];
    let content = entries(&choice["logprobs"]["content"]);
    assert_eq!(
        content.len() as u64,
        whole["usage"]["completion_tokens"].as_u64().unwrap(),
        "{whole}"
    );
    for e in &content {
        check(e, 2);
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2, "{e}");
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, text) = post("/v1/chat/completions", &streamed);
    assert_eq!(status, 200, "{text}");
    let mut from_chunks = Vec::new();
    for d in sse_data(&text).iter().filter(|d| *d != "[DONE]") {
        let c: Value = serde_json::from_str(d).unwrap();
        if let Some(lp) = c["choices"][0]["logprobs"]["content"].as_array() {
            from_chunks.extend(lp.iter().cloned());
        }
    }
    let spelled = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["token"].as_str().unwrap().to_string())
            .collect()
    };
    // The same tokens and numbers, up to what a batched pass rounds differently (the other
    // tests share the server, and a pass over several rows quantizes activations as a prefill
    // does): a near tie may then go the other way, after which the two answers are different
    // texts. Measured: 0.13 on one token's logprob in a CI run on a loaded 2-core machine
    // (0.01 alone); 0.25 stays far below a wrong or shifted entry.
    assert_eq!(from_chunks.len(), content.len(), "{text}");
    for (a, b) in from_chunks.iter().zip(&content) {
        let (la, lb) = (
            a["logprob"].as_f64().unwrap(),
            b["logprob"].as_f64().unwrap(),
        );
        if a["token"] != b["token"] {
            let rival = b["top_logprobs"][1]["logprob"].as_f64().unwrap();
            assert_eq!(a["token"], b["top_logprobs"][1]["token"], "{a} vs {b}");
            assert!(lb - rival < 0.25, "not a near tie: {a} vs {b}");
            break;
        }
        assert!((la - lb).abs() < 0.25, "{a} vs {b}");
    }

    let constrained = chat(
        "Which city is the capital of France? Answer in JSON.",
        json!({"logprobs": true, "top_logprobs": 5, "max_tokens": 32,
               "response_format": {"type": "json_schema",
                                   "json_schema": {"name": "city", "schema": city_schema()}}}),
    );
    let a = ok("/v1/chat/completions", &constrained);
    let content = entries(&a["choices"][0]["logprobs"]["content"]);
    let text = a["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(spelled(&content).concat(), text, "{a}");
    for e in &content {
        check(e, 5);
    }
    // `{"city": "` opens every answer: the grammar forces all of it.
    let certain = content
        .iter()
        .filter(|e| e["logprob"].as_f64() == Some(0.0))
        .count();
    assert!(certain >= 2, "{a}");
}

/// `n` choices: each its own sequence, indexed 0..n, with usage summing them; streamed, every
/// chunk names its choice and each choice gets its finish reason.
#[test]
fn several_choices_per_request() {
    let body = json!({"model": "base", "prompt": "My favourite animal is", "max_tokens": 8,
                      "temperature": 1.0, "seed": 3, "n": 3, "logprobs": 0});
    let a = ok("/v1/completions", &body);
    let choices = a["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{a}");
    let mut total = 0;
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{a}");
        assert!(["stop", "length"].contains(&c["finish_reason"].as_str().unwrap()));
        total += c["logprobs"]["tokens"].as_array().unwrap().len() as u64;
    }
    assert_eq!(a["usage"]["completion_tokens"], total, "{a}");
    // Sampled with seeds of their own: three 8-token draws that all agree are (next to)
    // impossible at temperature 1.
    let texts: Vec<&str> = choices
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert!(texts[0] != texts[1] || texts[1] != texts[2], "{texts:?}");

    let streamed = chat(
        "Tell me a fact.",
        json!({"n": 2, "stream": true, "stream_options": {"include_usage": true},
               "temperature": 0.9, "seed": 5}),
    );
    let (status, text) = post("/v1/chat/completions", &streamed);
    assert_eq!(status, 200, "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut texts = [String::new(), String::new()];
    let mut finished = [0, 0];
    for c in &chunks[..chunks.len() - 1] {
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1, "{c}");
        let i = choices[0]["index"].as_u64().unwrap() as usize;
        if let Some(t) = choices[0]["delta"]["content"].as_str() {
            texts[i].push_str(t);
        }
        if !choices[0]["finish_reason"].is_null() {
            finished[i] += 1;
        }
    }
    assert_eq!(finished, [1, 1], "{text}");
    assert!(texts.iter().all(|t| !t.is_empty()), "{texts:?}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 2, "{usage}");
    assert!(chunks.last().unwrap()["choices"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// Two tools whose arguments are short by construction (enums, bounded strings), so that a
/// call always completes within the tests' token budget.
fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city", "unit"]
            }
        }},
        {"type": "function", "function": {
            "name": "get_time",
            "description": "The local time in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 12}},
                "required": ["city"]
            }
        }}
    ])
}

fn weather_request(choice: Value, extra: Value) -> Value {
    let mut body = json!({
        "model": "base",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": weather_tools(),
        "tool_choice": choice,
        "temperature": 0,
        "max_tokens": 128,
    });
    merge(&mut body, extra);
    body
}

/// Every call in `calls` (OpenAI's `tool_calls`) names one of `allowed` and its arguments, a
/// JSON string, validate against that tool's schema.
fn assert_valid_calls(calls: &Value, allowed: &[&str]) {
    let tools = weather_tools();
    let calls = calls.as_array().expect("tool_calls is an array");
    assert!(!calls.is_empty(), "no calls");
    for call in calls {
        assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
        assert_eq!(call["type"], "function", "{call}");
        let name = call["function"]["name"].as_str().unwrap();
        assert!(allowed.contains(&name), "{name} is not among {allowed:?}");
        let tool = tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == name)
            .unwrap();
        let schema = &tool["function"]["parameters"];
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{call}: {e}"));
        assert!(
            jsonschema::validator_for(schema).unwrap().is_valid(&args),
            "{args} against {schema}"
        );
    }
}

#[test]
fn tool_choice_required_and_named_answer_valid_calls() {
    // With parallel calls allowed the 270M model keeps adding calls while the list may grow:
    // the constraint closes it at the bound (`max_parallel_tool_calls`, default
    // DEFAULT_MAX_PARALLEL_CALLS = 4), so it ends as calls, not cut by max_tokens.
    // `a_call_list_cut_short_is_text` cuts a list with max_tokens.
    for (choice, allowed, parallel) in [
        (json!("required"), vec!["get_weather", "get_time"], false),
        (json!("required"), vec!["get_weather", "get_time"], true),
        (
            json!({"type": "function", "function": {"name": "get_time"}}),
            vec!["get_time"],
            false,
        ),
    ] {
        let body = weather_request(choice.clone(), json!({"parallel_tool_calls": parallel}));
        let a = ok("/v1/chat/completions", &body);
        let c = &a["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls", "{choice}: {a}");
        assert!(c["message"]["content"].is_null(), "{a}");
        assert_eq!(c["message"]["role"], "assistant");
        assert_valid_calls(&c["message"]["tool_calls"], &allowed);
        let n = c["message"]["tool_calls"].as_array().unwrap().len();
        let most = if parallel {
            smolt_constrain::DEFAULT_MAX_PARALLEL_CALLS
        } else {
            1
        };
        assert!(n <= most, "{n} calls, at most {most} allowed: {a}");
    }
}

/// Parallel calls are a JSON array in Gemma's format; cut by `max_tokens`, it is not a call.
#[test]
fn a_call_list_cut_short_is_text() {
    let a = ok(
        "/v1/chat/completions",
        &weather_request(json!("required"), json!({"max_tokens": 12})),
    );
    let c = &a["choices"][0];
    assert_eq!(c["finish_reason"], "length", "{a}");
    assert!(c["message"].get("tool_calls").is_none(), "{a}");
    let text = c["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("[{\"name\""), "{text}");
}

#[test]
fn tool_choice_none_and_auto() {
    let a = ok(
        "/v1/chat/completions",
        &weather_request(json!("none"), json!({"max_tokens": 12})),
    );
    let c = &a["choices"][0];
    assert!(c["message"].get("tool_calls").is_none(), "{a}");
    assert!(c["message"]["content"].is_string(), "{a}");
    assert_ne!(c["finish_reason"], "tool_calls", "{a}");
    for seed in 0..3 {
        let body = weather_request(
            json!("auto"),
            json!({"temperature": 1.0, "seed": seed, "parallel_tool_calls": false}),
        );
        let a = ok("/v1/chat/completions", &body);
        let c = &a["choices"][0];
        match c["message"].get("tool_calls") {
            Some(calls) => {
                assert_eq!(c["finish_reason"], "tool_calls", "{a}");
                assert!(c["message"]["content"].is_null(), "{a}");
                assert_valid_calls(calls, &["get_weather", "get_time"]);
            }
            None => {
                let text = c["message"]["content"].as_str().unwrap();
                assert_ne!(c["finish_reason"], "tool_calls", "{a}");
                // `auto` text must not look like a call: the constraint keeps it apart.
                assert!(!text.trim_start().starts_with('{'), "{text}");
            }
        }
    }
}

#[test]
fn streamed_tool_calls_come_whole_in_a_delta() {
    let body = weather_request(
        json!("required"),
        json!({"stream": true, "parallel_tool_calls": false}),
    );
    let (status, text) = post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut calls = Vec::new();
    let mut finish = None;
    for c in &chunks {
        let choice = &c["choices"][0];
        if let Some(list) = choice["delta"].get("tool_calls") {
            for (k, call) in list.as_array().unwrap().iter().enumerate() {
                assert_eq!(call["index"], k, "{call}");
                calls.push(call.clone());
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"), "{text}");
    assert_valid_calls(&Value::Array(calls), &["get_weather", "get_time"]);
    // The same request unstreamed calls the same functions with the same arguments.
    let mut plain = body.clone();
    plain["stream"] = json!(false);
    let a = ok("/v1/chat/completions", &plain);
    let names = |calls: &Value| -> Vec<(String, String)> {
        calls
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let f = &c["function"];
                (f["name"].to_string(), f["arguments"].to_string())
            })
            .collect()
    };
    let streamed: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
        .flat_map(|l| l.as_array().unwrap().clone())
        .collect();
    assert_eq!(
        names(&Value::Array(streamed)),
        names(&a["choices"][0]["message"]["tool_calls"])
    );
}

#[test]
fn a_conversation_with_calls_and_results_renders_and_answers() {
    let body = json!({
        "model": "base",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"}
        ],
        "tools": weather_tools(),
        "tool_choice": "none",
        "temperature": 0,
        "max_tokens": 8,
    });
    let a = ok("/v1/chat/completions", &body);
    assert!(a["choices"][0]["message"]["content"].is_string(), "{a}");
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 60, "{a}");
}

#[test]
fn bad_tool_requests_get_a_400_naming_the_field() {
    let named = |name: &str| json!({"type": "function", "function": {"name": name}});
    let f = |name: &str| json!({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}});
    let cases = [
        (
            "tools not a list",
            json!({"tools": {"type": "function"}}),
            "tools",
        ),
        (
            "tool without a name",
            json!({"tools": [{"type": "function", "function": {}}]}),
            "tools",
        ),
        (
            "bad function name",
            json!({"tools": [f("get weather!")]}),
            "tools",
        ),
        (
            "duplicate names",
            json!({"tools": [f("a"), f("a")]}),
            "tools",
        ),
        (
            "parameters not an object schema",
            json!({"tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "array"}}}]}),
            "tools",
        ),
        (
            "invalid parameters schema",
            json!({"tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}}}}]}),
            "tools",
        ),
        (
            "unknown tool_choice",
            json!({"tools": [f("a")], "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            "tool_choice names a missing tool",
            json!({"tools": [f("a")], "tool_choice": named("b")}),
            "tool_choice",
        ),
        (
            "required without tools",
            json!({"tool_choice": "required"}),
            "tool_choice",
        ),
        (
            "parallel_tool_calls not a boolean",
            json!({"tools": [f("a")], "parallel_tool_calls": "yes"}),
            "parallel_tool_calls",
        ),
        (
            "max_parallel_tool_calls zero",
            json!({"tools": [f("a")], "max_parallel_tool_calls": 0}),
            "max_parallel_tool_calls",
        ),
        (
            "max_parallel_tool_calls negative",
            json!({"tools": [f("a")], "max_parallel_tool_calls": -2}),
            "max_parallel_tool_calls",
        ),
        (
            "max_parallel_tool_calls over the limit",
            json!({"tools": [f("a")], "max_parallel_tool_calls": 65}),
            "max_parallel_tool_calls",
        ),
        (
            "max_parallel_tool_calls not an integer",
            json!({"tools": [f("a")], "max_parallel_tool_calls": "3"}),
            "max_parallel_tool_calls",
        ),
        (
            "tools with response_format",
            json!({"tools": [f("a")], "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            "a tool message without its call id",
            json!({"tools": [f("a")], "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}),
            "messages",
        ),
    ];
    for (what, extra, param) in cases {
        let mut body = json!({"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
        merge(&mut body, extra);
        let (status, text) = post("/v1/chat/completions", &body);
        assert_eq!(status, 400, "{what}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(v["error"]["param"], param, "{what}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{what}: {v}");
        assert!(
            !v["error"]["message"].as_str().unwrap().is_empty(),
            "{what}"
        );
    }
}

/// Requests that share a long system prompt: with the prefix cache the later ones start
/// from the keys and values the first computed (`smolt_serve_prefix_cache_reused_tokens_total`
/// counts them) and answer exactly as a server without the cache does.
#[test]
fn a_shared_system_prompt_is_computed_once_and_answers_stay_the_same() {
    let system = "You are the support desk of a bakery chain. Answer in one short, polite \
                  sentence. Opening hours are eight to six on weekdays and nine to one on \
                  Saturdays; every shop is closed on Sundays and public holidays. Cakes \
                  ordered before noon are ready the next day; wedding cakes need two weeks. \
                  Gluten-free bread is baked on Tuesdays and Fridays only. Deliveries cost \
                  five euros inside the city and are free above fifty euros. Refunds are \
                  given within seven days with the receipt. Never invent products or prices \
                  that are not listed here, and suggest calling the shop when unsure.";
    let questions = [
        "When are you open on Saturday?",
        "Can I get gluten-free bread on Monday?",
        "How much is delivery for a forty euro order?",
    ];
    let metric = |base: &str, name: &str| -> u64 {
        let (_, text) = answer(agent().get(&format!("{base}/metrics")).call());
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    let mut answers: Vec<Vec<String>> = Vec::new();
    for cache_bytes in [0, smolt_serve::DEFAULT_PREFIX_CACHE_BYTES] {
        let mut config = ServeConfig::new(model_path(), "base");
        config.prefix_cache_bytes = cache_bytes;
        config.max_model_len = Some(CONTEXT);
        let server = Background::start(config, "127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.addr());
        let start = Instant::now();
        let texts: Vec<String> = questions
            .iter()
            .map(|q| {
                let body = json!({
                    "model": "base",
                    "messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": q}],
                    "temperature": 0,
                    "max_tokens": 12,
                });
                let (status, text) = post_to(&base, "/v1/chat/completions", &body.to_string());
                assert_eq!(status, 200, "{text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let reused = metric(&base, "smolt_serve_prefix_cache_reused_tokens_total");
        let hits = metric(&base, "smolt_serve_prefix_cache_hits_total");
        eprintln!(
            "prefix cache {cache_bytes} bytes: {} requests in {:?}, {hits} hits, \
             {reused} prompt tokens reused",
            questions.len(),
            start.elapsed()
        );
        if cache_bytes == 0 {
            assert_eq!((hits, reused), (0, 0));
        } else {
            // Every later prompt shares at least the first 64-token block (the system prompt
            // is about 140 tokens; the last 32 of a prompt are always fed).
            assert_eq!(hits, questions.len() as u64 - 1);
            assert!(reused >= hits * 64, "{reused} tokens reused");
            assert!(metric(&base, "smolt_serve_prefix_cache_bytes") > 0);
        }
        server.stop().unwrap();
        answers.push(texts);
    }
    assert_eq!(answers[0], answers[1]);
}
