//! smolt-teacher: ask a large model behind any OpenAI-compatible `/v1/chat/completions`
//! endpoint (a hosted model, vLLM, llama-server, or `smolt serve` with a larger GGUF), and turn
//! raw inputs into validated training data with it (`smolt distill`).
//!
//! - [`client`]: one request, carried through what a long run meets: timeouts, `429` with
//!   `Retry-After` (every worker pauses), `5xx` and dropped connections with exponential
//!   backoff, malformed responses; a shared rate limit. The API key goes in a header and
//!   nowhere else.
//! - [`cache`]: an append-only JSONL file of responses keyed by a hash of the request, written
//!   per answer, so that a killed run loses nothing and a rerun asks nothing twice.
//! - [`distill`](mod@distill): the labelling run: the task's prompt and its schema as `response_format`,
//!   answers validated against the schema, invalid ones re-asked and then dropped and counted,
//!   two samples' agreement per field, and a report of cost, validity and time.
//! - `fake` (feature `fake`): a scriptable fake endpoint for tests.
//!
//! Module order (each uses only those before it): `client` → `cache` → `distill`.

pub mod cache;
pub mod client;
pub mod distill;
#[cfg(feature = "fake")]
pub mod fake;

pub use cache::Cache;
pub use client::{Client, ClientConfig, Completion, Failure, TransportStats};
pub use distill::{
    distill, read_inputs, DistillConfig, DistillReport, Input, Outcome, Progress, Teacher,
};
