//! The trainer driving the real LoRA engine on a tiny random Gemma 3 (smolt-lora's test model,
//! a real GGUF in memory with quantized weights): loss goes down, and an interrupted run
//! resumes bit-identically, dropout included.

#[path = "../../lora/tests/common/mod.rs"]
mod common;

use common::{tiny_model, VOCAB};
use smolt_lora::Frozen;
use smolt_model::Precision;
use smolt_task::{Format, Location};
use smolt_train::dataset::{DataStats, Dataset, Example};
use smolt_train::gemma::LoraEngine;
use smolt_train::report::Outcome;
use smolt_train::{TrainConfig, Trainable, Trainer};

fn dataset() -> Dataset {
    // 12 sequences: a "prompt" of varied tokens, then an answer that repeats a pattern the
    // adapter can learn.
    let examples = (0..12)
        .map(|i| {
            let mut ids: Vec<u32> = (0..5 + i % 4)
                .map(|k| ((i * 31 + k * 7) % VOCAB) as u32)
                .collect();
            let n_prompt = ids.len();
            ids.extend([150, 151, 152, 153, 1]);
            let loss_mask = (0..ids.len()).map(|t| t >= n_prompt).collect();
            Example {
                ids,
                loss_mask,
                source: Location {
                    file: "tiny.jsonl".into(),
                    line: i + 1,
                },
            }
        })
        .collect();
    Dataset {
        path: "tiny.jsonl".into(),
        format: Format::PromptCompletion,
        examples,
        stats: DataStats::default(),
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        task: smolt_task::Task {
            model: "tiny-gemma3".into(),
            ..smolt_task::Task::default()
        },
        lora_r: 4,
        lora_dropout: 0.1,
        lr: 1e-2,
        warmup_steps: 2,
        batch_tokens: 40,
        grad_accum: 2,
        max_steps: 8,
        checkpoint_every: 3,
        eval_every: 4,
        seed: 3,
        ..TrainConfig::default()
    }
}

fn run(
    dir: &std::path::Path,
    stop_after: Option<u64>,
    resume: bool,
) -> (Outcome, Vec<u32>, Vec<f64>) {
    let model = tiny_model(Precision::Fast);
    let ds = dataset();
    let cfg = config();
    let mut engine = LoraEngine::new(Frozen::from_model(&model), &cfg).unwrap();
    let mut t = Trainer::new(cfg, dir, &mut engine, &ds, Some(&ds)).quiet();
    if let Some(s) = stop_after {
        t = t.stop_after(s);
    }
    let s = if resume { t.resume() } else { t.run() }.unwrap();
    let bits = engine
        .params()
        .iter()
        .flat_map(|p| p.data.iter().map(|x| x.to_bits()))
        .collect();
    let losses = smolt_train::report::read_metrics(&dir.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.train_loss)
        .collect();
    (s.outcome, bits, losses)
}

#[test]
fn lora_engine_trains_and_resumes_bit_identically() {
    let full = tempfile::tempdir().unwrap();
    let (o, bits, losses) = run(full.path(), None, false);
    assert_eq!(o, Outcome::Completed);
    assert_eq!(losses.len(), 8);
    assert!(losses[7] < losses[0], "loss went down: {losses:?}");

    let part = tempfile::tempdir().unwrap();
    let (o, _, _) = run(part.path(), Some(4), false);
    assert_eq!(o, Outcome::Interrupted);
    let (o, bits2, losses2) = run(part.path(), None, true);
    assert_eq!(o, Outcome::Completed);
    assert_eq!(
        losses2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        losses.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(bits2, bits);
    // The adapter on disk carries smolt-lora's PEFT names.
    let (params, _) = smolt_lora::load_adapter(part.path()).unwrap();
    assert!(params
        .iter()
        .any(|p| p.name == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
}

/// With epoch adapters on, each pass but the last leaves its adapter in `pass-N/`, a run
/// directory of its own, and the pass-1 adapter is what one pass had trained.
#[test]
fn epoch_adapters_keep_every_pass_but_the_last() {
    let cfg = TrainConfig {
        max_steps: 0,
        epochs: 3,
        grad_accum: 1,
        ..config()
    };
    let model = tiny_model(Precision::Fast);
    let ds = dataset();
    let dir = tempfile::tempdir().unwrap();
    let mut engine = LoraEngine::new(Frozen::from_model(&model), &cfg).unwrap();
    let s = Trainer::new(cfg.clone(), dir.path(), &mut engine, &ds, None)
        .quiet()
        .keep_epoch_adapters()
        .run()
        .unwrap();
    assert_eq!(s.outcome, Outcome::Completed);
    let one = smolt_train::engine::epoch_dir(dir.path(), 1);
    let two = smolt_train::engine::epoch_dir(dir.path(), 2);
    assert!(one.join("adapter_model.safetensors").is_file());
    assert!(two.join("config.toml").is_file());
    assert!(
        !smolt_train::engine::epoch_dir(dir.path(), 3).exists(),
        "the last pass is the run"
    );
    let (p1, _) = smolt_lora::load_adapter(&one).unwrap();
    let (p2, _) = smolt_lora::load_adapter(&two).unwrap();
    assert_ne!(p1[0].data, p2[0].data, "the passes differ");

    // One pass with the same steps so far gives the pass-1 adapter, bit for bit: both runs
    // take the same batches, and the schedule only differs in where it goes next.
    let steps_per_pass = s.steps / 3;
    let part = tempfile::tempdir().unwrap();
    let mut engine = LoraEngine::new(Frozen::from_model(&model), &cfg).unwrap();
    Trainer::new(cfg, part.path(), &mut engine, &ds, None)
        .quiet()
        .stop_after(steps_per_pass)
        .run()
        .unwrap();
    let (pk, _) = smolt_lora::load_adapter(part.path()).unwrap();
    assert_eq!(pk[0].data, p1[0].data);
}
