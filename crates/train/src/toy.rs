//! A tiny exactly-differentiable model for testing the training machinery, and for the
//! `toy_train` example: a rank-r bigram model, logits(next) = B · A[:, prev], over the
//! [`ByteEncoder`](smolt_task::ByteEncoder) vocabulary. Its parameters carry PEFT names of
//! layer 0's q_proj so adapter files look like real ones.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::Example;
use crate::engine::{init_rng, LossSum, Trainable};
use smolt_lora::Param;
use smolt_lora::{peft_name, Target};

/// Vocabulary of the byte encoder: 3 specials + 256 bytes.
pub const VOCAB: usize = 259;

/// The toy model.
pub struct ToyModel {
    params: Vec<Param>,
    rank: usize,
    /// Dropout on the hidden vector, to exercise the trainer's RNG.
    pub dropout: f32,
    /// Return a NaN loss from this many `forward_backward` calls on (divergence tests).
    pub nan_after_calls: Option<usize>,
    /// Sleep per micro-batch, so a test can kill the process mid-run.
    pub delay: Duration,
    calls: usize,
}

impl ToyModel {
    /// A freshly initialised model (A uniform like LoRA's A, B zero).
    pub fn new(rank: usize, seed: u64) -> Self {
        let mut rng = init_rng(seed);
        let bound = 1.0 / (VOCAB as f64).sqrt();
        let a: Vec<f32> = (0..rank * VOCAB)
            .map(|_| rng.gen_range(-bound..bound) as f32 * 20.0)
            .collect();
        let params = vec![
            Param::new(peft_name(0, Target::Q, 'A'), [rank, VOCAB], a),
            Param::new(
                peft_name(0, Target::Q, 'B'),
                [VOCAB, rank],
                vec![0.0; VOCAB * rank],
            ),
        ];
        ToyModel {
            params,
            rank,
            dropout: 0.0,
            nan_after_calls: None,
            delay: Duration::ZERO,
            calls: 0,
        }
    }

    fn run(&mut self, batch: &[&Example], mut rng: Option<&mut ChaCha8Rng>, grad: bool) -> LossSum {
        let r = self.rank;
        let mut out = LossSum::default();
        let mut h = vec![0f32; r];
        let mut z = vec![0f32; VOCAB];
        let mut dh = vec![0f32; r];
        let mut scale = vec![1f32; r];
        for ex in batch {
            for t in 1..ex.ids.len() {
                if !ex.loss_mask[t] {
                    continue;
                }
                let prev = ex.ids[t - 1] as usize;
                let target = ex.ids[t] as usize;
                let (a, b) = (&self.params[0].data, &self.params[1].data);
                scale.fill(1.0);
                if let Some(rng) = rng.as_deref_mut() {
                    if self.dropout > 0.0 {
                        for s in scale.iter_mut() {
                            *s = if rng.gen::<f32>() < self.dropout {
                                0.0
                            } else {
                                1.0 / (1.0 - self.dropout)
                            };
                        }
                    }
                }
                for k in 0..r {
                    h[k] = a[k * VOCAB + prev] * scale[k];
                }
                let mut max = f32::NEG_INFINITY;
                for (j, zj) in z.iter_mut().enumerate() {
                    *zj = (0..r).map(|k| b[j * r + k] * h[k]).sum();
                    max = max.max(*zj);
                }
                let sum: f32 = z.iter().map(|&v| (v - max).exp()).sum();
                let lse = max + sum.ln();
                out.loss_sum += (lse - z[target]) as f64;
                out.n_targets += 1;
                if !grad {
                    continue;
                }
                // dL/dz = softmax(z) - onehot(target); z = B h gives dB = dz hᵀ and
                // dh = Bᵀ dz; h = A[:, prev] ⊙ scale routes dh ⊙ scale into one column of A.
                dh.fill(0.0);
                for (j, &zj) in z.iter().enumerate() {
                    let dz = (zj - lse).exp() - (j == target) as u8 as f32;
                    for k in 0..r {
                        dh[k] += self.params[1].data[j * r + k] * dz;
                        self.params[1].grad[j * r + k] += dz * h[k];
                    }
                }
                for k in 0..r {
                    self.params[0].grad[k * VOCAB + prev] += dh[k] * scale[k];
                }
            }
        }
        out
    }
}

impl Trainable for ToyModel {
    fn params(&self) -> &[Param] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }
    fn forward_backward(&mut self, batch: &[&Example], rng: &mut ChaCha8Rng) -> Result<LossSum> {
        self.calls += 1;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let mut l = self.run(batch, Some(rng), true);
        if self.nan_after_calls.is_some_and(|n| self.calls > n) {
            l.loss_sum = f64::NAN;
        }
        Ok(l)
    }
    fn eval_loss(&mut self, batch: &[&Example]) -> Result<LossSum> {
        Ok(self.run(batch, None, false))
    }
}

/// Writes `n` synthetic extraction examples (`{"input", "output"}` JSONL) to `path`.
pub fn write_toy_jsonl(path: &Path, n: usize, seed: u64) -> Result<()> {
    let mut rng = init_rng(seed ^ 0x5eed);
    let shops = ["Migros", "Coop", "Aldi", "Lidl", "Spar", "Denner"];
    let mut text = String::new();
    for i in 0..n {
        let shop = shops[rng.gen_range(0..shops.len())];
        let total = rng.gen_range(100..10_000) as f64 / 100.0;
        let pad = "x".repeat(rng.gen_range(0..40));
        let line = serde_json::json!({
            "input": format!("{shop} receipt #{i} {pad} TOTAL {total:.2}"),
            "output": {"shop": shop, "total": total},
        });
        text += &line.to_string();
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Trains the toy model in `dir` (making its data on first use): the body of the `toy_train`
/// example and of the kill-and-resume test. Settings are fixed so every call computes the same
/// trajectory; `delay` only slows it down.
pub fn run_toy(
    dir: &Path,
    resume: bool,
    steps: u64,
    delay: Duration,
    quiet: bool,
) -> Result<crate::report::Summary> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("train.jsonl");
    if !data.exists() {
        write_toy_jsonl(&data, 64, 1)?;
    }
    let cfg = crate::TrainConfig {
        task: smolt_task::Task {
            model: "toy".into(),
            data: data.clone(),
            template: "{input}\nJSON:".into(),
            max_len: 128,
            ..smolt_task::Task::default()
        },
        batch_tokens: 256,
        grad_accum: 2,
        lr: 5e-2,
        warmup_steps: 3,
        max_steps: steps,
        checkpoint_every: 4,
        keep_checkpoints: 2,
        eval_every: 0,
        seed: 42,
        ..crate::TrainConfig::default()
    };
    let ds = crate::dataset::load_dataset(&data, &cfg.task, &smolt_task::ByteEncoder, None)?;
    let mut model = ToyModel::new(4, cfg.seed);
    model.dropout = 0.1;
    model.delay = delay;
    let mut t = crate::Trainer::new(cfg, dir, &mut model, &ds, None);
    if quiet {
        t = t.quiet();
    } else {
        t = t.stop_flag(crate::engine::ctrlc_flag()?);
    }
    if resume {
        t.resume()
    } else {
        t.run()
    }
}
