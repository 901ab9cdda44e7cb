//! The real engine behind [`Trainable`]: LoRA over a frozen, still-quantized decoder
//! (smolt-lora's training step over smolt-model's weights; Gemma 3 first).
//!
//! The micro-batch is run one sequence at a time: smolt-lora's step takes one sequence and
//! accumulates into the adapter's gradients, which is exactly gradient accumulation, so a
//! micro-batch costs the same arithmetic as a padded batch without the padding.

use anyhow::{Context, Result};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use smolt_lora::{Frozen, HeadCache, LoraAdapter, Sequence, StepOptions, IGNORE};

use crate::config::{BasePrecision, TrainConfig};
use crate::dataset::Example;
use crate::engine::{LossSum, Trainable};
use smolt_lora::Param;

/// Labels in smolt-lora's (Hugging Face's) convention from a loss mask: the token id where
/// the loss is taken, [`IGNORE`] elsewhere. Both say "position t is a target", so this is a
/// direct translation.
pub fn labels(ex: &Example) -> Vec<i64> {
    ex.ids
        .iter()
        .zip(&ex.loss_mask)
        .map(|(&id, &m)| if m { id as i64 } else { IGNORE })
        .collect()
}

/// A frozen base with a trainable adapter.
pub struct LoraEngine<'m> {
    pub base: Frozen<'m, f32>,
    pub adapter: LoraAdapter<f32>,
    /// Recompute each layer's activations in the backward instead of keeping them all
    /// (about one layer of activations alive, for one more forward of the body).
    pub recompute: bool,
}

impl<'m> LoraEngine<'m> {
    /// A fresh adapter (PEFT init from `seed`) over `base`.
    pub fn new(base: Frozen<'m, f32>, cfg: &TrainConfig) -> Result<Self> {
        let mut adapter = LoraAdapter::new(&base.spec, &cfg.lora_config()?, cfg.seed)
            .context("creating the LoRA adapter")?;
        if let Some(from) = &cfg.init_adapter {
            adapter
                .continue_from(&base.spec, from)
                .with_context(|| format!("starting from the adapter in {}", from.display()))?;
        }
        Ok(LoraEngine {
            base,
            adapter,
            recompute: false,
        })
    }
}

impl Trainable for LoraEngine<'_> {
    fn params(&self) -> &[Param] {
        self.adapter.params()
    }

    fn params_mut(&mut self) -> &mut [Param] {
        self.adapter.params_mut()
    }

    /// q/k `lora_B` rows in Hugging Face's order for `llama` bases (smolt trains them in the
    /// GGUF's permuted order).
    fn export_params(&self) -> Vec<Param> {
        smolt_lora::to_peft_layout(&self.base.spec, self.adapter.params())
    }

    fn forward_backward(&mut self, batch: &[&Example], rng: &mut ChaCha8Rng) -> Result<LossSum> {
        let mut total = LossSum::default();
        for ex in batch {
            let labels = labels(ex);
            let opts = StepOptions {
                recompute: self.recompute,
                // Drawn from the trainer's RNG (saved in checkpoints) so resumes stay exact.
                dropout_seed: rng.next_u64(),
                // Gradient of the summed loss: the trainer divides by the step's target count.
                normalizer: Some(1.0),
            };
            let seq = Sequence {
                tokens: &ex.ids,
                labels: &labels,
            };
            let out = self
                .base
                .step(&mut self.adapter, &seq, &opts)
                .with_context(|| format!("training step on the example at {}", ex.source))?;
            total.loss_sum += out.loss_sum;
            total.n_targets += out.n_targets;
        }
        Ok(total)
    }

    fn eval_loss(&mut self, batch: &[&Example]) -> Result<LossSum> {
        let mut total = LossSum::default();
        for ex in batch {
            let labels = labels(ex);
            let seq = Sequence {
                tokens: &ex.ids,
                labels: &labels,
            };
            let out = self
                .base
                .loss(Some(&self.adapter), &seq)
                .with_context(|| format!("evaluating the example at {}", ex.source))?;
            total.loss_sum += out.loss_sum;
            total.n_targets += out.n_targets;
        }
        Ok(total)
    }
}

/// The whole `smolt train` command, for the CLI to call: loads the GGUF (model and
/// tokenizer), the data the config names, builds a fresh adapter, and trains into `out` with
/// Ctrl-C handling, a progress bar and the end summary. With `resume`, continues the run in
/// `out` from its newest checkpoint (the caller should pass the run's own `config.toml`, see
/// [`run_config`]).
pub fn train(
    cfg: TrainConfig,
    out: &std::path::Path,
    resume: bool,
) -> Result<crate::report::Summary> {
    train_with(cfg, out, resume, false)
}

/// [`train`], also keeping the adapter after each pass but the last when `epoch_adapters`
/// (see [`Trainer::keep_epoch_adapters`](crate::Trainer::keep_epoch_adapters)).
pub fn train_with(
    cfg: TrainConfig,
    out: &std::path::Path,
    resume: bool,
    epoch_adapters: bool,
) -> Result<crate::report::Summary> {
    cfg.validate()?;
    let gguf = smolt_gguf::Gguf::open(&cfg.task.model)
        .with_context(|| format!("opening the model {}", cfg.task.model))?;
    let tok = smolt_tokenizer::Tokenizer::from_gguf(&gguf).context("reading the tokenizer")?;
    let model = smolt_model::Model::from_gguf(gguf, smolt_model::Precision::Fast)
        .with_context(|| format!("loading the model {}", cfg.task.model))?;
    let (train, valid) = crate::dataset::load_for_task(&cfg.task, &tok)?;
    let chat_data = [Some(&train), valid.as_ref()]
        .into_iter()
        .flatten()
        .any(|d| {
            matches!(
                d.format,
                smolt_task::Format::Messages | smolt_task::Format::Tools
            )
        });
    if chat_data {
        // It compiled for the data just now.
        let chat = cfg.task.chat_format(&tok)?;
        eprintln!("chat records rendered with {}", chat.describe());
    }
    eprintln!("{}", train.describe(cfg.task.max_len));
    if let Some(v) = &valid {
        eprintln!("{}", v.describe(cfg.task.max_len));
    }
    // Bf16 where the CPU has bf16 hardware: the body's projections packed once in bf16
    // (≈ 0.4 GB more memory), products on the tile unit or with AVX-512 BF16. Measured on a
    // shared 2-core Xeon with AMX (CPU-time based): ≈ 2.2x Decoded's tokens/s in step_bench
    // (seq 330, answer 100), ≈ 1.6x in `smolt train` on synthetic receipts (half the tokens
    // are answer tokens, so the head weighs more); on a 2-core AMD EPYC (Zen 4, AVX-512 BF16)
    // 0.80 against 2.37 s per step (step_bench 340 68, best of 5); loss within 2e-4 of PEFT
    // on the fixture (smolt-lora's `bf16_base_lands_near_peft`).
    // Elsewhere Decoded: each frozen matrix decoded into f32 for gemm, exactly the f32
    // reference arithmetic that the PEFT gradient check validates.
    let matmul = match cfg.base_precision {
        BasePrecision::Auto if smolt_kernels::bf16::accelerated() => smolt_lora::BaseMatmul::Bf16,
        BasePrecision::Auto | BasePrecision::F32 => smolt_lora::BaseMatmul::Decoded,
        BasePrecision::Bf16 => smolt_lora::BaseMatmul::Bf16,
    };
    // The bf16 head, lean by default: decoded from the file chunk by chunk at each example,
    // so the bf16 path's peak RSS in step_bench is 1.18 GB at seq 512 / answer 128 (1.02 GB
    // at 340 / 68), against 1.83 GB (1.67 GB) with the head resident; the numbers are the
    // same bit for bit. The resident head (`head_cache = true`) saves that decode and
    // packing, ≈ 0.08–0.1 CPU-s per example (smolt-lora's head_bench, 2 threads): ≈ 4–6% of
    // a step at 512 / 128, somewhat more on short examples. Memory is what bounds the runs
    // this targets, so lean is the default. Against the resident head as it was before,
    // the cross-entropy's running max (vectorised in the same change) makes up for part of
    // it: all of it at answer 128 in head_bench, less for short answers (a smaller softmax).
    let head_cache = if cfg.head_cache {
        HeadCache::Resident
    } else {
        HeadCache::Lean
    };
    let base = Frozen::from_model_with_head(&model, matmul, head_cache);
    let mut engine = LoraEngine::new(base, &cfg)?;
    engine.recompute = cfg.recompute;
    let mut trainer = crate::Trainer::new(cfg, out, &mut engine, &train, valid.as_ref())
        .stop_flag(crate::engine::ctrlc_flag()?);
    if epoch_adapters {
        trainer = trainer.keep_epoch_adapters();
    }
    if resume {
        trainer.resume()
    } else {
        trainer.run()
    }
}

/// The config for `smolt train`: with `resume` and an existing run, the run's own
/// `config.toml` (so the resumed run is the same run); otherwise `file` or the defaults. CLI
/// `overrides` (`key=value`) apply on top in both cases.
pub fn run_config(
    out: &std::path::Path,
    file: Option<&std::path::Path>,
    overrides: &[(String, String)],
    resume: bool,
) -> Result<TrainConfig> {
    let saved = out.join(crate::engine::CONFIG_FILE);
    let file = if resume && saved.exists() {
        Some(saved.as_path())
    } else {
        file
    };
    TrainConfig::load(file, overrides)
}
