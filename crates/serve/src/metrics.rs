//! `GET /metrics` in the Prometheus text format (version 0.0.4). A handful of series, so they
//! are kept and printed here rather than through a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets: from a cached health check to a
/// long generation on a small CPU.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    /// Count per bucket of `LATENCY_BUCKETS` (not cumulative; summed when printed).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Tokens {
    prompt: u64,
    completion: u64,
}

/// Every series the server exports. Shared by the HTTP layer and the worker.
#[derive(Default)]
pub struct Metrics {
    /// (endpoint, status) → requests answered.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// endpoint → latency until the response head (for a stream: until it starts).
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// model → tokens.
    tokens: Mutex<BTreeMap<String, Tokens>>,
    /// Requests waiting for the worker.
    pub queue_depth: AtomicUsize,
    /// Sequences being generated (seated).
    pub running: AtomicUsize,
    /// Forward passes of the batch engine, the sequences they carried, and their tokens.
    steps: AtomicU64,
    step_sequences: AtomicU64,
    step_tokens: AtomicU64,
    /// Sequences in the latest step.
    last_batch: AtomicUsize,
    /// Sequences ended because their client went away.
    pub cancelled: AtomicU64,
    /// Prompts that started from a cached prefix, and the prompt tokens those prefixes held.
    prefix_hits: AtomicU64,
    prefix_tokens: AtomicU64,
    /// Bytes of keys and values in the prefix cache.
    prefix_bytes: AtomicUsize,
    /// With a fallback: JSON answers given by this server's model, by the fallback, and routed
    /// answers the fallback failed to give (the local answer went out instead).
    pub answered_local: AtomicU64,
    pub answered_fallback: AtomicU64,
    pub fallback_errors: AtomicU64,
    /// Where the constrained decoder's ramble guard stepped in: numbers cut at their digit
    /// cap, looping strings and lists closed (`smolt_constrain::ramble`).
    numbers_capped: AtomicU64,
    loops_stopped: AtomicU64,
}

/// A poisoned lock only means a panic elsewhere mid-update of a counter: the numbers are
/// still the best there are.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts where the ramble guard stepped in over one finished answer.
    pub fn record_guard(&self, g: smolt_constrain::GuardCounts) {
        self.numbers_capped
            .fetch_add(g.numbers_capped as u64, Ordering::Relaxed);
        self.loops_stopped
            .fetch_add(g.loops_stopped as u64, Ordering::Relaxed);
    }

    pub fn record_request(&self, endpoint: &str, status: u16, took: Duration) {
        *lock(&self.requests)
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        let mut latency = lock(&self.latency);
        let h = latency.entry(endpoint.to_string()).or_default();
        let s = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| s <= b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += s;
    }

    /// One step of the batch engine: `sequences` sequences, `tokens` tokens in one pass.
    pub fn record_step(&self, sequences: usize, tokens: usize) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.step_sequences
            .fetch_add(sequences as u64, Ordering::Relaxed);
        self.step_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.last_batch.store(sequences, Ordering::Relaxed);
    }

    /// A prompt started from a cached prefix of `tokens` positions.
    pub fn record_prefix_hit(&self, tokens: usize) {
        self.prefix_hits.fetch_add(1, Ordering::Relaxed);
        self.prefix_tokens
            .fetch_add(tokens as u64, Ordering::Relaxed);
    }

    pub fn set_prefix_bytes(&self, bytes: usize) {
        self.prefix_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn record_tokens(&self, model: &str, prompt: usize, completion: usize) {
        let mut tokens = lock(&self.tokens);
        let t = tokens.entry(model.to_string()).or_default();
        t.prompt += prompt as u64;
        t.completion += completion as u64;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP smolt_serve_requests_total HTTP requests answered, by endpoint and status."
        )?;
        writeln!(out, "# TYPE smolt_serve_requests_total counter")?;
        for ((endpoint, status), n) in lock(&self.requests).iter() {
            writeln!(
                out,
                "smolt_serve_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                escape(endpoint)
            )?;
        }
        writeln!(
            out,
            "# HELP smolt_serve_request_duration_seconds Time from a request to its response \
             head (for a stream, to its start), by endpoint."
        )?;
        writeln!(out, "# TYPE smolt_serve_request_duration_seconds histogram")?;
        for (endpoint, h) in lock(&self.latency).iter() {
            let e = escape(endpoint);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                writeln!(
                    out,
                    "smolt_serve_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"{bound}\"}} {cumulative}"
                )?;
            }
            writeln!(
                out,
                "smolt_serve_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {}",
                h.count
            )?;
            writeln!(
                out,
                "smolt_serve_request_duration_seconds_sum{{endpoint=\"{e}\"}} {}",
                h.sum
            )?;
            writeln!(
                out,
                "smolt_serve_request_duration_seconds_count{{endpoint=\"{e}\"}} {}",
                h.count
            )?;
        }
        writeln!(
            out,
            "# HELP smolt_serve_routed_answers_total JSON answers under --fallback, by who gave them (local: this server's model was sure enough, or the fallback failed)."
        )?;
        writeln!(out, "# TYPE smolt_serve_routed_answers_total counter")?;
        for (by, n) in [
            ("local", &self.answered_local),
            ("fallback", &self.answered_fallback),
        ] {
            writeln!(
                out,
                "smolt_serve_routed_answers_total{{answered_by=\"{by}\"}} {}",
                n.load(Ordering::Relaxed)
            )?;
        }
        let tokens = lock(&self.tokens);
        for (kind, help) in [
            ("prompt", "Prompt tokens of finished requests, by model."),
            (
                "completion",
                "Generated tokens of finished requests, by model.",
            ),
        ] {
            writeln!(out, "# HELP smolt_serve_{kind}_tokens_total {help}")?;
            writeln!(out, "# TYPE smolt_serve_{kind}_tokens_total counter")?;
            for (model, t) in tokens.iter() {
                let n = if kind == "prompt" {
                    t.prompt
                } else {
                    t.completion
                };
                writeln!(
                    out,
                    "smolt_serve_{kind}_tokens_total{{model=\"{}\"}} {n}",
                    escape(model)
                )?;
            }
        }
        for (name, kind, help, value) in [
            (
                "smolt_serve_queue_depth",
                "gauge",
                "Requests waiting for a seat in the batch.",
                self.queue_depth.load(Ordering::Relaxed) as u64,
            ),
            (
                "smolt_serve_running",
                "gauge",
                "Sequences being generated.",
                self.running.load(Ordering::Relaxed) as u64,
            ),
            (
                "smolt_serve_batch_steps_total",
                "counter",
                "Forward passes of the batch engine (one per step, all seated sequences).",
                self.steps.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_batch_sequences_total",
                "counter",
                "Sequences carried by those passes, summed (divide by steps: the mean batch size).",
                self.step_sequences.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_batch_tokens_total",
                "counter",
                "Tokens fed by those passes, summed (prompt chunks and decoded tokens).",
                self.step_tokens.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_batch_size",
                "gauge",
                "Sequences in the latest forward pass.",
                self.last_batch.load(Ordering::Relaxed) as u64,
            ),
            (
                "smolt_serve_fallback_errors_total",
                "counter",
                "Answers routed to the fallback that it failed to give (the local answer was sent).",
                self.fallback_errors.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_numbers_capped_total",
                "counter",
                "Numbers in constrained answers cut at their digit cap (a model running on in a number).",
                self.numbers_capped.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_loops_stopped_total",
                "counter",
                "String values and arrays in constrained answers closed because they had looped.",
                self.loops_stopped.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_cancelled_total",
                "counter",
                "Sequences stopped because their client disconnected.",
                self.cancelled.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_prefix_cache_hits_total",
                "counter",
                "Prompts that started from a cached prefix instead of an empty KV cache.",
                self.prefix_hits.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_prefix_cache_reused_tokens_total",
                "counter",
                "Prompt tokens taken from the prefix cache rather than run through the model.",
                self.prefix_tokens.load(Ordering::Relaxed),
            ),
            (
                "smolt_serve_prefix_cache_bytes",
                "gauge",
                "Bytes of keys and values held by the prefix cache.",
                self.prefix_bytes.load(Ordering::Relaxed) as u64,
            ),
        ] {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} {kind}")?;
            writeln!(out, "{name} {value}")?;
        }
        Ok(())
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_the_histogram_add_up() {
        let m = Metrics::default();
        m.record_request("/v1/completions", 200, Duration::from_millis(30));
        m.record_request("/v1/completions", 200, Duration::from_secs(3));
        m.record_request("/v1/completions", 400, Duration::from_millis(1));
        m.record_tokens("base", 10, 4);
        m.record_tokens("base", 5, 1);
        let text = m.render();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has(
            "smolt_serve_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2"
        ));
        assert!(has(
            "smolt_serve_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1"
        ));
        // Cumulative buckets: 1 request ≤ 5 ms, 2 ≤ 50 ms, all 3 ≤ 5 s.
        assert!(has(
            "smolt_serve_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"0.005\"} 1"
        ));
        assert!(has(
            "smolt_serve_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"0.05\"} 2"
        ));
        assert!(has(
            "smolt_serve_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"2.5\"} 2"
        ));
        assert!(has(
            "smolt_serve_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"+Inf\"} 3"
        ));
        assert!(has("smolt_serve_prompt_tokens_total{model=\"base\"} 15"));
        assert!(has("smolt_serve_completion_tokens_total{model=\"base\"} 5"));
        assert!(has("smolt_serve_queue_depth 0"));
        assert!(has("smolt_serve_loops_stopped_total 0"));
        m.record_guard(smolt_constrain::GuardCounts {
            numbers_capped: 2,
            loops_stopped: 1,
            copies_held: 5,
        });
        m.record_guard(smolt_constrain::GuardCounts {
            numbers_capped: 1,
            ..Default::default()
        });
        let text = m.render();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("smolt_serve_numbers_capped_total 3"), "{text}");
        assert!(has("smolt_serve_loops_stopped_total 1"), "{text}");
        assert!(
            has("# TYPE smolt_serve_loops_stopped_total counter"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
