//! A fake OpenAI-compatible endpoint for tests: an axum server on a free port whose every
//! answer a test scripts — a completion, an error status with or without `Retry-After`, a
//! delay, or a connection dropped mid-body — and which counts what it was asked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// What the fake answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A completion whose message content is this text.
    Answer(String),
    /// This status, with this body and maybe a `Retry-After` header.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// This reply, after a wait.
    After(Duration, Box<Reply>),
    /// Headers of a 200, then the connection dies before the body ends.
    Drop,
}

/// One request as the script sees it.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The request body.
    pub body: Value,
    /// 0-based count of requests before this one.
    pub n: usize,
    /// The last message's content.
    pub prompt: String,
    /// How many earlier requests had the same prompt (whatever their seed).
    pub prompt_seen: usize,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

type Script = dyn Fn(&Hit) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    hits: AtomicUsize,
    seen: Mutex<HashMap<String, usize>>,
    bodies: Mutex<Vec<Value>>,
}

/// A running fake; it stops when dropped.
pub struct FakeTeacher {
    url: String,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Tokens counted per request in `usage`: prompt = the prompt's characters, completion = the
/// answer's characters, so tests can check the sums.
pub fn usage_of(prompt: &str, answer: &str) -> Value {
    json!({
        "prompt_tokens": prompt.chars().count(),
        "completion_tokens": answer.chars().count(),
        "total_tokens": prompt.chars().count() + answer.chars().count(),
    })
}

impl FakeTeacher {
    /// Starts a fake on 127.0.0.1 with a free port, answering as `script` says.
    pub fn start(script: impl Fn(&Hit) -> Reply + Send + Sync + 'static) -> FakeTeacher {
        let shared = Arc::new(Shared {
            script: Box::new(script),
            hits: AtomicUsize::new(0),
            seen: Mutex::new(HashMap::new()),
            bodies: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .route(
                "/v1/models",
                axum::routing::get(|| async {
                    axum::Json(json!({"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]}))
                }),
            )
            .with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTeacher {
            url,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The server root, as a user gives `--teacher`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Every request body received, in order of arrival.
    pub fn bodies(&self) -> Vec<Value> {
        self.shared.bodies.lock().unwrap().clone()
    }
}

impl Drop for FakeTeacher {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Requests a script keeps waiting must not hold the test up.
            rt.shutdown_background();
        }
    }
}

async fn complete(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")).into_response(),
    };
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let n = shared.hits.fetch_add(1, Ordering::SeqCst);
    let prompt_seen = {
        let mut seen = shared.seen.lock().unwrap();
        let c = seen.entry(prompt.clone()).or_insert(0);
        *c += 1;
        *c - 1
    };
    shared.bodies.lock().unwrap().push(body.clone());
    let hit = Hit {
        body,
        n,
        prompt,
        prompt_seen,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let mut reply = (shared.script)(&hit);
    while let Reply::After(d, next) = reply {
        tokio::time::sleep(d).await;
        reply = *next;
    }
    match reply {
        Reply::Answer(content) => axum::Json(json!({
            "id": format!("fake-{n}"),
            "object": "chat.completion",
            "model": hit.body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"
            }],
            "usage": usage_of(&hit.prompt, &content),
        }))
        .into_response(),
        Reply::Status {
            code,
            retry_after,
            body,
        } => {
            let mut r = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            )
                .into_response();
            if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        Reply::Drop => {
            let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                Ok("{\"choices\": ["),
                Err(std::io::Error::other("the fake drops the connection")),
            ];
            let mut r = Body::from_stream(futures_util::stream::iter(chunks)).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        Reply::After(..) => unreachable!("waits are taken above"),
    }
}
