//! One chat-completions request to an OpenAI-compatible endpoint, retried through the failures
//! a run of thousands of requests meets.
//!
//! | what happens | what the client does |
//! |---|---|
//! | no answer within the timeout | retry after a backoff |
//! | `429` | wait `Retry-After` (seconds; every worker waits, through the shared limiter), or a backoff without one, and retry |
//! | `5xx`, a dropped or refused connection, a `200` whose body is not a completion | retry after a backoff |
//! | `401`, `403`, `404`, `405` | stop the run: the key, the URL or the model is wrong, and every request would fail alike |
//! | any other `4xx` | give this request up (the endpoint refused it; retrying cannot help) |
//!
//! Backoffs start at [`ClientConfig::backoff`] and double up to [`ClientConfig::max_backoff`],
//! with jitter so that workers that failed together do not retry together. After
//! [`ClientConfig::max_retries`] retries the request is given up.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// The longest `Retry-After` honoured: a larger value is most likely a mistake, and a run must
/// not sleep for a day on one header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The most characters of an error body quoted in a message.
const QUOTED_BODY: usize = 300;

/// How to reach the endpoint and how hard to try.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The endpoint: a server root (`http://host:8080`), its `/v1`, or the full
    /// `/v1/chat/completions` URL.
    pub url: String,
    /// Sent as `Authorization: Bearer …`; never written anywhere.
    pub api_key: Option<String>,
    /// The longest wait for one whole response.
    pub timeout: Duration,
    /// Retries of one request after a timeout, `429`, `5xx` or a dropped connection.
    pub max_retries: u32,
    /// The first backoff; it doubles with each retry.
    pub backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// Requests per second across all workers (`None`: as fast as the workers go).
    pub rate_limit: Option<f64>,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            max_retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            rate_limit: None,
        }
    }
}

/// What went wrong on the wire, counted over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportStats {
    /// HTTP requests sent (every try counts).
    pub requests: u64,
    pub timeouts: u64,
    /// `429` answers.
    pub rate_limited: u64,
    /// `5xx` answers.
    pub server_errors: u64,
    /// Refused, reset or dropped connections.
    pub connection_errors: u64,
    /// `200` answers whose body was not a chat completion.
    pub bad_responses: u64,
    /// Other `4xx` answers (the request given up at once).
    pub refused: u64,
}

impl TransportStats {
    pub fn add(&mut self, o: &TransportStats) {
        self.requests += o.requests;
        self.timeouts += o.timeouts;
        self.rate_limited += o.rate_limited;
        self.server_errors += o.server_errors;
        self.connection_errors += o.connection_errors;
        self.bad_responses += o.bad_responses;
        self.refused += o.refused;
    }
}

/// Why a request has no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Every request would fail alike (wrong key, URL or model): the run must stop.
    Fatal(String),
    /// This request failed every try, or the endpoint refused it: drop it.
    GaveUp(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Fatal(m) | Failure::GaveUp(m) => f.write_str(m),
        }
    }
}

/// The parts of a chat completion that distillation reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The first choice's message content (`None`: null, as with a refusal).
    pub content: Option<String>,
    /// The model's refusal, where the endpoint reports one (OpenAI's structured outputs).
    pub refusal: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Completion {
    /// Reads a response body; an error says what is missing.
    pub fn parse(body: &Value) -> Result<Completion, String> {
        let message = body
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("message"))
            .and_then(Value::as_object)
            .ok_or("the response has no choices[0].message")?;
        let content = match message.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(format!(
                    "choices[0].message.content is not a string: {other}"
                ))
            }
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let usage = body.get("usage");
        let count = |k: &str| {
            usage
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(Completion {
            content,
            refusal: text(message.get("refusal")),
            finish_reason: text(body["choices"][0].get("finish_reason")),
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
        })
    }
}

/// Spaces requests out to a rate, and holds every worker back after a `429`.
struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    fn new(rate: Option<f64>) -> Limiter {
        Limiter {
            interval: rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this worker's slot.
    fn wait(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        std::thread::sleep(slot.saturating_duration_since(now));
    }

    /// No request leaves before `t`.
    fn hold_until(&self, t: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *next = (*next).max(t);
    }
}

/// A client for one endpoint, shared by every worker of a run.
pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    api_key: Option<String>,
    config: ClientConfig,
    limiter: Limiter,
}

/// The full chat-completions URL for what a user may give.
pub fn endpoint_of(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/chat/completions") {
        url.to_string()
    } else if url.ends_with("/v1") {
        format!("{url}/chat/completions")
    } else {
        format!("{url}/v1/chat/completions")
    }
}

/// One try's result, before the retry policy looks at it.
enum Try {
    Done(Value),
    /// Worth another try, after `wait` (`None`: a backoff).
    Again {
        why: String,
        wait: Option<Duration>,
    },
    Stop(Failure),
}

impl Client {
    pub fn new(config: ClientConfig) -> anyhow::Result<Client> {
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            anyhow::bail!(
                "teacher URL `{}` must start with http:// or https://",
                config.url
            );
        }
        if let Some(r) = config.rate_limit {
            if !(r.is_finite() && r > 0.0) {
                anyhow::bail!(
                    "the rate limit must be a positive number of requests per second, not {r}"
                );
            }
        }
        if config.timeout.is_zero() {
            anyhow::bail!("the timeout must be longer than zero");
        }
        let agent = ureq::AgentBuilder::new().timeout(config.timeout).build();
        Ok(Client {
            agent,
            endpoint: endpoint_of(&config.url),
            api_key: config.api_key.clone(),
            limiter: Limiter::new(config.rate_limit),
            config,
        })
    }

    /// The chat-completions URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The ids the endpoint lists at `GET …/v1/models` (one try: this is asked once, before
    /// a run, to default the model name).
    pub fn models(&self) -> Result<Vec<String>, String> {
        let url = format!(
            "{}/models",
            self.endpoint.trim_end_matches("/chat/completions")
        );
        let mut req = self.agent.get(&url);
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let text = req
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?
            .into_string()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON ({e})"))?;
        let ids = v["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok(ids)
    }

    /// Sends `body` until a chat completion comes back, counting every failure in `stats`.
    /// The response is returned whole (for the cache), checked to be a completion.
    pub fn post(&self, body: &Value, stats: &mut TransportStats) -> Result<Value, Failure> {
        let text = body.to_string();
        let mut tries = 0u32;
        loop {
            self.limiter.wait();
            stats.requests += 1;
            let (why, wait) = match self.try_once(&text, stats) {
                Try::Done(v) => return Ok(v),
                Try::Stop(f) => return Err(f),
                Try::Again { why, wait } => (why, wait),
            };
            if tries >= self.config.max_retries {
                return Err(Failure::GaveUp(format!(
                    "{why} (gave up after {} tries)",
                    tries + 1
                )));
            }
            match wait {
                Some(w) => self.limiter.hold_until(Instant::now() + w),
                None => std::thread::sleep(self.backoff(tries)),
            }
            tries += 1;
        }
    }

    fn backoff(&self, tries: u32) -> Duration {
        let full = self
            .config
            .backoff
            .saturating_mul(1u32 << tries.min(16))
            .min(self.config.max_backoff);
        // Jitter in [0.5, 1): a fresh random hasher is a fresh random number.
        let r = RandomState::new().build_hasher().finish();
        full.mul_f64(0.5 + 0.5 * (r >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn try_once(&self, text: &str, stats: &mut TransportStats) -> Try {
        let mut req = self
            .agent
            .post(&self.endpoint)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let resp = match req.send_string(text) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => return self.status(code, resp, stats),
            Err(ureq::Error::Transport(t)) => {
                return if is_timeout(&t) {
                    stats.timeouts += 1;
                    Try::Again {
                        why: format!("no answer within {:?}", self.config.timeout),
                        wait: None,
                    }
                } else if matches!(
                    t.kind(),
                    ureq::ErrorKind::InvalidUrl
                        | ureq::ErrorKind::UnknownScheme
                        | ureq::ErrorKind::Dns
                ) {
                    Try::Stop(Failure::Fatal(format!(
                        "cannot reach {}: {t}",
                        self.endpoint
                    )))
                } else {
                    stats.connection_errors += 1;
                    Try::Again {
                        why: format!("connection failed: {t}"),
                        wait: None,
                    }
                };
            }
        };
        let body = match resp.into_string() {
            Ok(b) => b,
            Err(e) if is_timeout_io(&e) => {
                stats.timeouts += 1;
                return Try::Again {
                    why: format!("no whole answer within {:?}", self.config.timeout),
                    wait: None,
                };
            }
            Err(e) => {
                stats.connection_errors += 1;
                return Try::Again {
                    why: format!("the connection dropped mid-answer: {e}"),
                    wait: None,
                };
            }
        };
        let bad = |why: String, stats: &mut TransportStats| {
            stats.bad_responses += 1;
            Try::Again { why, wait: None }
        };
        match serde_json::from_str::<Value>(&body) {
            Ok(v) => match Completion::parse(&v) {
                Ok(_) => Try::Done(v),
                Err(e) => bad(format!("not a chat completion: {e}"), stats),
            },
            Err(e) => bad(
                format!(
                    "the response is not JSON ({e}): {}",
                    quote(&body, QUOTED_BODY)
                ),
                stats,
            ),
        }
    }

    fn status(&self, code: u16, resp: ureq::Response, stats: &mut TransportStats) -> Try {
        let retry_after = resp.header("retry-after").and_then(parse_retry_after);
        let body = resp.into_string().unwrap_or_default();
        let what = format!(
            "{} answered {code}: {}",
            self.endpoint,
            quote(&body, QUOTED_BODY)
        );
        match code {
            429 => {
                stats.rate_limited += 1;
                Try::Again {
                    why: what,
                    wait: retry_after.map(|w| w.min(MAX_RETRY_AFTER)),
                }
            }
            500..=599 => {
                stats.server_errors += 1;
                Try::Again {
                    why: what,
                    wait: None,
                }
            }
            401 | 403 => Try::Stop(Failure::Fatal(format!(
                "{what} — check the API key (its environment variable) and its rights"
            ))),
            404 | 405 => Try::Stop(Failure::Fatal(format!(
                "{what} — check the teacher URL (an OpenAI-compatible server) and the model name"
            ))),
            _ => {
                stats.refused += 1;
                Try::Stop(Failure::GaveUp(what))
            }
        }
    }
}

/// `Retry-After` as a delay: whole or fractional seconds. (The HTTP-date form is rare from
/// model APIs; without a delay the client backs off on its own.)
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
}

fn is_timeout_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn is_timeout(t: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if is_timeout_io(io) {
                return true;
            }
        }
        source = e.source();
    }
    t.to_string().contains("timed out")
}

/// The first `n` characters of `s`, marked where cut.
fn quote(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_endpoint_is_found_from_a_root_a_v1_or_the_full_url() {
        for u in [
            "http://h:1",
            "http://h:1/",
            "http://h:1/v1",
            "http://h:1/v1/chat/completions",
        ] {
            assert_eq!(endpoint_of(u), "http://h:1/v1/chat/completions", "{u}");
        }
    }

    #[test]
    fn retry_after_is_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.25 "),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn a_completion_is_read_and_a_non_completion_named() {
        let c = Completion::parse(&json!({
            "choices": [{"message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2}
        }))
        .unwrap();
        assert_eq!(c.content.as_deref(), Some("{}"));
        assert_eq!((c.prompt_tokens, c.completion_tokens), (7, 2));
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        let e = Completion::parse(&json!({"error": "x"})).unwrap_err();
        assert!(e.contains("choices[0].message"), "{e}");
        let e = Completion::parse(&json!({"choices": [{"message": {"content": 3}}]})).unwrap_err();
        assert!(e.contains("not a string"), "{e}");
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let e = Client::new(ClientConfig::new("localhost:8080"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("http://"), "{e}");
        let mut c = ClientConfig::new("http://h");
        c.rate_limit = Some(0.0);
        let e = Client::new(c).err().unwrap();
        assert!(e.to_string().contains("rate limit"), "{e}");
    }

    #[test]
    fn the_limiter_spaces_requests_and_holds_after_a_429() {
        let l = Limiter::new(Some(50.0));
        let t = Instant::now();
        for _ in 0..4 {
            l.wait();
        }
        // Slots at 0, 20, 40, 60 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(60),
            "{:?}",
            t.elapsed()
        );
        let l = Limiter::new(None);
        l.hold_until(Instant::now() + Duration::from_millis(50));
        let t = Instant::now();
        l.wait();
        assert!(
            t.elapsed() >= Duration::from_millis(45),
            "{:?}",
            t.elapsed()
        );
    }
}
