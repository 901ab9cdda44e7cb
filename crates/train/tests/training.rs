//! The training loop end to end on the toy model: determinism, resume, atomic checkpoints,
//! divergence, and the run directory's files.

use std::fs;
use std::path::Path;

use smolt_task::ByteEncoder;
use smolt_train::checkpoint;
use smolt_train::dataset::{load_dataset, Dataset};
use smolt_train::engine::{NonFiniteError, CHECKPOINT_DIR, METRICS_FILE};
use smolt_train::report::{read_metrics, Outcome, Summary};
use smolt_train::toy::{write_toy_jsonl, ToyModel};
use smolt_train::{Param, TrainConfig, Trainer};

fn config(dir: &Path) -> TrainConfig {
    TrainConfig {
        task: smolt_task::Task {
            model: "toy".into(),
            data: dir.join("train.jsonl"),
            template: "{input}\nJSON:".into(),
            max_len: 128,
            ..smolt_task::Task::default()
        },
        batch_tokens: 300,
        grad_accum: 2,
        lr: 5e-2,
        warmup_steps: 2,
        epochs: 3,
        checkpoint_every: 3,
        keep_checkpoints: 2,
        eval_every: 4,
        seed: 7,
        ..TrainConfig::default()
    }
}

fn datasets(dir: &Path, cfg: &TrainConfig) -> (Dataset, Dataset) {
    write_toy_jsonl(&dir.join("train.jsonl"), 40, 1).unwrap();
    write_toy_jsonl(&dir.join("valid.jsonl"), 10, 2).unwrap();
    let t = load_dataset(&dir.join("train.jsonl"), &cfg.task, &ByteEncoder, None).unwrap();
    let v = load_dataset(&dir.join("valid.jsonl"), &cfg.task, &ByteEncoder, None).unwrap();
    (t, v)
}

fn model(cfg: &TrainConfig) -> ToyModel {
    let mut m = ToyModel::new(4, cfg.seed);
    m.dropout = 0.2; // exercises the RNG that checkpoints must carry
    m
}

fn train(dir: &Path, stop_after: Option<u64>, resume: bool) -> (Summary, Vec<Param>) {
    let cfg = config(dir);
    let (t, v) = datasets(dir, &cfg);
    let mut m = model(&cfg);
    let mut tr = Trainer::new(cfg, dir, &mut m, &t, Some(&v)).quiet();
    if let Some(s) = stop_after {
        tr = tr.stop_after(s);
    }
    let s = if resume { tr.resume() } else { tr.run() }.unwrap();
    (s, m_params(&m))
}

fn m_params(m: &ToyModel) -> Vec<Param> {
    use smolt_train::Trainable;
    m.params().to_vec()
}

fn bits(ps: &[Param]) -> Vec<u32> {
    ps.iter()
        .flat_map(|p| p.data.iter().map(|x| x.to_bits()))
        .collect()
}

fn losses(dir: &Path) -> Vec<(u64, u64, Option<u64>)> {
    read_metrics(&dir.join(METRICS_FILE))
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.step,
                r.train_loss.to_bits(),
                r.valid_loss.map(f64::to_bits),
            )
        })
        .collect()
}

#[test]
fn training_reduces_loss_and_writes_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = train(dir.path(), None, false);
    assert_eq!(s.outcome, Outcome::Completed);
    assert_eq!(s.steps, s.total_steps);
    assert!(s.steps >= 6, "{}", s.steps);
    let rows = read_metrics(&dir.path().join(METRICS_FILE)).unwrap();
    assert_eq!(rows.len() as u64, s.steps);
    assert!(rows.last().unwrap().train_loss < 0.8 * rows[0].train_loss);
    assert!(s.final_valid_loss.is_some());
    assert!((s.epochs - 3.0).abs() < 1e-9, "{}", s.epochs);
    for f in [
        "config.toml",
        "metrics.csv",
        "loss.png",
        "summary.json",
        "adapter_model.safetensors",
        "adapter_config.json",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let back: Summary =
        serde_json::from_str(&fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    // (serde_json's float parsing may be 1 ulp off, so floats are compared loosely.)
    assert_eq!(
        (back.outcome, back.steps, back.tokens),
        (s.outcome, s.steps, s.tokens)
    );
    assert!((back.final_train_loss.unwrap() - s.final_train_loss.unwrap()).abs() < 1e-12);
    // keep_checkpoints = 2
    assert_eq!(
        checkpoint::list(&dir.path().join(CHECKPOINT_DIR))
            .unwrap()
            .len(),
        2
    );
    // A second fresh run into the same directory is refused.
    let cfg = config(dir.path());
    let (t, _) = datasets(dir.path(), &cfg);
    let mut m = model(&cfg);
    let err = Trainer::new(cfg, dir.path(), &mut m, &t, None)
        .quiet()
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn same_seed_gives_bit_identical_losses() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (_, pa) = train(a.path(), None, false);
    let (_, pb) = train(b.path(), None, false);
    assert_eq!(losses(a.path()), losses(b.path()));
    assert_eq!(bits(&pa), bits(&pb));
}

#[test]
fn resume_equals_an_uninterrupted_run_bit_for_bit() {
    let full = tempfile::tempdir().unwrap();
    let (sf, pf) = train(full.path(), None, false);
    // Stop at a step that is not a checkpoint multiple, and one that is.
    for k in [4, 6] {
        let part = tempfile::tempdir().unwrap();
        let (s1, _) = train(part.path(), Some(k), false);
        assert_eq!(s1.outcome, Outcome::Interrupted);
        assert_eq!(s1.steps, k);
        let (s2, pr) = train(part.path(), None, true);
        assert_eq!(s2.outcome, Outcome::Completed);
        assert_eq!(bits(&pr), bits(&pf), "params after resume at {k}");
        assert_eq!(losses(part.path()), losses(full.path()), "curve, k = {k}");
        assert_eq!(s2.tokens, sf.tokens);
        assert_eq!(
            s2.final_train_loss.unwrap().to_bits(),
            sf.final_train_loss.unwrap().to_bits()
        );
    }
}

#[test]
fn resume_after_a_crash_ignores_temp_files_and_redoes_lost_steps() {
    let full = tempfile::tempdir().unwrap();
    let (_, pf) = train(full.path(), None, false);

    let part = tempfile::tempdir().unwrap();
    train(part.path(), Some(7), false);
    let ck = part.path().join(CHECKPOINT_DIR);
    // Simulate a crash: the step-7 checkpoint written at interruption never happened, a
    // later write was torn (temp file), and metrics has rows past the last checkpoint.
    fs::remove_file(ck.join(checkpoint::checkpoint_name(7))).unwrap();
    let torn = ck.join(format!("{}.tmp", checkpoint::checkpoint_name(9)));
    fs::write(&torn, b"partial garbage").unwrap();
    assert!(losses(part.path()).len() == 7);
    let (_, pr) = train(part.path(), None, true);
    assert!(!torn.exists(), "stale temp file is cleaned up");
    assert_eq!(bits(&pr), bits(&pf));
    assert_eq!(losses(part.path()), losses(full.path()));
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), Some(7), false);
    let ck = dir.path().join(CHECKPOINT_DIR);
    fs::write(ck.join(checkpoint::checkpoint_name(7)), b"not a checkpoint").unwrap();
    let (_, c) = checkpoint::load_latest(&ck).unwrap().unwrap();
    assert_eq!(c.meta.step, 6);
}

#[test]
fn resume_with_other_hyperparameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), Some(3), false);
    let mut cfg = config(dir.path());
    cfg.lr = 1e-3;
    let (t, _) = datasets(dir.path(), &cfg);
    let mut m = model(&cfg);
    let err = Trainer::new(cfg, dir.path(), &mut m, &t, None)
        .quiet()
        .resume()
        .unwrap_err();
    assert!(
        err.to_string().contains("different training settings"),
        "{err}"
    );
}

#[test]
fn nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (t, v) = datasets(dir.path(), &cfg);
    let mut m = model(&cfg);
    // 2 micro-batches per step: call 9 is in step 5 (1-based), after the step-3 checkpoint.
    m.nan_after_calls = Some(8);
    let err = Trainer::new(cfg, dir.path(), &mut m, &t, Some(&v))
        .quiet()
        .run()
        .unwrap_err();
    let nf = err.downcast_ref::<NonFiniteError>().expect("typed error");
    assert_eq!(nf.step, 4);
    let msg = err.to_string();
    assert!(msg.contains("step 5") && msg.contains("NaN"), "{msg}");
    assert!(msg.contains("train.jsonl:"), "names the example: {msg}");
    assert!(msg.contains(&checkpoint::checkpoint_name(3)), "{msg}");
    let ck = dir.path().join(CHECKPOINT_DIR);
    let list = checkpoint::list(&ck).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, 3);
    let summary: Summary =
        serde_json::from_str(&fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.outcome, Outcome::NonFinite);
    assert_eq!(summary.steps, 4);
    assert!(summary.adapter.is_none());
}

#[test]
fn max_steps_cycles_the_data_and_gradient_accumulation_counts_tokens_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_steps = 25;
    cfg.epochs = 1;
    cfg.schedule = smolt_train::config::Schedule::Constant;
    let (t, _) = datasets(dir.path(), &cfg);
    let mut m = model(&cfg);
    let s = Trainer::new(cfg, dir.path(), &mut m, &t, None)
        .quiet()
        .run()
        .unwrap();
    assert_eq!(s.steps, 25);
    assert!(s.epochs > 1.0, "cycled past one epoch: {}", s.epochs);
    assert!(s.final_valid_loss.is_none());
}
