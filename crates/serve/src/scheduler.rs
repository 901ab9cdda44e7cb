//! The scheduler: one worker thread runs every generation, first come first served, from a
//! bounded queue. The HTTP layer only checks, renders and tokenizes; the forward passes all
//! happen here, so requests never compete for the two cores and the kernels' thread pool sees
//! one sequence at a time.
//!
//! This increment runs one sequence at a time, each on the `Model` of the adapter it names.
//! The next one batches: sequences of different adapters in one forward pass over the shared
//! base weights, each row with its own low-rank term.
//!
//! A request whose client goes away is dropped: the HTTP layer sets its cancel flag (or drops
//! the receiving end of its events), and the worker checks both before starting it and after
//! every token.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use smolt_constrain::Constraint;
use smolt_decode::{answer_streaming, Ending, GenerateOptions};
use smolt_tokenizer::stream::TextStream;
use smolt_tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;
use crate::models::{Models, ServedModel};

/// One sequence to generate, checked and tokenized.
pub struct Job {
    /// Index into [`Models::served`].
    pub model: usize,
    pub prompt: Vec<u32>,
    pub opts: GenerateOptions,
    pub constraint: Option<Constraint>,
    /// Stop strings: the output ends before the first one.
    pub stop: Vec<String>,
    /// Set when the client is gone: stop at the next token.
    pub cancel: Arc<AtomicBool>,
    pub events: UnboundedSender<Event>,
}

/// Why a sequence ended, in OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop string, or a complete constrained value.
    Stop,
    /// `max_tokens` or the context ran out.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What the worker reports about a job, in order: text pieces, then `Done` or `Failed`.
#[derive(Debug, PartialEq)]
pub enum Event {
    Text(String),
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// Generation failed (not the request's fault: it was checked before queueing).
    Failed(String),
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `max_queue` jobs already.
    Full,
    /// The server is shutting down.
    Closed,
}

/// The queue's sending end and the worker thread.
pub struct Scheduler {
    queue: Mutex<Option<SyncSender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

/// A poisoned lock here only means a panic while taking or dropping the sender.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scheduler {
    /// Starts the worker thread over `models`; at most `max_queue` jobs wait.
    pub fn start(
        models: Arc<Models>,
        metrics: Arc<Metrics>,
        max_queue: usize,
    ) -> std::io::Result<Scheduler> {
        let (tx, rx) = sync_channel(max_queue);
        let m = Arc::clone(&metrics);
        let worker = std::thread::Builder::new()
            .name("smolt-serve-worker".into())
            .spawn(move || work(&models, &m, rx))?;
        Ok(Scheduler {
            queue: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            metrics,
        })
    }

    /// Queues `job` without waiting.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        let queue = lock(&self.queue);
        let Some(tx) = queue.as_ref() else {
            return Err(Refused::Closed);
        };
        // Counted before sending so that the worker's decrement can never come first.
        self.metrics.queue_depth.fetch_add(1, Ordering::SeqCst);
        tx.try_send(job).map_err(|e| {
            self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Disconnected(_) => Refused::Closed,
            }
        })
    }

    /// Refuses new jobs, lets the worker finish the queued ones, and waits for it.
    pub fn shutdown(&self) {
        drop(lock(&self.queue).take());
        if let Some(w) = lock(&self.worker).take() {
            // The worker catches generation panics itself; a join error would be a bug in
            // the loop, and there is nothing left to clean up either way.
            let _ = w.join();
        }
    }
}

/// The worker loop: until the sending end is dropped and the queue is empty.
fn work(models: &Models, metrics: &Metrics, rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
        if job.cancel.load(Ordering::SeqCst) || job.events.is_closed() {
            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let served = &models.served[job.model];
        metrics.running.fetch_add(1, Ordering::SeqCst);
        // Inside the compute pool the kernels split each product across its threads without
        // handing the job over from outside; a panic in a kernel fails this request with a
        // 500 instead of ending the worker and with it the server.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            rayon::scope(|_| run(served, &models.tokenizer, &job))
        }));
        metrics.running.fetch_sub(1, Ordering::SeqCst);
        let event = match outcome {
            Ok(Ok(Outcome::Done {
                finish,
                completion_tokens,
            })) => {
                metrics.record_tokens(&served.id, job.prompt.len(), completion_tokens);
                Event::Done {
                    finish,
                    prompt_tokens: job.prompt.len(),
                    completion_tokens,
                }
            }
            Ok(Ok(Outcome::Cancelled)) => {
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Err(e)) => Event::Failed(format!("generation failed: {e:#}")),
            Err(_) => Event::Failed("generation failed: the worker panicked".into()),
        };
        // The client may have gone in the meantime: nothing to tell then.
        let _ = job.events.send(event);
    }
}

enum Outcome {
    Done {
        finish: FinishReason,
        completion_tokens: usize,
    },
    Cancelled,
}

/// Generates one job, sending text as it is ready.
fn run(served: &ServedModel, tok: &Tokenizer, job: &Job) -> anyhow::Result<Outcome> {
    let mut sink = Sink {
        tok,
        ids: Vec::new(),
        text: TextStream::new(job.stop.clone()),
        events: &job.events,
        cancel: &job.cancel,
        cancelled: false,
    };
    let model = &served.model;
    let mut cache = model.new_cache();
    let out = answer_streaming(
        model,
        &mut cache,
        &job.prompt,
        job.constraint.as_ref(),
        &job.opts,
        |ids| sink.push(ids),
    )?;
    let mut finish = match out.ending {
        Ending::Complete => FinishReason::Stop,
        Ending::Limit | Ending::Truncated | Ending::ContextFull => FinishReason::Length,
        Ending::Stopped if sink.cancelled => return Ok(Outcome::Cancelled),
        // The callback ends a sequence only for a client gone or a stop string.
        Ending::Stopped => FinishReason::Stop,
    };
    // Text held back for a possible stop string is released now.
    let step = sink.text.finish(&tok.decode(&sink.ids, true));
    if step.stop {
        finish = FinishReason::Stop;
    }
    if !step.text.is_empty() && job.events.send(Event::Text(step.text)).is_err() {
        return Ok(Outcome::Cancelled);
    }
    Ok(Outcome::Done {
        finish,
        completion_tokens: out.ids.len(),
    })
}

/// Where generated ids go: decoded, cut at stop strings, sent.
struct Sink<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    text: TextStream,
    events: &'a UnboundedSender<Event>,
    cancel: &'a AtomicBool,
    cancelled: bool,
}

impl Sink<'_> {
    /// Takes new ids; `false` ends the sequence (client gone, or a stop string reached).
    fn push(&mut self, new: &[u32]) -> bool {
        if self.cancel.load(Ordering::Relaxed) || self.events.is_closed() {
            self.cancelled = true;
            return false;
        }
        self.ids.extend_from_slice(new);
        let step = self.text.push(&self.tok.decode(&self.ids, true));
        if !step.text.is_empty() && self.events.send(Event::Text(step.text)).is_err() {
            self.cancelled = true;
            return false;
        }
        !step.stop
    }
}
