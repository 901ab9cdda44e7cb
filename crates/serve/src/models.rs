//! The models a server answers for: the base model and one `Model` per adapter with the
//! adapter attached. Every `Model` maps the same GGUF file, so the quantized weights are in
//! memory once (shared file pages); each adapter adds only its own low-rank matrices.
//!
//! Each served model also carries how its prompts are rendered and its JSON laid out: an
//! adapter trained by `smolt train` recorded its task in its run directory, and the server
//! renders conversations and constrains JSON exactly as training did (the base model uses the
//! default task: the model's own chat template, `json.dumps` layout).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use smolt_constrain::{ConstraintEngine, JsonLayout};
use smolt_model::{Model, Precision};
use smolt_task::{ChatFormat, Task};
use smolt_tokenizer::Tokenizer;

use crate::config::ServeConfig;

/// One name clients can ask for.
pub struct ServedModel {
    /// What requests put in `model`.
    pub id: String,
    /// The adapter's folder; `None` for the base model.
    pub adapter: Option<PathBuf>,
    pub model: Model,
    /// How `messages` become the prompt.
    pub chat: ChatFormat,
    /// Compiles `response_format` constraints with this model's JSON layout.
    pub engine: Arc<ConstraintEngine>,
}

/// Everything loaded: the tokenizer (one vocabulary: adapters do not change it) and the models.
/// Adapters come and go at run time (`load_adapter`, `unload_adapter`); a request holds its
/// model (an `Arc`) until it ends, so unloading never pulls an adapter from under a sequence.
pub struct Models {
    pub tokenizer: Arc<Tokenizer>,
    /// The base model first, then the adapters in the order they were loaded.
    served: RwLock<Vec<Arc<ServedModel>>>,
    /// Prompt + output tokens allowed per request.
    pub context: usize,
    /// Unix time the models were loaded (`created` in `/v1/models`).
    pub created: u64,
    path: PathBuf,
    precision: Precision,
    /// Building an engine costs ≈0.7 s and its token trie memory: one per JSON layout.
    engines: Mutex<Vec<(JsonLayout, Arc<ConstraintEngine>)>>,
}

/// Why an adapter could not be loaded or unloaded: the request's fault (a 4xx), by kind.
#[derive(Debug)]
pub enum AdapterError {
    /// No served model has this name.
    NotFound(String),
    /// The name is taken, or names the base model.
    Conflict(String),
    /// The folder does not hold a usable adapter for this base.
    Invalid(String),
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterError::NotFound(m) | AdapterError::Conflict(m) | AdapterError::Invalid(m) => {
                f.write_str(m)
            }
        }
    }
}

/// A poisoned lock only means a panic elsewhere while the list was borrowed: it is intact.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Models {
    /// Loads the base model and every adapter, failing with a message that names the file.
    pub fn load(config: &ServeConfig) -> anyhow::Result<Models> {
        config.check()?;
        let t = Instant::now();
        let path = &config.model;
        let mut base = Model::load(path, config.precision)
            .with_context(|| format!("cannot load {}", path.display()))?;
        // Adapters' sequences run on the base model's products, so its panels serve them all.
        if config
            .keep_panels
            .unwrap_or_else(Model::keeping_panels_pays)
        {
            base.keep_panels();
        }
        let tokenizer = Arc::new(
            Tokenizer::from_gguf(base.gguf())
                .with_context(|| format!("{} has no usable tokenizer", path.display()))?,
        );
        let model_context = base.spec.context_length;
        let context = match config.max_model_len {
            Some(n) if n > model_context => anyhow::bail!(
                "--max-model-len {n} is more than the model's context length ({model_context})"
            ),
            Some(n) => n,
            None => model_context,
        };
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let models = Models {
            tokenizer,
            served: RwLock::new(Vec::new()),
            context,
            created,
            path: path.clone(),
            precision: config.precision,
            engines: Mutex::new(Vec::new()),
        };
        let base_task = Task::default();
        let served = ServedModel {
            id: config.model_id.clone(),
            adapter: None,
            chat: base_task
                .chat_format(models.tokenizer.as_ref())
                .context("the model's chat template")?,
            engine: models.engine_for(base_task.json_layout())?,
            model: base,
        };
        write(&models.served).push(Arc::new(served));
        for a in &config.adapters {
            let adapter = models.open_adapter(&a.name, &a.dir)?;
            write(&models.served).push(Arc::new(adapter));
        }
        if std::env::var_os("SMOLT_LOG").is_some() {
            eprintln!(
                "smolt: loaded {} and {} adapter(s) in {:.2} s",
                path.display(),
                config.adapters.len(),
                t.elapsed().as_secs_f64()
            );
        }
        Ok(models)
    }

    fn engine_for(&self, layout: JsonLayout) -> anyhow::Result<Arc<ConstraintEngine>> {
        let mut engines = self.engines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, e)) = engines.iter().find(|(l, _)| *l == layout) {
            return Ok(Arc::clone(e));
        }
        let e = ConstraintEngine::with_json_layout(Arc::clone(&self.tokenizer), layout.clone())
            .context("cannot build the constraint engine for this vocabulary")?;
        engines.push((layout, Arc::clone(&e)));
        Ok(e)
    }

    /// The base model mapped again with the adapter in `dir` attached, and its run's task.
    fn open_adapter(&self, name: &str, dir: &Path) -> anyhow::Result<ServedModel> {
        let mut model = Model::load(&self.path, self.precision)
            .with_context(|| format!("cannot load {}", self.path.display()))?;
        smolt_lora::attach_adapter(&mut model, dir)
            .with_context(|| format!("cannot apply the adapter `{name}` in {}", dir.display()))?;
        // A training run's task says how its prompts were rendered; a bare PEFT folder
        // has none and gets the defaults.
        let task = Task::of_run(dir)
            .with_context(|| format!("the task of the adapter run {}", dir.display()))?
            .unwrap_or_default();
        Ok(ServedModel {
            id: name.to_string(),
            adapter: Some(dir.to_path_buf()),
            chat: task
                .chat_format(self.tokenizer.as_ref())
                .with_context(|| format!("the chat format of adapter `{name}`"))?,
            engine: self.engine_for(task.json_layout())?,
            model,
        })
    }

    /// Every served model now: the base first.
    pub fn served(&self) -> Vec<Arc<ServedModel>> {
        read(&self.served).clone()
    }

    /// The base model (never unloaded).
    pub fn base(&self) -> Arc<ServedModel> {
        Arc::clone(&read(&self.served)[0])
    }

    /// The model a request names.
    pub fn find(&self, id: &str) -> Option<Arc<ServedModel>> {
        read(&self.served).iter().find(|m| m.id == id).cloned()
    }

    /// Loads the adapter in `dir` under `name` (vLLM's `POST /v1/load_lora_adapter`). Slow
    /// (the file is mapped again, the adapter read): call it off the async threads.
    pub fn load_adapter(&self, name: &str, dir: &Path) -> Result<(), AdapterError> {
        if name.is_empty() {
            return Err(AdapterError::Invalid("lora_name is empty".into()));
        }
        if self.find(name).is_some() {
            return Err(AdapterError::Conflict(format!(
                "the name `{name}` is already served; unload it first or pick another"
            )));
        }
        let adapter = self
            .open_adapter(name, dir)
            .map_err(|e| AdapterError::Invalid(format!("{e:#}")))?;
        let mut served = write(&self.served);
        // Another request may have taken the name while this one was loading.
        if served.iter().any(|m| m.id == name) {
            return Err(AdapterError::Conflict(format!(
                "the name `{name}` is already served"
            )));
        }
        served.push(Arc::new(adapter));
        Ok(())
    }

    /// Stops serving the adapter `name` (vLLM's `POST /v1/unload_lora_adapter`); requests
    /// already running on it finish.
    pub fn unload_adapter(&self, name: &str) -> Result<(), AdapterError> {
        let mut served = write(&self.served);
        match served.iter().position(|m| m.id == name) {
            Some(0) => Err(AdapterError::Conflict(format!(
                "`{name}` is the base model, which cannot be unloaded"
            ))),
            Some(i) => {
                served.remove(i);
                Ok(())
            }
            None => Err(AdapterError::NotFound(format!(
                "no adapter `{name}` is loaded"
            ))),
        }
    }
}
