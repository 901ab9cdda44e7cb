//! Training data: a task's JSONL files → token ids with a loss mask.
//!
//! The records are read and rendered by the task layer ([`smolt_task::read_jsonl`]: formats,
//! templates, chat templates, file:line errors); here each prompt and answer is tokenized and
//! fitted to `max_len`.
//!
//! Prompt and answer are tokenized separately and concatenated, exactly as at decode time where
//! the prompt is encoded and the answer is generated after it; tokenizing them together could
//! merge tokens across the boundary and teach the model a split it never sees when decoding.

use std::path::{Path, PathBuf};

use anyhow::Result;
use smolt_task::prompt::{cut_middle, MIN_PROMPT_TOKENS};
use smolt_task::{
    read_jsonl, AnswerSchema, DataError, DataErrors, Format, Location, Overlong, Task, TextEncoder,
    TextExample,
};

/// One tokenized training example.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Token ids: BOS, prompt, answer, EOS.
    pub ids: Vec<u32>,
    /// `loss_mask[t]` is true when `ids[t]` is a target, i.e. the loss includes
    /// `-log p(ids[t] | ids[..t])`. True exactly on the answer tokens and the final EOS, and
    /// never at t = 0.
    pub loss_mask: Vec<bool>,
    /// Where the example came from.
    pub source: Location,
}

impl Example {
    /// Number of target tokens (positions where the loss is taken).
    pub fn n_targets(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether the example has no tokens (never true for loaded data).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What loading did besides producing examples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataStats {
    /// Non-empty lines read.
    pub records: usize,
    /// Examples whose prompt was shortened to fit `max_len`.
    pub truncated: usize,
    /// Examples dropped because they could not be made to fit.
    pub skipped: usize,
    /// Tokens in the kept examples.
    pub tokens: usize,
    /// Target tokens in the kept examples.
    pub target_tokens: usize,
}

/// A loaded, tokenized data file.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: Format,
    pub examples: Vec<Example>,
    pub stats: DataStats,
}

impl Dataset {
    /// A human line such as "train.jsonl: 812 examples, 3 truncated, 1 skipped (> 512 tokens)".
    pub fn describe(&self, max_len: usize) -> String {
        let mut s = format!(
            "{}: {} examples, {} tokens ({} trained on)",
            self.path.display(),
            self.examples.len(),
            self.stats.tokens,
            self.stats.target_tokens
        );
        if self.stats.truncated > 0 || self.stats.skipped > 0 {
            s += &format!(
                "; longer than max_len = {max_len}: {} truncated, {} skipped",
                self.stats.truncated, self.stats.skipped
            );
        }
        s
    }

    /// SHA-256 over all ids and masks, so a resume can tell the data changed under it.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for e in &self.examples {
            h.update((e.ids.len() as u64).to_le_bytes());
            for (&id, &m) in e.ids.iter().zip(&e.loss_mask) {
                h.update(id.to_le_bytes());
                h.update([m as u8]);
            }
        }
        crate::config::hex(&h.finalize())
    }
}

/// Tokenizes one text example; `None` when it must be skipped. The bool says it was truncated.
pub fn tokenize_example(
    ex: &TextExample,
    enc: &dyn TextEncoder,
    max_len: usize,
    overlong: Overlong,
) -> Option<(Example, bool)> {
    let mut prompt = enc.encode(&ex.prompt, true);
    let mut answer = enc.encode(&ex.answer, false);
    answer.push(enc.eos_id());
    let mut truncated = false;
    if prompt.len() + answer.len() > max_len {
        match overlong {
            Overlong::Skip => return None,
            Overlong::TruncatePrompt => {
                let budget = max_len.checked_sub(answer.len())?;
                if budget < MIN_PROMPT_TOKENS.min(prompt.len()) || budget == 0 {
                    return None;
                }
                truncated = cut_middle(&mut prompt, budget);
            }
        }
    }
    let n_prompt = prompt.len();
    let mut ids = prompt;
    ids.extend_from_slice(&answer);
    let mut loss_mask = vec![false; ids.len()];
    loss_mask[n_prompt.max(1)..].fill(true);
    Some((
        Example {
            ids,
            loss_mask,
            source: ex.source.clone(),
        },
        truncated,
    ))
}

/// Loads a JSONL file end to end: parse, check against the schema, tokenize, fit to the
/// task's `max_len`. Errors carry `file:line`.
pub fn load_dataset(
    path: &Path,
    task: &Task,
    enc: &dyn TextEncoder,
    schema: Option<&AnswerSchema>,
) -> Result<Dataset> {
    let (format, texts) = read_jsonl(path, task, enc)?;
    if let Some(schema) = schema {
        let errors: Vec<DataError> = texts
            .iter()
            .flat_map(|t| {
                schema
                    .check(t.answer_json.as_ref())
                    .into_iter()
                    .map(|message| DataError {
                        at: t.source.clone(),
                        message,
                    })
            })
            .collect();
        if !errors.is_empty() {
            return Err(DataErrors {
                file: path.to_path_buf(),
                errors,
            }
            .into());
        }
    }
    let mut stats = DataStats {
        records: texts.len(),
        ..DataStats::default()
    };
    let mut examples = Vec::with_capacity(texts.len());
    for t in &texts {
        match tokenize_example(t, enc, task.max_len, task.overlong) {
            Some((ex, truncated)) => {
                stats.truncated += truncated as usize;
                stats.tokens += ex.len();
                stats.target_tokens += ex.n_targets();
                examples.push(ex);
            }
            None => stats.skipped += 1,
        }
    }
    if examples.is_empty() {
        anyhow::bail!(
            "{}: all {} examples are longer than max_len = {} and were skipped; raise max_len or use overlong = \"truncate-prompt\"",
            path.display(),
            stats.records,
            task.max_len
        );
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        format,
        examples,
        stats,
    })
}

/// Loads what a task names: the schema (if any), the training data and the validation data
/// (if any), printing nothing. The CLI's whole data step.
pub fn load_for_task(task: &Task, enc: &dyn TextEncoder) -> Result<(Dataset, Option<Dataset>)> {
    if task.data.as_os_str().is_empty() {
        anyhow::bail!("no training data: set `data` in the config or pass --data");
    }
    let schema = task.answer_schema()?;
    let train = load_dataset(&task.data, task, enc, schema.as_ref())?;
    let valid = task
        .valid
        .as_deref()
        .map(|v| load_dataset(v, task, enc, schema.as_ref()))
        .transpose()?;
    Ok((train, valid))
}
