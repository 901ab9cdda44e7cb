//! The scheduler: continuous batching across adapters.
//!
//! Each admitted request gets a seat: a KV cache in the engine and a thread of its own that
//! runs the ordinary decode loop (`smolt_decode::generate_with`, or `generate_constrained`
//! under a schema) — sampling, masks, stop strings and streaming stay where they always were.
//! Where that loop would run the model, the thread posts its tokens to the engine and waits.
//! The engine (one thread, owning every forward pass) gathers the posted steps of all seats,
//! whatever adapter each uses, and runs them as ONE forward pass
//! (`smolt_model::Model::forward_batch`: the base weights read once per step, each sequence's
//! rows given its own adapter's low-rank term), then the LM head for all of them in one product.
//! New prompts join between steps, a chunk at a time, so a long prompt does not stall the
//! sequences that are decoding.
//!
//! A request for `n` choices is `n` jobs, each a sequence with a seat of its own, sending its
//! events tagged with its choice index into the request's one channel. The seats do not share
//! one KV cache: each reads the prompt itself (in the same passes), which costs prefill but
//! keeps a seat one sequence with one cache, as everything here assumes.
//!
//! A prompt starts from the longest prefix the engine computed before for the same model
//! (`crate::prefix`): a copy of those keys and values, after which only the rest is fed.
//!
//! A bounded number of requests wait for a seat (`max_queue`; one more is refused, the HTTP
//! layer answers 429). A request whose client goes away is dropped: the HTTP layer sets its
//! cancel flag (or drops the receiving end of its events); its thread checks both after every
//! token and leaves its seat.

use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smolt_constrain::{Constraint, TokenMask};
use smolt_decode::{
    answer_streaming_with, scatter_rows, subset_rows, Context, Ending, GenerateOptions,
    LogitsSource,
};
use smolt_model::{BatchSeq, KvCache, KvType};
use smolt_tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::logprobs::TokenLogprob;
use crate::metrics::Metrics;
use crate::models::{Models, ServedModel};
use crate::prefix::PrefixCache;
use smolt_tokenizer::stream::TextStream;

/// One sequence to generate, checked and tokenized.
pub struct Job {
    /// The model the request names (kept alive while the job runs, even if unloaded).
    pub model: Arc<ServedModel>,
    pub prompt: Vec<u32>,
    pub opts: GenerateOptions,
    /// Shared by the request's choices: each starts a state of its own from it.
    pub constraint: Option<Arc<Constraint>>,
    /// Stop strings: the output ends before the first one.
    pub stop: Vec<String>,
    /// Set when the client is gone: stop at the next token.
    pub cancel: Arc<AtomicBool>,
    /// `Some(k)`: report each output token's log-probability with the `k` best alternatives.
    pub logprobs: Option<usize>,
    /// Which of the request's choices this is; its events are tagged with it.
    pub choice: usize,
    pub events: UnboundedSender<(usize, Event)>,
    /// Report each top-level field's confidence when done (JSON answers only).
    pub confidence: bool,
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
    /// Text ready to send, and the log-probabilities of the tokens generated since the last
    /// event when the job asked for them. The two need not line up: text is held back while it
    /// could be the start of a stop string or of a character.
    Text {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// Each top-level field of the JSON answer with its confidence
        /// ([`smolt_decode::field_confidence`]), when the job asked for it.
        confidence: Option<Vec<(String, f32)>>,
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

/// Prompt tokens one step takes in, over all the prompts being read: bounds how long the
/// decoding sequences wait for a step while a long prompt comes in. A multiple of
/// `smolt_model::PREFIX_ALIGN`, so that a prompt read in chunks gives the numbers of one pass.
const PREFILL_PER_STEP: usize = 4 * smolt_model::PREFIX_ALIGN;

/// After a step, how long the engine waits for the seats it answered to post their next
/// token before stepping without the late ones: their sampling and grammar masks take about
/// a millisecond.
const GATHER: Duration = Duration::from_millis(4);

/// What the engine hears.
enum Msg {
    /// A checked request, to seat when one is free.
    Job(Box<Job>),
    /// A seated sequence's next tokens; `reply` gets the logits of the last one.
    Step(Step),
    /// The seat's sequence has ended.
    Leave(usize),
    /// Finish every queued and running request, then stop.
    Shutdown,
}

struct Step {
    seat: usize,
    tokens: Vec<u32>,
    /// `Some(ids)`: only these logits are needed (a grammar allows few tokens); every other
    /// entry comes back `-inf`.
    only: Option<Vec<u32>>,
    reply: SyncSender<anyhow::Result<Vec<f32>>>,
}

/// The queue's sending end and the engine thread.
pub struct Scheduler {
    tx: Mutex<Option<Sender<Msg>>>,
    engine: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    max_queue: usize,
}

/// A poisoned lock here only means a panic while taking or dropping the sender.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scheduler {
    /// Starts the engine over `models`: at most `max_batch` sequences decode together, at most
    /// `max_queue` more wait; up to `prefix_bytes` of prompt prefixes are kept for reuse
    /// (see `crate::prefix`); every seat's KV cache stores `kv_type`.
    pub fn start(
        models: Arc<Models>,
        metrics: Arc<Metrics>,
        max_queue: usize,
        max_batch: usize,
        prefix_bytes: usize,
        kv_type: KvType,
    ) -> std::io::Result<Scheduler> {
        let (tx, rx) = channel();
        let m = Arc::clone(&metrics);
        let own = tx.clone();
        let engine = std::thread::Builder::new()
            .name("smolt-serve-engine".into())
            .spawn(move || {
                Engine::new(models, m, own, max_batch.max(1), prefix_bytes, kv_type).run(rx)
            })?;
        Ok(Scheduler {
            tx: Mutex::new(Some(tx)),
            engine: Mutex::new(Some(engine)),
            metrics,
            max_queue,
        })
    }

    /// Queues `jobs` (one request's choices) without waiting: all of them or none. A request
    /// with more choices than `max_queue` still goes in when nothing else waits, so that it is
    /// not refused forever.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), Refused> {
        let tx = lock(&self.tx);
        let Some(tx) = tx.as_ref() else {
            return Err(Refused::Closed);
        };
        let k = jobs.len();
        // Counted before sending so that the engine's decrement can never come first.
        let depth = &self.metrics.queue_depth;
        if depth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n == 0 || n + k <= self.max_queue).then_some(n + k)
            })
            .is_err()
        {
            return Err(Refused::Full);
        }
        for (sent, job) in jobs.into_iter().enumerate() {
            if tx.send(Msg::Job(Box::new(job))).is_err() {
                // The engine is gone: none of the rest will be taken either.
                depth.fetch_sub(k - sent, Ordering::SeqCst);
                return Err(Refused::Closed);
            }
        }
        Ok(())
    }

    /// Refuses new jobs, lets the engine finish the queued and running ones, and waits for it.
    pub fn shutdown(&self) {
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(Msg::Shutdown);
        }
        if let Some(e) = lock(&self.engine).take() {
            // The engine catches forward-pass panics itself; a join error would be a bug in
            // its loop, and there is nothing left to clean up either way.
            let _ = e.join();
        }
    }
}

/// A seat's state in the engine.
struct Seat {
    model: Arc<ServedModel>,
    cache: KvCache,
    /// Posted tokens not yet fed, from `fed` on.
    step: Option<Step>,
    fed: usize,
    /// The posted step is the sequence's first (its prompt): once in, its whole blocks go
    /// to the prefix cache.
    prompt_step: bool,
}

struct Engine {
    models: Arc<Models>,
    base: Arc<ServedModel>,
    metrics: Arc<Metrics>,
    /// For the seats' threads to post to.
    tx: Sender<Msg>,
    seats: Vec<Option<Seat>>,
    waiting: VecDeque<Job>,
    shutting_down: bool,
    prefixes: PrefixCache<ServedModel>,
    kv_type: KvType,
}

impl Engine {
    fn new(
        models: Arc<Models>,
        metrics: Arc<Metrics>,
        tx: Sender<Msg>,
        max_batch: usize,
        prefix_bytes: usize,
        kv_type: KvType,
    ) -> Self {
        Engine {
            base: models.base(),
            models,
            metrics,
            tx,
            seats: (0..max_batch).map(|_| None).collect(),
            waiting: VecDeque::new(),
            shutting_down: false,
            prefixes: PrefixCache::new(prefix_bytes),
            kv_type,
        }
    }

    fn occupied(&self) -> usize {
        self.seats.iter().filter(|s| s.is_some()).count()
    }

    fn posted(&self) -> usize {
        self.seats
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.step.is_some()))
            .count()
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            // Still counted in the queue depth until it has a seat: the bound on waiting
            // requests holds for those the engine has taken in too.
            Msg::Job(job) => self.waiting.push_back(*job),
            Msg::Step(step) => match self.seats.get_mut(step.seat).and_then(|s| s.as_mut()) {
                Some(seat) => {
                    seat.fed = 0;
                    if seat.cache.is_empty() {
                        // A prompt: start from the longest prefix computed before, if any.
                        seat.prompt_step = true;
                        if let Some(hit) = self.prefixes.lookup(&seat.model, &step.tokens) {
                            seat.cache = hit.cache;
                            seat.fed = seat.cache.len();
                            self.metrics.record_prefix_hit(seat.fed);
                        }
                    }
                    seat.step = Some(step);
                }
                None => {
                    let _ = step
                        .reply
                        .send(Err(anyhow::anyhow!("internal: step for an empty seat")));
                }
            },
            Msg::Leave(i) => {
                if let Some(s) = self.seats.get_mut(i) {
                    *s = None;
                }
            }
            Msg::Shutdown => self.shutting_down = true,
        }
    }

    /// Seats waiting jobs in free seats, each on a thread of its own.
    fn admit(&mut self) {
        while let Some(free) = self.seats.iter().position(|s| s.is_none()) {
            let Some(job) = self.waiting.pop_front() else {
                return;
            };
            self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
            if job.cancel.load(Ordering::SeqCst) || job.events.is_closed() {
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.seats[free] = Some(Seat {
                model: Arc::clone(&job.model),
                cache: KvCache::with_type(&self.base.model.spec, self.kv_type),
                step: None,
                fed: 0,
                prompt_step: false,
            });
            let models = Arc::clone(&self.models);
            let metrics = Arc::clone(&self.metrics);
            let tx = self.tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("smolt-serve-seat-{free}"))
                .spawn(move || sequence(&models, &metrics, job, free, tx));
            if spawned.is_err() {
                // No thread, no sequence: the job's sender was moved into the closure and
                // dropped with it, so its client sees the stream end.
                self.seats[free] = None;
            }
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            self.admit();
            if self.shutting_down && self.waiting.is_empty() && self.occupied() == 0 {
                return;
            }
            // Wait for work: block while nothing is posted; once something is, give the
            // other seats a moment to post their next token too.
            if self.posted() == 0 {
                match rx.recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => return,
                }
                continue;
            }
            let deadline = Instant::now() + GATHER;
            while self.posted() < self.occupied() {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(msg) => {
                        self.take(msg);
                        self.admit();
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            while let Ok(msg) = rx.try_recv() {
                self.take(msg);
            }
            self.step();
        }
    }

    /// One forward pass over every posted seat: decoding ones whole, prompts a chunk each
    /// within [`PREFILL_PER_STEP`]; then the head for the seats whose tokens are all in.
    fn step(&mut self) {
        let base_served = Arc::clone(&self.base);
        let base = &base_served.model;
        let mut budget = PREFILL_PER_STEP;
        // (seat, tokens fed now, completes its step)
        let mut plan: Vec<(usize, std::ops::Range<usize>, bool)> = Vec::new();
        for (i, seat) in self.seats.iter().enumerate() {
            let Some(seat) = seat else { continue };
            let Some(step) = &seat.step else { continue };
            let left = step.tokens.len() - seat.fed;
            let n = if left <= 1 {
                left
            } else if budget == 0 {
                continue;
            } else if left <= budget {
                budget -= left;
                left
            } else {
                // Whole aligned chunks, leaving at least PREFIX_MIN_FEED for the last one.
                let align = smolt_model::PREFIX_ALIGN;
                let mut n = budget / align * align;
                if left - n < smolt_model::PREFIX_MIN_FEED {
                    n = n.saturating_sub(align);
                }
                if n == 0 {
                    continue;
                }
                budget -= n;
                n
            };
            plan.push((i, seat.fed..seat.fed + n, seat.fed + n == step.tokens.len()));
        }
        if plan.is_empty() {
            return;
        }
        self.metrics
            .record_step(plan.len(), plan.iter().map(|p| p.1.len()).sum());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            rayon::scope(|_| self.forward(base, &plan))
        }));
        let results = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                plan.iter().map(|_| Err(anyhow::anyhow!("{msg}"))).collect()
            }
            Err(_) => plan
                .iter()
                .map(|_| Err(anyhow::anyhow!("the forward pass panicked")))
                .collect(),
        };
        for ((i, range, done), result) in plan.into_iter().zip(results) {
            let Some(seat) = self.seats[i].as_mut() else {
                continue;
            };
            seat.fed = range.end;
            if done || result.is_err() {
                if let Some(step) = seat.step.take() {
                    if std::mem::take(&mut seat.prompt_step) && result.is_ok() {
                        self.prefixes.insert(&seat.model, &step.tokens, &seat.cache);
                        self.metrics.set_prefix_bytes(self.prefixes.bytes());
                    }
                    let _ = step.reply.send(result.map(|r| r.unwrap_or_default()));
                }
            }
        }
    }

    /// The batched forward of `plan` and the logits of the seats it completes (`None` for the
    /// others), in `plan`'s order.
    #[allow(clippy::type_complexity)]
    fn forward(
        &mut self,
        base: &smolt_model::Model,
        plan: &[(usize, std::ops::Range<usize>, bool)],
    ) -> anyhow::Result<Vec<anyhow::Result<Option<Vec<f32>>>>> {
        let mut caches: Vec<(&ServedModel, &mut KvCache, &[u32])> = Vec::new();
        let mut rest = &mut self.seats[..];
        let mut offset = 0;
        for (i, range, _) in plan {
            let (_, tail) = rest.split_at_mut(i - offset);
            let (this, tail) = tail.split_at_mut(1);
            let seat = this[0].as_mut().expect("planned seats are occupied");
            let tokens = &seat
                .step
                .as_ref()
                .expect("planned seats have posted")
                .tokens;
            caches.push((&seat.model, &mut seat.cache, &tokens[range.clone()]));
            rest = tail;
            offset = i + 1;
        }
        let mut seqs: Vec<BatchSeq> = caches
            .iter_mut()
            .map(|(m, cache, tokens)| BatchSeq {
                tokens,
                cache,
                adapter: m.adapter.is_some().then_some(&m.model),
            })
            .collect();
        let hidden = base.forward_batch(&mut seqs)?;
        drop(seqs);
        let d = base.spec.d_model;
        let vocab = base.spec.vocab_size;
        // The head: one product for every completed seat that wants all logits, the allowed
        // rows alone for those that want few.
        let mut out: Vec<anyhow::Result<Option<Vec<f32>>>> = Vec::with_capacity(plan.len());
        let mut full_rows = Vec::new();
        let mut full_idx = Vec::new();
        for (k, (i, _, done)) in plan.iter().enumerate() {
            let h = &hidden[k * d..(k + 1) * d];
            if !done {
                out.push(Ok(None));
                continue;
            }
            let seat = self.seats[*i].as_ref().expect("planned seats are occupied");
            match seat.step.as_ref().and_then(|s| s.only.as_ref()) {
                Some(ids) => {
                    out.push(Ok(Some(scatter_rows(
                        ids,
                        &base.lm_head_rows(h, ids),
                        vocab,
                    ))));
                }
                None => {
                    full_rows.extend_from_slice(h);
                    full_idx.push(k);
                    out.push(Ok(None));
                }
            }
        }
        if !full_idx.is_empty() {
            // Each seat gets its own row (1 MB for Gemma's vocabulary): copied on the pool,
            // side by side, as the sixteen copies of a full batch are a few milliseconds.
            let logits = base.lm_head(&full_rows);
            let rows: Vec<Vec<f32>> = logits.par_chunks(vocab).map(<[f32]>::to_vec).collect();
            for (&k, row) in full_idx.iter().zip(rows) {
                out[k] = Ok(Some(row));
            }
        }
        Ok(out)
    }
}

/// The model as one seated sequence sees it: each feed is posted to the engine, which runs it
/// with the other seats' in one pass.
struct Seated<'a> {
    seat: usize,
    tx: Sender<Msg>,
    vocab: usize,
    /// Where the logits sampled from are kept, when the job wants log-probabilities.
    observed: Option<&'a RefCell<Observed>>,
}

impl Seated<'_> {
    /// Keeps what the decode loop will sample from, for [`Observed::logprobs`].
    fn observe(&self, logits: &[f32]) {
        if let Some(o) = self.observed {
            let mut o = o.borrow_mut();
            o.logits.clear();
            o.logits.extend_from_slice(logits);
            o.fresh = true;
        }
    }

    fn post(&self, tokens: &[u32], only: Option<Vec<u32>>) -> anyhow::Result<Vec<f32>> {
        let (reply, answer) = sync_channel(1);
        self.tx
            .send(Msg::Step(Step {
                seat: self.seat,
                tokens: tokens.to_vec(),
                only,
                reply,
            }))
            .map_err(|_| anyhow::anyhow!("the engine has stopped"))?;
        answer
            .recv()
            .map_err(|_| anyhow::anyhow!("the engine dropped this sequence"))?
    }
}

impl LogitsSource for Seated<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        let logits = self.post(tokens, None)?;
        self.observe(&logits);
        Ok(logits)
    }

    /// The allowed rows alone when few are allowed, as `smolt_decode::ModelLogits` decides.
    fn forward_masked(&mut self, tokens: &[u32], allowed: &TokenMask) -> anyhow::Result<Vec<f32>> {
        if let Some(ids) = subset_rows(allowed, self.vocab).filter(|_| !tokens.is_empty()) {
            let logits = self.post(tokens, Some(ids))?;
            self.observe(&logits);
            return Ok(logits);
        }
        let mut logits = self.post(tokens, None)?;
        allowed.apply(&mut logits);
        self.observe(&logits);
        Ok(logits)
    }
}

/// The logits of a sequence's last step, for the log-probabilities of the tokens reported
/// after it.
struct Observed {
    /// Alternatives per token.
    top: usize,
    logits: Vec<f32>,
    /// Set by a step, cleared by the first token reported after it.
    fresh: bool,
}

impl Observed {
    /// The log-probabilities of output tokens `new`, as `answer_streaming_with` reports
    /// them: by its contract, the first is the one sampled from the last step's logits when a
    /// step came since the previous report, and every other one was forced by the grammar.
    fn logprobs(&mut self, new: &[u32]) -> Vec<TokenLogprob> {
        let fresh = std::mem::take(&mut self.fresh);
        new.iter()
            .enumerate()
            .map(|(i, &id)| {
                if i == 0 && fresh {
                    TokenLogprob::sampled(&self.logits, id, self.top)
                } else {
                    TokenLogprob::forced(id, self.top)
                }
            })
            .collect()
    }
}

/// Leaves the seat however the sequence's thread ends.
struct LeaveOnDrop {
    seat: usize,
    tx: Sender<Msg>,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Leave(self.seat));
    }
}

/// A seated sequence's thread: the decode loop, then the final event.
fn sequence(models: &Models, metrics: &Metrics, job: Job, seat: usize, tx: Sender<Msg>) {
    let _leave = LeaveOnDrop {
        seat,
        tx: tx.clone(),
    };
    let served = &*job.model;
    let observed = job.logprobs.map(|top| {
        RefCell::new(Observed {
            top,
            logits: Vec::new(),
            fresh: false,
        })
    });
    let source = Seated {
        seat,
        tx,
        vocab: served.model.spec.vocab_size,
        observed: observed.as_ref(),
    };
    metrics.running.fetch_add(1, Ordering::SeqCst);
    // A panic in the loop fails this request with a 500 instead of taking the server down.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        run(served, &models.tokenizer, &job, source, observed.as_ref())
    }));
    metrics.running.fetch_sub(1, Ordering::SeqCst);
    let event = match outcome {
        Ok(Ok(Outcome::Done {
            finish,
            completion_tokens,
            confidence,
            guard,
        })) => {
            metrics.record_tokens(&served.id, job.prompt.len(), completion_tokens);
            metrics.record_guard(guard);
            Event::Done {
                finish,
                prompt_tokens: job.prompt.len(),
                completion_tokens,
                confidence,
            }
        }
        Ok(Ok(Outcome::Cancelled)) => {
            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err(e)) => Event::Failed(format!("generation failed: {e:#}")),
        Err(_) => Event::Failed("generation failed: the sequence panicked".into()),
    };
    // The client may have gone in the meantime: nothing to tell then.
    let _ = job.events.send((job.choice, event));
}

enum Outcome {
    Done {
        finish: FinishReason,
        completion_tokens: usize,
        confidence: Option<Vec<(String, f32)>>,
        /// Where the ramble guard stepped in (zero for an unconstrained answer).
        guard: smolt_constrain::GuardCounts,
    },
    Cancelled,
}

/// Generates one job through `source`, sending text as it is ready.
fn run(
    served: &ServedModel,
    tok: &Tokenizer,
    job: &Job,
    source: Seated,
    observed: Option<&RefCell<Observed>>,
) -> anyhow::Result<Outcome> {
    let mut sink = Sink {
        tok,
        ids: Vec::new(),
        text: TextStream::new(job.stop.clone()),
        observed,
        choice: job.choice,
        events: &job.events,
        cancel: &job.cancel,
        cancelled: false,
    };
    let model = &served.model;
    let context = Context {
        fed: 0,
        length: model.spec.context_length,
        special: &model.special,
    };
    let out = answer_streaming_with(
        source,
        context,
        &job.prompt,
        job.constraint.as_deref(),
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
    if !step.text.is_empty() && !sink.send(step.text, Vec::new()) {
        return Ok(Outcome::Cancelled);
    }
    let confidence = job.confidence.then(|| {
        let bytes: Vec<Vec<u8>> = out.ids.iter().map(|&id| tok.token_bytes(id)).collect();
        smolt_decode::field_confidence(&bytes, &out.probs)
    });
    Ok(Outcome::Done {
        finish,
        completion_tokens: out.ids.len(),
        confidence,
        guard: out.stats.map(|s| s.guard).unwrap_or_default(),
    })
}

/// Where generated ids go: decoded, cut at stop strings, sent.
struct Sink<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    text: TextStream,
    observed: Option<&'a RefCell<Observed>>,
    choice: usize,
    events: &'a UnboundedSender<(usize, Event)>,
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
        let logprobs = self
            .observed
            .map(|o| o.borrow_mut().logprobs(new))
            .unwrap_or_default();
        if (!step.text.is_empty() || !logprobs.is_empty()) && !self.send(step.text, logprobs) {
            self.cancelled = true;
            return false;
        }
        !step.stop
    }

    /// `false`: the client is gone.
    fn send(&self, text: String, logprobs: Vec<TokenLogprob>) -> bool {
        self.events
            .send((self.choice, Event::Text { text, logprobs }))
            .is_ok()
    }
}
