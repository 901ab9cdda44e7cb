//! The training loop, and the trait a model implements to be trained by it.
//!
//! The loop knows nothing about transformers: a model exposes named f32 parameters with
//! gradient buffers and computes summed losses and their gradients for a micro-batch. That
//! keeps everything here (accumulation, clipping, schedule, checkpoints, resume, metrics)
//! testable on a toy model in milliseconds, and lets the Gemma 3 LoRA engine plug in unchanged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batch::{eval_plan, micro_batches_in, BatchStream, DataPosition};
use crate::checkpoint::{self, CheckpointMeta};
use crate::config::TrainConfig;
use crate::dataset::{Dataset, Example};
use crate::optim::{clip_grad_norm, scale_grads, AdamW, AdamWConfig};
use crate::report::{self, MetricRow, MetricsWriter, Outcome, Summary};
use crate::schedule::LrSchedule;
use smolt_lora::Param;

/// A summed loss: the trainer divides sums by target counts itself so that a mean over several
/// micro-batches (gradient accumulation) weighs every target token equally.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    /// Sum over target positions of -log p(target).
    pub loss_sum: f64,
    /// Number of target positions summed.
    pub n_targets: usize,
}

/// What a model must do to be trained by [`Trainer`].
pub trait Trainable {
    /// The trainable parameters, always in the same order (checkpoints rely on it).
    fn params(&self) -> &[Param];
    /// Mutable access for the optimiser and for restoring checkpoints.
    fn params_mut(&mut self) -> &mut [Param];
    /// The parameters as the final adapter file holds them (PEFT's layout, which may order
    /// some rows differently from [`Trainable::params`]); by default the same.
    fn export_params(&self) -> Vec<Param> {
        self.params().to_vec()
    }
    /// Runs forward and backward on one micro-batch, ADDING the gradient of the summed loss
    /// (not the mean) into each `Param::grad`, and returns that summed loss. Targets are the
    /// positions where [`Example::loss_mask`] is true. `rng` is for dropout; it is part of the
    /// checkpoint, so using it keeps resumes bit-identical, and any other randomness would not.
    fn forward_backward(&mut self, batch: &[&Example], rng: &mut ChaCha8Rng) -> Result<LossSum>;
    /// Summed loss without gradients and without dropout.
    fn eval_loss(&mut self, batch: &[&Example]) -> Result<LossSum>;
}

/// Raised when the loss or gradient norm stops being finite; the run directory keeps the last
/// good checkpoint, and no update from the bad step was applied.
#[derive(Debug)]
pub struct NonFiniteError {
    pub step: u64,
    pub what: String,
    pub last_checkpoint: Option<PathBuf>,
}

impl std::fmt::Display for NonFiniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training stopped at step {}: {}. Try a lower lr (or more warmup_steps) or a \
             smaller grad_clip. ",
            self.step + 1,
            self.what
        )?;
        match &self.last_checkpoint {
            Some(p) => write!(f, "The last good checkpoint is {}.", p.display()),
            None => write!(f, "No checkpoint had been written yet."),
        }
    }
}

impl std::error::Error for NonFiniteError {}

/// Files in a run directory.
pub const CONFIG_FILE: &str = smolt_task::RUN_TASK_FILE;

/// Where [`Trainer::keep_epoch_adapters`] puts the adapter after `pass` passes.
pub fn epoch_dir(run_dir: &Path, pass: u32) -> PathBuf {
    run_dir.join(format!("pass-{pass}"))
}
pub const METRICS_FILE: &str = "metrics.csv";
pub const LOSS_PLOT_FILE: &str = "loss.png";
pub const SUMMARY_FILE: &str = "summary.json";
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// A process-wide Ctrl-C (and SIGTERM) flag. The first signal asks the loop to save and stop after the
/// current step; a second one exits at once (for when a step is slow and the user means it).
pub fn ctrlc_flag() -> Result<Arc<AtomicBool>> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to abort)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

/// Stream 0 of the seed is the trainer's RNG (dropout); streams 1.. are the epochs' shuffles
/// (see [`crate::batch::epoch_plan`]); [`init_rng`] is for parameter initialisation.
fn trainer_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The RNG an engine should initialise its LoRA parameters from, so that the same seed gives
/// the same initial adapter whatever else draws from the seed.
pub fn init_rng(seed: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(u64::MAX);
    r
}

/// Runs training on a [`Trainable`] and writes everything into the run directory.
pub struct Trainer<'a, M: Trainable> {
    cfg: TrainConfig,
    run_dir: PathBuf,
    model: &'a mut M,
    train: &'a Dataset,
    valid: Option<&'a Dataset>,
    stop: Arc<AtomicBool>,
    stop_after: Option<u64>,
    epoch_adapters: bool,
    progress: bool,
    quiet: bool,
}

/// Mutable state of a run, all of it saved in checkpoints.
struct State {
    step: u64,
    micro_batches: u64,
    tokens: u64,
    target_tokens: u64,
    elapsed_before: f64,
    rng: ChaCha8Rng,
    opt: AdamW,
    stream: BatchStream,
}

impl<'a, M: Trainable> Trainer<'a, M> {
    /// A trainer with a private stop flag; see [`Trainer::stop_flag`] to wire Ctrl-C.
    pub fn new(
        cfg: TrainConfig,
        run_dir: impl Into<PathBuf>,
        model: &'a mut M,
        train: &'a Dataset,
        valid: Option<&'a Dataset>,
    ) -> Self {
        Trainer {
            cfg,
            run_dir: run_dir.into(),
            model,
            train,
            valid,
            stop: Arc::new(AtomicBool::new(false)),
            stop_after: None,
            epoch_adapters: false,
            progress: true,
            quiet: false,
        }
    }

    /// Stop (saving a checkpoint) as soon as this flag is set, e.g. by [`ctrlc_flag`].
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = flag;
        self
    }

    /// Also write the adapter as it stands after each pass but the last into
    /// [`epoch_dir`]`(run, n)`, so that a caller can score every pass and keep the best (early
    /// stopping on what the task measures, not on loss).
    pub fn keep_epoch_adapters(mut self) -> Self {
        self.epoch_adapters = true;
        self
    }

    /// Stop as if interrupted once `step` steps are done: time-boxed runs, and tests of resume.
    pub fn stop_after(mut self, step: u64) -> Self {
        self.stop_after = Some(step);
        self
    }

    /// Hide the progress bar and the end summary (tests, embedding).
    pub fn quiet(mut self) -> Self {
        self.progress = false;
        self.quiet = true;
        self
    }

    /// Optimiser steps the run will take in total.
    pub fn total_steps(&self) -> u64 {
        if self.cfg.max_steps > 0 {
            return self.cfg.max_steps;
        }
        self.total_micro_batches()
            .unwrap_or(0)
            .div_ceil(self.cfg.grad_accum as u64)
    }

    /// In epoch mode, the micro-batches in all epochs; `None` in step mode (data cycles).
    fn total_micro_batches(&self) -> Option<u64> {
        (self.cfg.max_steps == 0).then(|| {
            micro_batches_in(
                &self.lengths(),
                self.cfg.batch_tokens,
                self.cfg.seed,
                self.cfg.epochs,
            ) as u64
        })
    }

    fn lengths(&self) -> Vec<usize> {
        self.train.examples.iter().map(Example::len).collect()
    }

    fn ckpt_dir(&self) -> PathBuf {
        self.run_dir.join(CHECKPOINT_DIR)
    }

    /// Starts a fresh run, refusing a directory that already has checkpoints (so a finished
    /// run is never overwritten by accident).
    pub fn run(self) -> Result<Summary> {
        self.run_inner(false)
    }

    /// Continues from the newest complete checkpoint in the run directory, or starts fresh if
    /// there is none. The continuation is bit-identical to a run that was never interrupted.
    pub fn resume(self) -> Result<Summary> {
        self.run_inner(true)
    }

    fn adamw_config(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.cfg.beta1,
            beta2: self.cfg.beta2,
            eps: self.cfg.eps,
            weight_decay: self.cfg.weight_decay,
        }
    }

    fn check_params(&self) -> Result<()> {
        let params = self.model.params();
        if params.is_empty() {
            bail!("the model has no trainable parameters");
        }
        for p in params {
            if p.grad.len() != p.data.len() || p.shape.iter().product::<usize>() != p.data.len() {
                bail!("parameter {}: shape, data and grad sizes disagree", p.name);
            }
        }
        Ok(())
    }

    fn setup(&mut self, resume: bool) -> Result<(State, Option<PathBuf>)> {
        self.cfg.validate()?;
        self.check_params()?;
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("creating run directory {}", self.run_dir.display()))?;
        let ckpt_dir = self.ckpt_dir();
        let fresh = State {
            step: 0,
            micro_batches: 0,
            tokens: 0,
            target_tokens: 0,
            elapsed_before: 0.0,
            rng: trainer_rng(self.cfg.seed),
            opt: AdamW::new(self.adamw_config(), self.model.params()),
            stream: BatchStream::new(
                self.lengths(),
                self.cfg.batch_tokens,
                self.cfg.seed,
                DataPosition::default(),
            ),
        };
        let latest = if resume {
            checkpoint::load_latest(&ckpt_dir)?
        } else {
            if !checkpoint::list(&ckpt_dir)?.is_empty() {
                bail!(
                    "{} already holds checkpoints of a run: pass --resume to continue it, or \
                     choose another output directory",
                    self.run_dir.display()
                );
            }
            None
        };
        smolt_lora::io::write_atomic(
            &self.run_dir.join(CONFIG_FILE),
            self.cfg.to_toml_string().as_bytes(),
        )?;
        let Some((path, ckpt)) = latest else {
            return Ok((fresh, None));
        };
        let m = &ckpt.meta;
        if m.config_hash != self.cfg.training_hash() {
            bail!(
                "{}: the checkpoint was made with different training settings; resume with \
                 the run's own {} (only paths, checkpoint_every, keep_checkpoints and \
                 eval_every may change)",
                path.display(),
                CONFIG_FILE
            );
        }
        if m.data_fingerprint != self.train.fingerprint() {
            bail!(
                "{}: the training data ({}) differs from the data this run was started with",
                path.display(),
                self.train.path.display()
            );
        }
        let params = self.model.params_mut();
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let saved: Vec<&str> = ckpt.params.iter().map(|p| p.0.as_str()).collect();
        if names != saved {
            bail!(
                "{}: the checkpoint's parameters do not match the model's",
                path.display()
            );
        }
        for (p, (_, shape, data)) in params.iter_mut().zip(&ckpt.params) {
            if p.shape[..] != shape[..] {
                bail!(
                    "{}: parameter {} has shape {:?} in the checkpoint, {:?} in the model",
                    path.display(),
                    p.name,
                    shape,
                    p.shape
                );
            }
            p.data.copy_from_slice(data);
        }
        let mut rng = trainer_rng(self.cfg.seed);
        let word_pos: u128 = m
            .rng_word_pos
            .parse()
            .with_context(|| format!("{}: bad rng state", path.display()))?;
        rng.set_word_pos(word_pos);
        let state = State {
            step: m.step,
            micro_batches: m.micro_batches,
            tokens: m.tokens,
            target_tokens: m.target_tokens,
            elapsed_before: m.elapsed_s,
            rng,
            opt: checkpoint::restore_optimizer(self.adamw_config(), &ckpt),
            stream: BatchStream::new(
                self.lengths(),
                self.cfg.batch_tokens,
                self.cfg.seed,
                m.position,
            ),
        };
        if !self.quiet {
            eprintln!("resuming from {} (step {})", path.display(), m.step);
        }
        Ok((state, Some(path)))
    }

    /// The adapter after `pass` passes, as a run directory of its own (adapter + config).
    fn save_epoch_adapter(&self, pass: u32) -> Result<()> {
        let dir = epoch_dir(&self.run_dir, pass);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        smolt_lora::save_adapter(
            &dir,
            &self.model.export_params(),
            &self.cfg.lora_config()?,
            &self.cfg.task.model,
        )?;
        smolt_lora::io::write_atomic(&dir.join(CONFIG_FILE), self.cfg.to_toml_string().as_bytes())?;
        Ok(())
    }

    fn save_checkpoint(&mut self, st: &State, elapsed: f64) -> Result<PathBuf> {
        let meta = CheckpointMeta {
            version: 0,
            step: st.step,
            micro_batches: st.micro_batches,
            position: st.stream.position(),
            rng_word_pos: st.rng.get_word_pos().to_string(),
            tokens: st.tokens,
            target_tokens: st.target_tokens,
            elapsed_s: elapsed,
            config_hash: self.cfg.training_hash(),
            data_fingerprint: self.train.fingerprint(),
            param_names: self.model.params().iter().map(|p| p.name.clone()).collect(),
        };
        let dir = self.ckpt_dir();
        let path = checkpoint::save(&dir, &meta, self.model.params(), &st.opt)?;
        checkpoint::prune(&dir, self.cfg.keep_checkpoints)?;
        Ok(path)
    }

    fn evaluate(&mut self) -> Result<Option<f64>> {
        let Some(valid) = self.valid else {
            return Ok(None);
        };
        let lengths: Vec<usize> = valid.examples.iter().map(Example::len).collect();
        let mut total = LossSum::default();
        for mb in eval_plan(&lengths, self.cfg.batch_tokens) {
            let batch: Vec<&Example> = mb.iter().map(|&i| &valid.examples[i]).collect();
            let l = self.model.eval_loss(&batch)?;
            total.loss_sum += l.loss_sum;
            total.n_targets += l.n_targets;
        }
        Ok(Some(total.loss_sum / total.n_targets.max(1) as f64))
    }

    fn run_inner(mut self, resume: bool) -> Result<Summary> {
        let (mut st, mut last_ckpt) = self.setup(resume)?;
        let total_steps = self.total_steps();
        let total_micro = self.total_micro_batches();
        let sched = LrSchedule::new(&self.cfg, total_steps);
        let mut metrics = MetricsWriter::open(&self.run_dir.join(METRICS_FILE), st.step)?;
        let started = Instant::now();
        let elapsed = |st: &State| st.elapsed_before + started.elapsed().as_secs_f64();
        let pb = self.progress_bar(total_steps, st.step);
        let mut last_train = None;
        let mut last_valid = None;
        let mut last_saved_step = last_ckpt.as_ref().map(|_| st.step);
        let mut outcome = Outcome::Completed;
        let mut failure: Option<NonFiniteError> = None;

        while st.step < total_steps {
            if self.stop.load(Ordering::SeqCst) || self.stop_after == Some(st.step) {
                outcome = Outcome::Interrupted;
                break;
            }
            for p in self.model.params_mut() {
                p.grad.fill(0.0);
            }
            let mut loss = LossSum::default();
            let mut tokens = 0u64;
            let mut bad_source = None;
            let passes_before = st.stream.passes_done();
            for _ in 0..self.cfg.grad_accum {
                if total_micro.is_some_and(|t| st.micro_batches >= t) {
                    break;
                }
                let (_, mb) = st.stream.next_batch();
                st.micro_batches += 1;
                let batch: Vec<&Example> = mb.iter().map(|&i| &self.train.examples[i]).collect();
                let l = self.model.forward_backward(&batch, &mut st.rng)?;
                if !l.loss_sum.is_finite() && bad_source.is_none() {
                    bad_source = Some(batch[0].source.to_string());
                }
                loss.loss_sum += l.loss_sum;
                loss.n_targets += l.n_targets;
                tokens += batch.iter().map(|e| e.len() as u64).sum::<u64>();
            }
            let train_loss = loss.loss_sum / loss.n_targets.max(1) as f64;
            let params = self.model.params_mut();
            scale_grads(params, 1.0 / loss.n_targets.max(1) as f32);
            let grad_norm = clip_grad_norm(params, self.cfg.grad_clip);
            if !train_loss.is_finite() || !grad_norm.is_finite() {
                let what = if !train_loss.is_finite() {
                    format!(
                        "the loss is {train_loss} (micro-batch starting with the example at {})",
                        bad_source.unwrap_or_else(|| "?".into())
                    )
                } else {
                    format!("the gradient norm is {grad_norm}")
                };
                failure = Some(NonFiniteError {
                    step: st.step,
                    what,
                    last_checkpoint: last_ckpt.clone(),
                });
                outcome = Outcome::NonFinite;
                break;
            }
            let lr = sched.lr(st.step);
            st.opt.update(params, lr);
            st.step += 1;

            st.tokens += tokens;
            st.target_tokens += loss.n_targets as u64;
            last_train = Some(train_loss);

            let eval_now = st.step == total_steps
                || (self.cfg.eval_every > 0 && st.step % self.cfg.eval_every == 0);
            let valid_loss = if eval_now { self.evaluate()? } else { None };
            if valid_loss.is_some() {
                last_valid = valid_loss;
            }
            let el = elapsed(&st);
            metrics.push(&MetricRow {
                step: st.step,
                epoch: st.stream.epoch_progress(),
                lr,
                train_loss,
                valid_loss,
                grad_norm,
                tokens: st.tokens,
                tokens_per_s: st.tokens as f64 / el.max(1e-9),
                elapsed_s: el,
            })?;
            pb.set_position(st.step);
            pb.set_message(format!(
                "loss {train_loss:.4}{}  {:.0} tok/s",
                last_valid
                    .map(|v| format!("  valid {v:.4}"))
                    .unwrap_or_default(),
                st.tokens as f64 / el.max(1e-9)
            ));
            if self.cfg.checkpoint_every > 0 && st.step % self.cfg.checkpoint_every == 0 {
                last_ckpt = Some(self.save_checkpoint(&st, el)?);
                last_saved_step = Some(st.step);
            }
            let passes = st.stream.passes_done();
            if self.epoch_adapters && passes > passes_before && st.step < total_steps {
                self.save_epoch_adapter(passes)?;
            }
        }
        pb.finish_and_clear();

        let wall = elapsed(&st);
        if outcome != Outcome::NonFinite && last_saved_step != Some(st.step) {
            last_ckpt = Some(self.save_checkpoint(&st, wall)?);
        }
        let adapter_written = if outcome != Outcome::NonFinite {
            smolt_lora::save_adapter(
                &self.run_dir,
                &self.model.export_params(),
                &self.cfg.lora_config()?,
                &self.cfg.task.model,
            )?;
            Some(self.run_dir.display().to_string())
        } else {
            None
        };
        let rows = report::read_metrics(&self.run_dir.join(METRICS_FILE))?;
        if last_train.is_none() {
            last_train = rows.last().map(|r| r.train_loss);
        }
        if last_valid.is_none() {
            last_valid = rows.iter().rev().find_map(|r| r.valid_loss);
        }
        report::plot_loss(&rows, &self.run_dir.join(LOSS_PLOT_FILE))?;
        let summary = Summary {
            outcome,
            steps: st.step,
            total_steps,
            epochs: st.stream.epoch_progress(),
            tokens: st.tokens,
            target_tokens: st.target_tokens,
            tokens_per_s: st.tokens as f64 / wall.max(1e-9),
            peak_memory_bytes: report::peak_memory_bytes(),
            final_train_loss: last_train,
            final_valid_loss: last_valid,
            wall_time_s: wall,
            train_examples: self.train.examples.len(),
            valid_examples: self.valid.map_or(0, |v| v.examples.len()),
            truncated_examples: self.train.stats.truncated,
            skipped_examples: self.train.stats.skipped,
            trainable_parameters: self.model.params().iter().map(|p| p.data.len()).sum(),
            adapter: adapter_written,
            last_checkpoint: last_ckpt.as_ref().map(|p| p.display().to_string()),
        };
        summary.save(&self.run_dir.join(SUMMARY_FILE))?;
        if !self.quiet {
            eprint!("{}", summary.render());
        }
        if let Some(f) = failure {
            return Err(f.into());
        }
        Ok(summary)
    }

    fn progress_bar(&self, total: u64, at: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} step {pos}/{len} [{wide_bar}] {msg}  elapsed {elapsed}  ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb.set_position(at);
        pb.reset_eta();
        pb.enable_steady_tick(Duration::from_millis(250));
        pb
    }
}

/// Whether `dir` holds a run that can be resumed.
pub fn has_checkpoint(dir: &Path) -> Result<bool> {
    Ok(!checkpoint::list(&dir.join(CHECKPOINT_DIR))?.is_empty())
}
