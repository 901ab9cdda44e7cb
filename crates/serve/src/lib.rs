//! smolt-serve: an OpenAI-compatible HTTP server over one GGUF model and its LoRA adapters
//! (`smolt serve`).
//!
//! - `GET /health`: liveness and readiness (the server listens only once every model loaded).
//! - `GET /v1/models`: the base model and each adapter, as vLLM lists LoRA adapters.
//! - `POST /v1/chat/completions`, `POST /v1/completions`: OpenAI's request and response
//!   shapes, streaming as server-sent events, `response_format` JSON (object or schema)
//!   through constrained decoding; `model` picks the base model or an adapter.
//! - `GET /metrics`: Prometheus text.
//!
//! The pieces: [`request`] checks bodies field by field, `api` renders the prompt (chat
//! template through smolt-task), checks it against the context and queues it; the
//! [`scheduler`]'s engine thread owns the forward passes and decodes every seated sequence,
//! whatever its adapter, in one pass per step (continuous batching);
//! [`models`] loads one `Model` per adapter over the same memory-mapped GGUF (the batched
//! pass reads the base's weights and takes only the low-rank terms from the adapters');
//! `prefix` keeps the keys and values of prompt starts that repeat (system prompts,
//! templates) so later prompts skip them.
//!
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use smolt_serve::{Background, ServeConfig};
//! let server = Background::start(ServeConfig::new("model.gguf", "gemma-3-270m"), "127.0.0.1:0")?;
//! println!("listening on http://{}", server.addr());
//! server.stop()?;
//! # Ok(()) }
//! ```

mod api;
pub mod config;
pub mod error;
pub mod logprobs;
pub mod metrics;
pub mod models;
mod prefix;
pub mod request;
pub mod scheduler;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::{
    AdapterSpec, Fallback, ServeConfig, DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_QUEUE, DEFAULT_PREFIX_CACHE_BYTES,
};
pub use models::Models;

/// A server with its models loaded and its worker running, not yet listening.
pub struct Server {
    state: Arc<api::AppState>,
}

impl Server {
    /// Loads the model and adapters (seconds) and starts the worker.
    pub fn load(config: ServeConfig) -> anyhow::Result<Server> {
        let models = Arc::new(Models::load(&config)?);
        Ok(Server {
            state: Arc::new(
                api::AppState::new(config, models).context("cannot start the worker thread")?,
            ),
        })
    }

    /// The loaded models.
    pub fn models(&self) -> &Models {
        &self.state.models
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting connections,
    /// finishes the requests in flight (queued ones included), stops the worker and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = Arc::clone(&self.state);
        let app = api::router(Arc::clone(&state));
        let draining = Arc::clone(&state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.accepting.store(false, Ordering::SeqCst);
            })
            .await
            .context("the server failed")?;
        // Every connection is closed, so no request waits on the worker any more.
        tokio::task::spawn_blocking(move || state.scheduler.shutdown())
            .await
            .context("stopping the worker")?;
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // Without a handler there is nothing to wait for: SIGTERM still ends the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A server on its own thread with its own runtime: for tests, and for programs that embed
/// one without running tokio themselves.
pub struct Background {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Background {
    /// Loads `config`'s models, binds `addr` (`127.0.0.1:0` for any free port) and serves.
    pub fn start(config: ServeConfig, addr: &str) -> anyhow::Result<Background> {
        let server = Server::load(config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("smolt-serve-http")
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let listener = runtime
            .block_on(TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("smolt-serve".into())
            .spawn(move || {
                runtime.block_on(server.serve(listener, async {
                    // A dropped sender also means stop.
                    let _ = stopped.await;
                }))
            })
            .context("cannot start the server thread")?;
        Ok(Background {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts down gracefully (requests in flight finish) and waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    /// Asks the server to stop without waiting for it.
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
