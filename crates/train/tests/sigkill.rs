//! A training process killed with SIGKILL mid-run resumes to the same final adapter, bit for
//! bit, as a run that was never interrupted.
//!
//! The child process is this test binary itself, re-executed to run only
//! `child_process_entry` (the same code as the `toy_train` example, `toy::run_toy`): that needs
//! no separate build step and so works the same under `cargo test` on a clean clone, in CI,
//! and with any target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smolt_lora::load_adapter;
use smolt_train::checkpoint;
use smolt_train::engine::CHECKPOINT_DIR;
use smolt_train::toy::run_toy;

const STEPS: u64 = 24;
const CHILD_ENV: &str = "SMOLT_TOY_CHILD_DIR";
/// Set to make the child install the Ctrl-C handler (the non-quiet path, as the CLI does).
const CHILD_CTRLC_ENV: &str = "SMOLT_TOY_CHILD_CTRLC";

/// Runs only when re-executed by the parent test, with the run directory in the environment.
#[test]
fn child_process_entry() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let quiet = std::env::var_os(CHILD_CTRLC_ENV).is_none();
        run_toy(
            Path::new(&dir),
            false,
            STEPS,
            Duration::from_millis(40),
            quiet,
        )
        .unwrap();
    }
}

fn adapter_bits(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let (params, _) = load_adapter(dir).unwrap();
    params
        .into_iter()
        .map(|p| (p.name, p.data.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn spawn_child(run_dir: &Path, ctrlc: bool) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_process_entry", "--test-threads=1"])
        .env(CHILD_ENV, run_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if ctrlc {
        cmd.env(CHILD_CTRLC_ENV, "1");
    }
    cmd.spawn().unwrap()
}

/// Waits until the child has written a checkpoint at or after `step`.
fn wait_for_checkpoint(child: &mut std::process::Child, ckpt_dir: &Path, step: u64) {
    let t0 = Instant::now();
    loop {
        let newest = checkpoint::list(ckpt_dir)
            .unwrap_or_default()
            .first()
            .map(|c| c.0);
        if newest.is_some_and(|s| s >= step) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child ended before it could be stopped: {status}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let reference = tempfile::tempdir().unwrap();
    run_toy(reference.path(), false, STEPS, Duration::ZERO, true).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = spawn_child(&run_dir, true);
    wait_for_checkpoint(&mut child, &run_dir.join(CHECKPOINT_DIR), 4);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after Ctrl-C: {status}");
    let summary: smolt_train::report::Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.outcome, smolt_train::report::Outcome::Interrupted);
    assert!(summary.steps < STEPS);
    // The interruption checkpoint is at the step where it stopped, not an older one.
    assert_eq!(
        checkpoint::list(&run_dir.join(CHECKPOINT_DIR)).unwrap()[0].0,
        summary.steps
    );
    run_toy(&run_dir, true, STEPS, Duration::ZERO, true).unwrap();
    assert_eq!(adapter_bits(&run_dir), adapter_bits(reference.path()));
}

#[cfg(unix)]
#[test]
fn sigkill_mid_run_then_resume_matches_an_uninterrupted_run() {
    let reference = tempfile::tempdir().unwrap();
    run_toy(reference.path(), false, STEPS, Duration::ZERO, true).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run_dir: PathBuf = dir.path().join("run");
    let mut child = spawn_child(&run_dir, false);
    // Wait for a checkpoint past the first one (every 4 steps), then kill without warning.
    let ckpt_dir = run_dir.join(CHECKPOINT_DIR);
    wait_for_checkpoint(&mut child, &ckpt_dir, 8);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let killed_at = checkpoint::list(&ckpt_dir).unwrap()[0].0;
    assert!(killed_at < STEPS, "killed mid-run, at step {killed_at}");

    let s = run_toy(&run_dir, true, STEPS, Duration::ZERO, true).unwrap();
    assert_eq!(s.steps, STEPS);
    assert_eq!(adapter_bits(&run_dir), adapter_bits(reference.path()));
}
