//! The safe layer under the C functions: models, sessions and one generation, in plain Rust.
//! Nothing here is `unsafe`; `lib.rs` only turns C arguments into these calls.
//!
//! A generation runs on the compute pool (the kernels split each product across its threads
//! without a hand-over per product) while the calling thread waits for text: each piece is
//! sent back to it, it runs the caller's callback and answers whether to go on. So the
//! callback always runs on the thread that called `smolt_generate`.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use smolt_constrain::{ConstraintEngine, ConstraintSpec, JsonLayout};
use smolt_decode::{answer_streaming, Answer, Ending, GenerateOptions, SamplingParams};
use smolt_model::{KvCache, Model, Precision};
use smolt_task::{ChatFormat, Message, Role, Task};
use smolt_tokenizer::stream::TextStream;
use smolt_tokenizer::Tokenizer;

use crate::status::{panic_text, Error, Result};
use crate::SmoltStatus;

/// What the models loaded from one file share: the file's path (adapters load it again:
/// the mapped pages are shared), its vocabulary, and the constraint engines built so far.
struct Shared {
    path: PathBuf,
    tokenizer: Arc<Tokenizer>,
    /// One engine per JSON layout: building one costs ≈0.7 s on a 262k vocabulary.
    engines: Mutex<Vec<(JsonLayout, Arc<ConstraintEngine>)>>,
}

/// A model ready to generate: the base weights, perhaps with an adapter attached, and the task
/// its prompts are rendered with (the adapter's run's task, else the defaults).
pub struct LoadedModel {
    shared: Arc<Shared>,
    model: Model,
    task: Task,
    /// The chat format, or why the model's template cannot be used (reported on first use,
    /// so that a model with a broken template still serves raw prompts).
    chat: std::result::Result<ChatFormat, String>,
}

/// Starts the global compute pool once: `SMOLT_THREADS` threads (default: one per core), with
/// the stack the CLI gives its pool (generation runs on it).
fn init_pool() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The allocation policy applies to threads that have not allocated yet.
        smolt_model::keep_freed_memory();
        let threads = std::env::var("SMOLT_THREADS")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        // Fails only when the host program built the global pool already: then it is used.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .stack_size(8 << 20)
            .thread_name(|i| format!("smolt-compute-{i}"))
            .build_global();
    });
}

impl LoadedModel {
    /// Loads a GGUF file: a missing or unreadable file is [`SmoltStatus::Io`], anything wrong
    /// with its content [`SmoltStatus::Model`].
    pub fn load(path: &Path) -> Result<LoadedModel> {
        init_pool();
        std::fs::File::open(path).map_err(|e| {
            Error::new(
                SmoltStatus::Io,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
        let model = open_model(path)?;
        let tokenizer = Tokenizer::from_gguf(model.gguf()).map_err(|e| {
            Error::new(
                SmoltStatus::Model,
                format!("{} has no usable tokenizer: {e}", path.display()),
            )
        })?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            tokenizer: Arc::new(tokenizer),
            engines: Mutex::new(Vec::new()),
        });
        Ok(LoadedModel::with_task(shared, model, Task::default()))
    }

    fn with_task(shared: Arc<Shared>, model: Model, task: Task) -> LoadedModel {
        let chat = task
            .chat_format(shared.tokenizer.as_ref())
            .map_err(|e| format!("the chat format: {e}"));
        LoadedModel {
            shared,
            model,
            task,
            chat,
        }
    }

    /// The same base model with the adapter in `dir` (a training run directory or a PEFT
    /// folder) attached instead of any adapter this one has, and the run's task if it has one.
    pub fn with_adapter(&self, dir: &Path) -> Result<LoadedModel> {
        let adapter_error = |e: anyhow::Error| {
            Error::new(
                SmoltStatus::Adapter,
                format!("cannot apply the adapter in {}: {e:#}", dir.display()),
            )
        };
        let mut model = open_model(&self.shared.path)?;
        smolt_lora::attach_adapter(&mut model, dir).map_err(adapter_error)?;
        // A training run's task says how its prompts were rendered; a bare PEFT folder has
        // none and gets the defaults.
        let task = Task::of_run(dir)
            .map_err(adapter_error)?
            .unwrap_or_default();
        Ok(LoadedModel::with_task(
            Arc::clone(&self.shared),
            model,
            task,
        ))
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    pub fn context_length(&self) -> usize {
        self.model.spec.context_length
    }

    /// The prompt's token ids, rendered as `format` says.
    fn encode(&self, prompt: &str, format: PromptFormat) -> Result<Vec<u32>> {
        let tok = self.tokenizer();
        let ids = match format {
            PromptFormat::Raw => tok.encode(prompt, tok.add_bos_token(), true),
            PromptFormat::Chat => {
                let chat = self
                    .chat
                    .as_ref()
                    .map_err(|e| Error::new(SmoltStatus::Prompt, e))?;
                let text = chat
                    .prompt(&[Message::new(Role::User, prompt)])
                    .map_err(|e| {
                        Error::new(SmoltStatus::Prompt, format!("the chat format: {e}"))
                    })?;
                // As in training: the rendering leaves BOS to the encoder.
                tok.encode(&text, true, true)
            }
            PromptFormat::Task => tok.encode(&self.task.prompt(prompt), true, true),
        };
        if ids.is_empty() {
            return Err(Error::new(SmoltStatus::Prompt, "the prompt is empty"));
        }
        Ok(ids)
    }

    /// The engine for this model's JSON layout, built on first use and shared with the other
    /// models of the same file.
    fn engine(&self) -> Result<Arc<ConstraintEngine>> {
        let layout = self.task.json_layout();
        let mut engines = self
            .shared
            .engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, e)) = engines.iter().find(|(l, _)| *l == layout) {
            return Ok(Arc::clone(e));
        }
        let e =
            ConstraintEngine::with_json_layout(Arc::clone(&self.shared.tokenizer), layout.clone())
                .map_err(|e| {
                    Error::new(
                        SmoltStatus::Model,
                        format!("cannot build the constraint engine for this vocabulary: {e}"),
                    )
                })?;
        engines.push((layout, Arc::clone(&e)));
        Ok(e)
    }
}

fn open_model(path: &Path) -> Result<Model> {
    Model::load(path, Precision::Fast).map_err(|e| {
        Error::new(
            SmoltStatus::Model,
            format!("cannot load {}: {e}", path.display()),
        )
    })
}

/// How the prompt text becomes the model's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptFormat {
    /// As it is (special-token text such as `<start_of_turn>` parsed), BOS if the vocabulary
    /// wants one.
    Raw,
    /// One user message in the model's chat format (the adapter's task decides which), then
    /// the opened assistant turn.
    Chat,
    /// The input of the task's template (`{input}`), as training rendered it.
    Task,
}

/// One generation's settings.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub prompt: &'a str,
    pub format: PromptFormat,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// A JSON Schema (text): the output is JSON valid against it.
    pub schema: Option<&'a str>,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer, or the constrained value is complete.
    Stop,
    /// `max_tokens` were generated (a constrained value is complete nonetheless).
    Length,
    /// `max_tokens` ran out inside an unfinished constrained value: NOT valid.
    Truncated,
    /// The model's context is full.
    ContextFull,
    /// The callback asked to stop.
    Callback,
    /// The session was cancelled.
    Cancelled,
}

/// A generation's text and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Everything generated (the pieces given to the callback, joined).
    pub text: String,
    /// The prompt's tokens, and how many of them were already in the session's cache.
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub output_tokens: usize,
    pub finish: Finish,
}

/// A model with its own KV cache: one generation at a time, cancellable from any thread.
pub struct Session {
    model: Arc<LoadedModel>,
    state: Mutex<State>,
    cancel: AtomicBool,
}

/// What a session keeps between generations.
struct State {
    cache: KvCache,
    /// The tokens whose keys and values `cache` holds, in order.
    cached: Vec<u32>,
    /// The last schema compiled, to reuse when the next request has the same one.
    constraint: Option<(String, smolt_constrain::Constraint)>,
}

/// What the generating thread tells the calling thread.
enum ToCaller {
    /// Text to pass to the callback; the generating thread waits for the answer.
    Piece(String),
    /// The end: the answer, the ids the text was made of, the text not yet sent, and whether
    /// a cancel stopped it.
    Done {
        answer: anyhow::Result<Answer>,
        ids: Vec<u32>,
        tail: String,
        cancelled: bool,
    },
}

impl Session {
    pub fn new(model: Arc<LoadedModel>) -> Session {
        let cache = model.model.new_cache();
        Session {
            model,
            state: Mutex::new(State {
                cache,
                cached: Vec::new(),
                constraint: None,
            }),
            cancel: AtomicBool::new(false),
        }
    }

    /// Stops the generation running on this session at its next token.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Generates from `req`, passing text to `on_piece` as it is ready (on this thread);
    /// `on_piece` returns `false` to stop. The prompt's tokens that start like the previous
    /// generation's are not computed again.
    pub fn generate(
        &self,
        req: &Request,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Output> {
        let mut state = match self.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(
                    SmoltStatus::Busy,
                    "this session is generating on another thread: use one session per thread",
                ))
            }
            // A previous generation panicked: its cache is cleared below.
            Err(TryLockError::Poisoned(p)) => {
                let mut s = p.into_inner();
                s.cache.clear();
                s.cached.clear();
                s
            }
        };
        // A cancel is for the generation running when it is asked, not for this one.
        self.cancel.store(false, Ordering::SeqCst);
        let model = &self.model;
        let ids = model.encode(req.prompt, req.format)?;
        let context = model.context_length();
        if ids.len() >= context {
            return Err(Error::new(
                SmoltStatus::Prompt,
                format!(
                    "the prompt is {} tokens; the model's context holds {context}",
                    ids.len()
                ),
            ));
        }
        if let Some(schema) = req.schema {
            compile(model, &mut state.constraint, schema)?;
        }
        let opts = GenerateOptions {
            // The constrained loop does not watch the context: stop it at the end.
            max_new_tokens: req.max_tokens.min(context - ids.len()),
            sampling: req.sampling.clone(),
            ..GenerateOptions::default()
        };
        // Keep the cached prefix this prompt shares; at least one token must be fed.
        let common = state
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count();
        let keep = common.min(ids.len() - 1);
        state.cache.truncate(keep);
        state.cached.truncate(keep);
        let state = &mut *state;
        let constraint = match (req.schema, &state.constraint) {
            (Some(_), Some((_, c))) => Some(c),
            _ => None,
        };
        let (answer, out_ids, text, cancelled) =
            self.run_on_pool(&mut state.cache, &ids[keep..], constraint, &opts, on_piece);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                state.cache.clear();
                state.cached.clear();
                return Err(Error::new(
                    SmoltStatus::Generation,
                    format!("generation failed: {e:#}"),
                ));
            }
        };
        // The cache holds the start of prompt + answer: remember which tokens.
        state.cached = ids.iter().chain(&answer.ids).copied().collect();
        state.cached.truncate(state.cache.len());
        let finish = match answer.ending {
            Ending::Complete => Finish::Stop,
            Ending::Limit if opts.max_new_tokens < req.max_tokens => Finish::ContextFull,
            Ending::Limit => Finish::Length,
            Ending::Truncated => Finish::Truncated,
            Ending::ContextFull => Finish::ContextFull,
            Ending::Stopped if cancelled => Finish::Cancelled,
            Ending::Stopped => Finish::Callback,
        };
        Ok(Output {
            text,
            prompt_tokens: ids.len(),
            reused_tokens: keep,
            output_tokens: out_ids.len(),
            finish,
        })
    }

    /// Runs the decode loop on a compute pool thread while this thread passes the text to
    /// `on_piece`. Returns the answer, the output ids the text is made of, the text, and
    /// whether a cancel ended it.
    fn run_on_pool(
        &self,
        cache: &mut KvCache,
        prompt: &[u32],
        constraint: Option<&smolt_constrain::Constraint>,
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> (anyhow::Result<Answer>, Vec<u32>, String, bool) {
        let model = &*self.model;
        let cancel = &self.cancel;
        let (to_caller, from_worker) = mpsc::channel::<ToCaller>();
        let (to_worker, from_caller) = mpsc::channel::<bool>();
        rayon::in_place_scope(|scope| {
            scope.spawn(move |_| {
                let mut ids = Vec::new();
                let mut text = TextStream::default();
                let mut cancelled = false;
                let tok = model.tokenizer();
                let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    answer_streaming(&model.model, cache, prompt, constraint, opts, |new| {
                        if cancel.load(Ordering::SeqCst) {
                            cancelled = true;
                            return false;
                        }
                        ids.extend_from_slice(new);
                        let step = text.push(&tok.decode(&ids, true));
                        if step.text.is_empty() {
                            return true;
                        }
                        // The caller's answer; a caller gone (it cannot, but) means stop.
                        to_caller.send(ToCaller::Piece(step.text)).is_ok()
                            && from_caller.recv().unwrap_or(false)
                    })
                }))
                .unwrap_or_else(|p| Err(anyhow::anyhow!("internal error: {}", panic_text(&p))));
                let tail = text.finish(&tok.decode(&ids, true)).text;
                let _ = to_caller.send(ToCaller::Done {
                    answer,
                    ids,
                    tail,
                    cancelled,
                });
            });
            let mut text = String::new();
            let mut go_on = true;
            for msg in from_worker.iter() {
                match msg {
                    ToCaller::Piece(piece) => {
                        text.push_str(&piece);
                        // After a stop the callback is not called again.
                        go_on = go_on && on_piece(&piece);
                        if to_worker.send(go_on).is_err() {
                            break;
                        }
                    }
                    ToCaller::Done {
                        answer,
                        ids,
                        tail,
                        cancelled,
                    } => {
                        if !tail.is_empty() {
                            text.push_str(&tail);
                            if go_on {
                                on_piece(&tail);
                            }
                        }
                        return (answer, ids, text, cancelled);
                    }
                }
            }
            // The worker ended without a word: only a panic outside its own catch does that,
            // and the scope re-raises it when this closure returns.
            (
                Err(anyhow::anyhow!("the generating thread stopped")),
                Vec::new(),
                text,
                false,
            )
        })
    }
}

/// Makes `last` the constraint for `schema`: compiled now, or kept from the last request.
fn compile(
    model: &LoadedModel,
    last: &mut Option<(String, smolt_constrain::Constraint)>,
    schema: &str,
) -> Result<()> {
    if last.as_ref().is_some_and(|(s, _)| s == schema) {
        return Ok(());
    }
    let bad = |e: smolt_constrain::ConstrainError| {
        Error::new(SmoltStatus::Schema, format!("invalid JSON Schema: {e}"))
    };
    let spec = ConstraintSpec::json_schema_str(schema).map_err(bad)?;
    let c = model.engine()?.compile(&spec).map_err(bad)?;
    *last = Some((schema.to_string(), c));
    Ok(())
}
