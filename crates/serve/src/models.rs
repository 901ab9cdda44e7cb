//! The models a server answers for: the base model and one `Model` per adapter with the
//! adapter attached. Every `Model` maps the same GGUF file, so the quantized weights are in
//! memory once (shared file pages); each adapter adds only its own low-rank matrices.
//!
//! Each served model also carries how its prompts are rendered and its JSON laid out: an
//! adapter trained by `smolt train` recorded its task in its run directory, and the server
//! renders conversations and constrains JSON exactly as training did (the base model uses the
//! default task: the model's own chat template, `json.dumps` layout).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use smolt_constrain::{ConstraintEngine, JsonLayout};
use smolt_model::Model;
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
pub struct Models {
    pub tokenizer: Arc<Tokenizer>,
    pub served: Vec<ServedModel>,
    /// Prompt + output tokens allowed per request.
    pub context: usize,
    /// Unix time the models were loaded (`created` in `/v1/models`).
    pub created: u64,
}

impl Models {
    /// Loads the base model and every adapter, failing with a message that names the file.
    pub fn load(config: &ServeConfig) -> anyhow::Result<Models> {
        config.check()?;
        let t = Instant::now();
        let path = &config.model;
        let base = Model::load(path, config.precision)
            .with_context(|| format!("cannot load {}", path.display()))?;
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
        // Building an engine costs ≈0.7 s and its token trie memory: one per JSON layout.
        let mut engines: Vec<(JsonLayout, Arc<ConstraintEngine>)> = Vec::new();
        let mut engine_for = |layout: JsonLayout| -> anyhow::Result<Arc<ConstraintEngine>> {
            if let Some((_, e)) = engines.iter().find(|(l, _)| *l == layout) {
                return Ok(Arc::clone(e));
            }
            let e = ConstraintEngine::with_json_layout(Arc::clone(&tokenizer), layout.clone())
                .context("cannot build the constraint engine for this vocabulary")?;
            engines.push((layout, Arc::clone(&e)));
            Ok(e)
        };
        let base_task = Task::default();
        let mut served = vec![ServedModel {
            id: config.model_id.clone(),
            adapter: None,
            chat: base_task
                .chat_format(tokenizer.as_ref())
                .context("the model's chat template")?,
            engine: engine_for(base_task.json_layout())?,
            model: base,
        }];
        for a in &config.adapters {
            let mut model = Model::load(path, config.precision)
                .with_context(|| format!("cannot load {}", path.display()))?;
            smolt_lora::attach_adapter(&mut model, &a.dir).with_context(|| {
                format!(
                    "cannot apply the adapter `{}` in {}",
                    a.name,
                    a.dir.display()
                )
            })?;
            // A training run's task says how its prompts were rendered; a bare PEFT folder
            // has none and gets the defaults.
            let task = Task::of_run(&a.dir)
                .with_context(|| format!("the task of the adapter run {}", a.dir.display()))?
                .unwrap_or_default();
            served.push(ServedModel {
                id: a.name.clone(),
                adapter: Some(a.dir.clone()),
                chat: task
                    .chat_format(tokenizer.as_ref())
                    .with_context(|| format!("the chat format of adapter `{}`", a.name))?,
                engine: engine_for(task.json_layout())?,
                model,
            });
        }
        if std::env::var_os("SMOLT_LOG").is_some() {
            eprintln!(
                "smolt: loaded {} and {} adapter(s) in {:.2} s",
                path.display(),
                config.adapters.len(),
                t.elapsed().as_secs_f64()
            );
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Models {
            tokenizer,
            served,
            context,
            created,
        })
    }

    /// The index of the model a request names.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.served.iter().position(|m| m.id == id)
    }
}
