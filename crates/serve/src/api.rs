//! The HTTP layer: routes, the API key, metrics per request, and the OpenAI response shapes.
//! Requests are checked completely here (fields, model, prompt length, schema) before they
//! are queued, so the worker only ever sees work it can do, and a bad request costs no queue
//! slot.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use smolt_constrain::{ConstraintSpec, ToolCallSpec, ToolOutput};
use smolt_decode::{GenerateOptions, SamplingParams};
use smolt_tokenizer::Tokenizer;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::logprobs::{self, TextOffsets, TokenLogprob};
use crate::metrics::Metrics;
use crate::models::{AdapterError, Models, ServedModel};
use crate::request::{self, Endpoint, Format, Input, Request};
use crate::scheduler::{Event, FinishReason, Job, Refused, Scheduler};

/// What every handler shares.
pub struct AppState {
    pub config: ServeConfig,
    pub models: Arc<Models>,
    pub scheduler: Scheduler,
    pub metrics: Arc<Metrics>,
    /// Cleared when shutdown begins: `/health` then says so.
    pub accepting: AtomicBool,
    /// Numbers response ids.
    next_id: AtomicU64,
    /// The client of `config.fallback`, when routing is on.
    fallback: Option<Arc<smolt_teacher::Client>>,
}

impl AppState {
    pub fn new(config: ServeConfig, models: Arc<Models>) -> std::io::Result<AppState> {
        let metrics = Arc::new(Metrics::default());
        let scheduler = Scheduler::start(
            Arc::clone(&models),
            Arc::clone(&metrics),
            config.max_queue,
            config.max_batch,
            config.prefix_cache_bytes,
            config.kv_type(),
        )?;
        let fallback = match &config.fallback {
            None => None,
            Some(f) => Some(Arc::new(
                smolt_teacher::Client::new(smolt_teacher::ClientConfig {
                    api_key: f.api_key.clone(),
                    timeout: f.timeout,
                    max_retries: 1,
                    ..smolt_teacher::ClientConfig::new(&f.url)
                })
                .map_err(std::io::Error::other)?,
            )),
        };
        Ok(AppState {
            config,
            models,
            scheduler,
            metrics,
            accepting: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
            fallback,
        })
    }
}

type App = Arc<AppState>;

/// Every route, the body limit, and the middleware that checks the key and counts requests.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/load_lora_adapter", post(load_lora_adapter))
        .route("/v1/unload_lora_adapter", post(unload_lora_adapter))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

/// Checks the API key on `/v1/*` and records each answer in the metrics.
async fn guard(State(app): State<App>, req: axum::extract::Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let response = match authorized(&app.config, req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    app.metrics
        .record_request(&endpoint, response.status().as_u16(), start.elapsed());
    response
}

fn authorized(config: &ServeConfig, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &config.api_key else {
        return Ok(());
    };
    // Liveness and metrics stay open for probes and scrapers.
    if !uri.path().starts_with("/v1/") {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        return Ok(());
    }
    Err(ApiError::with_status(
        StatusCode::UNAUTHORIZED,
        "a valid API key is required: send `Authorization: Bearer <key>`",
    )
    .code("invalid_api_key"))
}

/// Compares without stopping at the first difference, so timing does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(app): State<App>) -> Response {
    let accepting = app.accepting.load(Ordering::SeqCst);
    let body = json!({
        "status": if accepting { "ok" } else { "shutting_down" },
        "models": app.models.served().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        "queue_depth": app.metrics.queue_depth.load(Ordering::SeqCst),
        "running": app.metrics.running.load(Ordering::SeqCst),
        "max_queue": app.config.max_queue,
        "max_batch": app.config.max_batch,
    });
    let status = if accepting {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// The base model and each adapter, as vLLM lists LoRA adapters: an adapter's `parent` is the
/// base model and its `root` the folder it was loaded from.
async fn list_models(State(app): State<App>) -> Json<Value> {
    let m = &app.models;
    let served = m.served();
    let base = &served[0].id;
    let data: Vec<Value> = served
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "object": "model",
                "created": m.created,
                "owned_by": "smolt",
                "root": match &s.adapter {
                    Some(dir) => dir.display().to_string(),
                    None => app.config.model.display().to_string(),
                },
                "parent": s.adapter.as_ref().map(|_| base),
                "max_model_len": m.context,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}: the API is GET /health, GET /metrics, GET /v1/models, \
             POST /v1/chat/completions, POST /v1/completions",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

async fn chat_completions(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    complete(app, Endpoint::Chat, body).await
}

async fn completions(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    complete(app, Endpoint::Completion, body).await
}

/// `{"lora_name": NAME, "lora_path": DIR}` (vLLM's body): the two strings, or a 400 naming
/// what is wrong.
fn adapter_body(
    app: &AppState,
    body: Result<Bytes, BytesRejection>,
    need_path: bool,
) -> Result<(String, Option<String>), ApiError> {
    let body = body.map_err(|e| body_error(&app.config, e))?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::with_status(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let field = |k: &str| -> Result<Option<String>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::field(k, format!("`{k}` must be a string"))),
        }
    };
    if !v.is_object() {
        return Err(ApiError::with_status(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object".to_string(),
        ));
    }
    let name = field("lora_name")?
        .ok_or_else(|| ApiError::field("lora_name", "`lora_name` is required".to_string()))?;
    let path = field("lora_path")?;
    if need_path && path.is_none() {
        return Err(ApiError::field(
            "lora_path",
            "`lora_path` is required: the adapter's folder on the server".to_string(),
        ));
    }
    Ok((name, path))
}

fn adapter_error(e: AdapterError, param: &str) -> ApiError {
    match e {
        AdapterError::NotFound(m) => {
            ApiError::with_status(StatusCode::NOT_FOUND, m).code("model_not_found")
        }
        AdapterError::Conflict(m) => ApiError::field(param, m),
        AdapterError::Invalid(m) => ApiError::field("lora_path", m),
    }
}

/// `POST /v1/load_lora_adapter`: serve the adapter in `lora_path` as the model `lora_name`,
/// without a restart.
async fn load_lora_adapter(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (name, path) = adapter_body(&app, body, true)?;
    let path = path.unwrap_or_default();
    let models = Arc::clone(&app.models);
    let n = name.clone();
    tokio::task::spawn_blocking(move || models.load_adapter(&n, std::path::Path::new(&path)))
        .await
        .map_err(|e| {
            ApiError::with_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("loading the adapter failed: {e}"),
            )
        })?
        .map_err(|e| adapter_error(e, "lora_name"))?;
    Ok((
        StatusCode::OK,
        format!("Success: LoRA adapter '{name}' added successfully."),
    )
        .into_response())
}

/// `POST /v1/unload_lora_adapter`: stop serving `lora_name`; its running requests finish.
async fn unload_lora_adapter(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (name, _) = adapter_body(&app, body, false)?;
    app.models
        .unload_adapter(&name)
        .map_err(|e| adapter_error(e, "lora_name"))?;
    Ok((
        StatusCode::OK,
        format!("Success: LoRA adapter '{name}' removed successfully."),
    )
        .into_response())
}

/// Parse, check, queue, answer.
async fn complete(
    app: App,
    endpoint: Endpoint,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| body_error(&app.config, e))?;
    let req = request::parse(endpoint, &body)?;
    let served = app.models.find(&req.model).ok_or_else(|| {
        ApiError::with_status(
            StatusCode::NOT_FOUND,
            format!(
                "the model `{}` does not exist; this server has {} (GET /v1/models)",
                req.model,
                app.models
                    .served()
                    .iter()
                    .map(|m| format!("`{}`", m.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .code("model_not_found")
    })?;
    // Rendering, tokenizing and compiling a schema take milliseconds (a long prompt, a big
    // schema): off the async threads.
    let models = Arc::clone(&app.models);
    let r = req.clone();
    let target = Arc::clone(&served);
    let prepared = tokio::task::spawn_blocking(move || prepare(&models, &target, &r))
        .await
        .map_err(|e| {
            ApiError::with_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("preparing the request failed: {e}"),
            )
        })??;
    let (tx, rx) = unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let prompt_tokens = prepared.prompt.len();
    let constraint = prepared.constraint.map(Arc::new);
    let tools = prepared.tools.map(Arc::new);
    // JSON answers carry each field's confidence (and may be routed by it).
    let json_answer = matches!(req.format, Format::JsonSchema(_) | Format::JsonObject);
    let jobs = (0..req.n)
        .map(|choice| {
            let mut opts = prepared.opts.clone();
            // Each choice its own random stream; with a seed, choice 0 is the answer the
            // same request with n = 1 gets.
            opts.sampling.seed = match req.seed {
                Some(seed) => seed.wrapping_add(choice as u64),
                None => fresh_seed(),
            };
            Job {
                model: Arc::clone(&served),
                prompt: prepared.prompt.clone(),
                opts,
                constraint: constraint.clone(),
                stop: req.stop.clone(),
                cancel: Arc::clone(&cancel),
                logprobs: req.logprobs,
                choice,
                events: tx.clone(),
                confidence: json_answer,
            }
        })
        .collect();
    // Only the jobs hold senders now: the stream ends if the worker drops them all.
    drop(tx);
    app.scheduler.submit(jobs).map_err(|e| match e {
        Refused::Full => ApiError::with_status(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the server is busy: {} requests are already waiting; retry shortly",
                app.config.max_queue
            ),
        )
        .retry_after(1),
        Refused::Closed => ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
        .retry_after(5),
    })?;
    let guard = CancelOnDrop(cancel);
    let meta = Meta {
        id: format!(
            "{}-{}",
            match endpoint {
                Endpoint::Chat => "chatcmpl",
                Endpoint::Completion => "cmpl",
            },
            app.next_id.fetch_add(1, Ordering::Relaxed)
        ),
        created: now(),
        model: req.model.clone(),
        endpoint,
        n: req.n,
        tok: req.logprobs.map(|_| Arc::clone(&app.models.tokenizer)),
        tools,
    };
    if req.stream {
        return Ok(stream(meta, rx, guard, req.include_usage).into_response());
    }
    let (mut local, least) = collect(meta, rx, guard, prompt_tokens).await?;
    match (&app.fallback, &app.config.fallback) {
        (Some(client), Some(f)) if json_answer => {
            if least >= f.min_confidence {
                app.metrics.answered_local.fetch_add(1, Ordering::Relaxed);
                local["answered_by"] = json!("local");
                return Ok(Json(local).into_response());
            }
            route(&app, Arc::clone(client), f, &body, local, least).await
        }
        _ => Ok(Json(local).into_response()),
    }
}

/// Asks the fallback the same request (its `model` replaced) and answers with its response,
/// marked `"answered_by": "fallback"` with this model's `"local_confidence"`. If the fallback
/// fails, the local answer goes out, marked `"answered_by": "local"` with the reason in
/// `"fallback_error"`: the client still gets a valid answer, never a 5xx for another server's
/// trouble.
async fn route(
    app: &App,
    client: Arc<smolt_teacher::Client>,
    f: &crate::config::Fallback,
    body: &Bytes,
    mut local: Value,
    least: f64,
) -> Result<Response, ApiError> {
    let mut forwarded: Value = serde_json::from_slice(body).unwrap_or_default();
    forwarded["model"] = json!(f.model);
    let asked = tokio::task::spawn_blocking(move || {
        let mut stats = smolt_teacher::TransportStats::default();
        client.post(&forwarded, &mut stats)
    })
    .await;
    let least = (least * 1e4).round() / 1e4;
    match asked {
        Ok(Ok(mut answer)) if answer.is_object() => {
            app.metrics
                .answered_fallback
                .fetch_add(1, Ordering::Relaxed);
            answer["answered_by"] = json!("fallback");
            answer["local_confidence"] = json!(least);
            Ok(Json(answer).into_response())
        }
        other => {
            let why = match other {
                Ok(Ok(_)) => "the fallback's response is not a JSON object".to_string(),
                Ok(Err(e)) => format!("{e:?}"),
                Err(e) => format!("the fallback request failed: {e}"),
            };
            app.metrics.fallback_errors.fetch_add(1, Ordering::Relaxed);
            app.metrics.answered_local.fetch_add(1, Ordering::Relaxed);
            local["answered_by"] = json!("local");
            local["local_confidence"] = json!(least);
            local["fallback_error"] = json!(why);
            Ok(Json(local).into_response())
        }
    }
}

fn body_error(config: &ServeConfig, e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server's limit of {} bytes",
                config.max_body_bytes
            ),
        )
    } else {
        ApiError::with_status(
            e.status(),
            format!("cannot read the body: {}", e.body_text()),
        )
    }
}

/// A request ready for the worker.
struct Prepared {
    prompt: Vec<u32>,
    opts: GenerateOptions,
    constraint: Option<smolt_constrain::Constraint>,
    /// With tools: the spec (in the model's call syntax) that reads the answers back.
    tools: Option<ToolCallSpec>,
}

/// Renders and tokenizes the prompt, checks it and `max_tokens` against the context, and
/// compiles the response format or the tool calls' constraint.
fn prepare(models: &Models, served: &ServedModel, req: &Request) -> Result<Prepared, ApiError> {
    let tok = &models.tokenizer;
    let tools = match &req.tools {
        None => None,
        Some(spec) => Some(
            spec.clone()
                .with_syntax(served.chat.call_syntax())
                .map_err(|e| ApiError::field("tools", e.to_string()))?,
        ),
    };
    let prompt = match &req.input {
        Input::Messages(messages) => {
            let text = served
                .chat
                .prompt_with_tools(messages, tools.as_ref())
                .map_err(|e| ApiError::field("messages", e.to_string()))?;
            // The rendering leaves BOS to the encoder, as training does.
            tok.encode(&text, true, true)
        }
        Input::Prompt(text) => tok.encode(text, tok.add_bos_token(), true),
    };
    let (what, param) = match req.endpoint {
        Endpoint::Chat => ("messages", "messages"),
        Endpoint::Completion => ("prompt", "prompt"),
    };
    if prompt.is_empty() {
        return Err(ApiError::field(param, format!("the {what} is empty")));
    }
    let context = models.context;
    if prompt.len() >= context {
        return Err(ApiError::field(
            param,
            format!(
                "this model's maximum context length is {context} tokens, and the {what} \
                 alone is {} tokens: shorten it",
                prompt.len()
            ),
        )
        .code("context_length_exceeded"));
    }
    let room = context - prompt.len();
    let max_new_tokens = match req.max_tokens {
        None => room,
        Some(m) if m <= room => m,
        Some(m) => {
            return Err(ApiError::field(
                "max_tokens",
                format!(
                    "this model's maximum context length is {context} tokens; the {what} is \
                     {} tokens, which leaves room for {room} new tokens, but max_tokens is {m}",
                    prompt.len()
                ),
            )
            .code("context_length_exceeded"))
        }
    };
    let constraint = match &req.format {
        // A text-only answer (`tool_choice: "none"`) needs no constraint.
        Format::Text if tools.as_ref().is_some_and(ToolCallSpec::allows_calls) => {
            let spec = ConstraintSpec::ToolCalls(tools.clone().expect("checked above"));
            Some(
                served
                    .engine
                    .compile(&spec)
                    .map_err(|e| ApiError::field("tools", format!("invalid tools: {e}")))?,
            )
        }
        Format::Text => None,
        format => {
            let spec = match format {
                Format::JsonSchema(schema) => ConstraintSpec::JsonSchema(schema.clone()),
                // OpenAI's JSON mode: an object, not any JSON value.
                _ => ConstraintSpec::JsonSchema(json!({"type": "object"})),
            };
            let c = served.engine.compile(&spec).map_err(|e| {
                ApiError::field("response_format", format!("invalid response_format: {e}"))
            })?;
            Some(c)
        }
    };
    let opts = GenerateOptions {
        max_new_tokens,
        sampling: SamplingParams {
            temperature: req.temperature,
            top_k: req.top_k,
            top_p: req.top_p,
            // Each choice gets its own.
            seed: 0,
        },
        stop_at_end_of_generation: !req.ignore_eos,
        stop_tokens: Vec::new(),
        // The streaming source reports each token as it is fed; drafts would be fed and
        // taken back.
        draft_tokens: 0,
    };
    Ok(Prepared {
        prompt,
        opts,
        constraint,
        tools,
    })
}

/// A seed for a request that gave none: sampled answers differ from request to request, as
/// OpenAI's do.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Tells the worker to stop when the response is dropped: the client went away before the
/// answer was complete (or the answer is complete, when it no longer matters).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What every response object repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    /// Choices asked for.
    n: usize,
    /// To spell tokens, present when the request asked for log-probabilities.
    tok: Option<Arc<Tokenizer>>,
    /// To read answers back into calls, present when the request has tools.
    tools: Option<Arc<ToolCallSpec>>,
}

/// OpenAI's ids for calls: `call_` and random characters, unique enough for a client to match
/// results to calls.
fn call_id() -> String {
    format!("call_{:016x}", fresh_seed())
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    /// The `logprobs` of a choice or chunk: null unless asked for, and in a chunk unless it
    /// has tokens.
    fn logprobs(&self, tokens: &[TokenLogprob], offsets: &mut TextOffsets, chunk: bool) -> Value {
        match &self.tok {
            Some(tok) if !(chunk && tokens.is_empty()) => match self.endpoint {
                Endpoint::Chat => logprobs::chat(tok, tokens),
                Endpoint::Completion => logprobs::completion(tok, tokens, offsets),
            },
            _ => Value::Null,
        }
    }

    /// The calls in a finished answer, if the request has tools and the model called them. An
    /// answer cut short is text, whatever it starts with: at `length` always, after a stop
    /// string because the call it started does not parse.
    fn calls(&self, text: &str, finish: Option<FinishReason>) -> Option<Vec<Value>> {
        let spec = self.tools.as_ref()?;
        if finish != Some(FinishReason::Stop) {
            return None;
        }
        match spec.parse(text) {
            Ok(ToolOutput::Calls(calls)) => {
                Some(calls.iter().map(|c| c.to_openai(&call_id())).collect())
            }
            _ => None,
        }
    }

    /// One choice of a whole answer.
    fn choice(&self, answer: &mut Answer) -> Value {
        let logprobs = self.logprobs(&answer.tokens, &mut answer.offsets, false);
        if self.endpoint == Endpoint::Chat {
            if let Some(calls) = self.calls(&answer.text, answer.finish) {
                return json!({
                    "index": answer.index,
                    "message": {"role": "assistant", "content": null, "tool_calls": calls},
                    "logprobs": logprobs,
                    "finish_reason": "tool_calls",
                });
            }
        }
        let finish = answer.finish.map(FinishReason::as_str);
        let mut choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": answer.index,
                "message": {"role": "assistant", "content": answer.text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
            Endpoint::Completion => json!({
                "index": answer.index, "text": answer.text, "logprobs": logprobs,
                "finish_reason": finish,
            }),
        };
        if let Some(c) = &answer.confidence {
            choice["confidence"] = confidence_json(c);
        }
        choice
    }

    /// One choice of a stream chunk; `first` carries the chat role.
    fn delta(
        &self,
        index: usize,
        text: Option<&str>,
        first: bool,
        finish: Option<&str>,
        logprobs: Value,
    ) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if first {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Endpoint::Completion => json!({
                "index": index, "text": text.unwrap_or(""), "logprobs": logprobs,
                "finish_reason": finish,
            }),
        }
    }

    fn envelope(&self, chunk: bool, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// One choice as it comes in.
#[derive(Default)]
struct Answer {
    index: usize,
    text: String,
    tokens: Vec<TokenLogprob>,
    offsets: TextOffsets,
    finish: Option<FinishReason>,
    confidence: Option<Vec<(String, f32)>>,
}

impl Answer {
    /// The least sure field's confidence; 0 for an answer cut short or without a field, `None`
    /// where confidence was not asked for.
    fn least_confidence(&self) -> Option<f64> {
        let fields = self.confidence.as_ref()?;
        if self.finish != Some(FinishReason::Stop) || fields.is_empty() {
            return Some(0.0);
        }
        Some(
            fields
                .iter()
                .map(|(_, p)| f64::from(*p))
                .fold(1.0, f64::min),
        )
    }
}

/// `{"field": p}` rounded to four places, as `smolt eval` writes it.
fn confidence_json(fields: &[(String, f32)]) -> Value {
    fields
        .iter()
        .map(|(k, p)| (k.clone(), json!((f64::from(*p) * 1e4).round() / 1e4)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Waits for every choice's whole answer. If the client goes away, axum drops this future, and
/// with it the guard and the receiver: the workers stop at their next token. Returns the
/// response body and the least confidence of any field of any choice (0 for a choice cut
/// short or without fields; 1 when no choice reports confidence).
async fn collect(
    meta: Meta,
    mut rx: UnboundedReceiver<(usize, Event)>,
    _guard: CancelOnDrop,
    prompt_tokens: usize,
) -> Result<(Value, f64), ApiError> {
    let mut answers: Vec<Answer> = (0..meta.n)
        .map(|index| Answer {
            index,
            ..Answer::default()
        })
        .collect();
    let mut completion_tokens = 0;
    let mut left = meta.n;
    while let Some((i, event)) = rx.recv().await {
        let answer = &mut answers[i];
        match event {
            Event::Text { text, logprobs } => {
                answer.text.push_str(&text);
                answer.tokens.extend(logprobs);
            }
            Event::Done {
                finish,
                completion_tokens: c,
                confidence,
                ..
            } => {
                answer.finish = Some(finish);
                answer.confidence = confidence;
                completion_tokens += c;
                left -= 1;
                if left == 0 {
                    let least = answers
                        .iter()
                        .filter_map(|a| a.least_confidence())
                        .fold(1.0, f64::min);
                    let choices = answers.iter_mut().map(|a| meta.choice(a)).collect();
                    let body = meta.envelope(
                        false,
                        choices,
                        Some(usage(prompt_tokens, completion_tokens)),
                    );
                    return Ok((body, least));
                }
            }
            Event::Failed(message) => {
                return Err(ApiError::with_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    message,
                ))
            }
        }
    }
    Err(ApiError::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the worker dropped the request ({prompt_tokens} prompt tokens) without an answer"),
    ))
}

/// The answer as server-sent events: `data: {chunk}` per piece of text of any choice (its
/// `index` says which), a chunk with each choice's finish reason, a usage chunk when asked
/// (all choices' tokens, once every choice is done), then `data: [DONE]`.
///
/// With tools that may be called, a choice's output is held until it is complete: only then
/// is it known to be calls or text. It is then sent as one chunk, either `delta.content` (the
/// text) or `delta.tool_calls` with every call whole (OpenAI's streaming shape: `index`, `id`,
/// `type`, `function.name`, `function.arguments`), before the finish chunk
/// (`finish_reason: "tool_calls"` for calls).
fn stream(
    meta: Meta,
    rx: UnboundedReceiver<(usize, Event)>,
    guard: CancelOnDrop,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    struct St {
        meta: Meta,
        rx: UnboundedReceiver<(usize, Event)>,
        pending: VecDeque<String>,
        /// Per choice: whether its next chunk is its first, and its text offsets.
        first: Vec<bool>,
        /// Per choice, when output is held for tool calls: the text and log-probabilities so
        /// far.
        held: Option<Vec<(String, Vec<TokenLogprob>)>>,
        offsets: Vec<TextOffsets>,
        left: usize,
        completion_tokens: usize,
        finished: bool,
        include_usage: bool,
        // Held for its Drop: the body going away means the client did.
        _guard: CancelOnDrop,
    }
    let usage_field = |st: &St| st.include_usage.then_some(Value::Null);
    let n = meta.n;
    let hold =
        meta.endpoint == Endpoint::Chat && meta.tools.as_ref().is_some_and(|t| t.allows_calls());
    let mut st = St {
        held: hold.then(|| (0..n).map(|_| Default::default()).collect()),
        meta,
        rx,
        pending: VecDeque::new(),
        first: vec![true; n],
        offsets: (0..n).map(|_| TextOffsets::default()).collect(),
        left: n,
        completion_tokens: 0,
        finished: false,
        include_usage,
        _guard: guard,
    };
    if st.meta.endpoint == Endpoint::Chat {
        // OpenAI opens a chat stream with the role and empty content, per choice.
        for i in 0..n {
            let c = st.meta.delta(i, Some(""), true, None, Value::Null);
            let u = usage_field(&st);
            st.pending
                .push_back(st.meta.envelope(true, vec![c], u).to_string());
            st.first[i] = false;
        }
    }
    let events = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(data) = st.pending.pop_front() {
                return Some((Ok(SseEvent::default().data(data)), st));
            }
            if st.finished {
                return None;
            }
            let u = usage_field(&st);
            match st.rx.recv().await {
                Some((i, Event::Text { text, logprobs })) => {
                    if let Some(held) = &mut st.held {
                        held[i].0.push_str(&text);
                        held[i].1.extend(logprobs);
                        continue;
                    }
                    let lp = st.meta.logprobs(&logprobs, &mut st.offsets[i], true);
                    let c = st.meta.delta(i, Some(&text), st.first[i], None, lp);
                    st.first[i] = false;
                    st.pending
                        .push_back(st.meta.envelope(true, vec![c], u).to_string());
                }
                Some((
                    i,
                    Event::Done {
                        finish,
                        prompt_tokens,
                        completion_tokens,
                        confidence,
                    },
                )) => {
                    let mut reason = finish.as_str();
                    if let Some(held) = &mut st.held {
                        let (text, tokens) = std::mem::take(&mut held[i]);
                        let lp = st.meta.logprobs(&tokens, &mut st.offsets[i], true);
                        let mut c = st.meta.delta(i, Some(&text), st.first[i], None, lp);
                        if let Some(calls) = st.meta.calls(&text, Some(finish)) {
                            reason = "tool_calls";
                            let calls: Vec<Value> = calls
                                .into_iter()
                                .enumerate()
                                .map(|(k, mut call)| {
                                    call["index"] = json!(k);
                                    call
                                })
                                .collect();
                            c["delta"] = json!({"content": null, "tool_calls": calls});
                        }
                        st.first[i] = false;
                        st.pending
                            .push_back(st.meta.envelope(true, vec![c], u.clone()).to_string());
                    }
                    let mut c = st
                        .meta
                        .delta(i, None, st.first[i], Some(reason), Value::Null);
                    if let Some(conf) = &confidence {
                        c["confidence"] = confidence_json(conf);
                    }
                    st.pending
                        .push_back(st.meta.envelope(true, vec![c], u).to_string());
                    st.completion_tokens += completion_tokens;
                    st.left -= 1;
                    if st.left > 0 {
                        continue;
                    }
                    if st.include_usage {
                        let last = st.meta.envelope(
                            true,
                            Vec::new(),
                            Some(usage(prompt_tokens, st.completion_tokens)),
                        );
                        st.pending.push_back(last.to_string());
                    }
                    st.pending.push_back("[DONE]".into());
                    st.finished = true;
                }
                Some((_, Event::Failed(message))) => {
                    let e = ApiError::with_status(StatusCode::INTERNAL_SERVER_ERROR, message);
                    st.pending.push_back(e.body().to_string());
                    st.pending.push_back("[DONE]".into());
                    st.finished = true;
                }
                None => {
                    let e = ApiError::with_status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the worker dropped the request without an answer",
                    );
                    st.pending.push_back(e.body().to_string());
                    st.finished = true;
                }
            }
        }
    });
    Sse::new(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_check_compares_whole_keys() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
