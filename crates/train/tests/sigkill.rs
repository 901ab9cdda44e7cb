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

use smolt_train::adapter::load_adapter;
use smolt_train::checkpoint;
use smolt_train::engine::CHECKPOINT_DIR;
use smolt_train::toy::run_toy;

const STEPS: u64 = 24;
const CHILD_ENV: &str = "SMOLT_TOY_CHILD_DIR";

/// Runs only when re-executed by the parent test, with the run directory in the environment.
#[test]
fn child_process_entry() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_toy(
            Path::new(&dir),
            false,
            STEPS,
            Duration::from_millis(40),
            true,
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

#[cfg(unix)]
#[test]
fn sigkill_mid_run_then_resume_matches_an_uninterrupted_run() {
    let reference = tempfile::tempdir().unwrap();
    run_toy(reference.path(), false, STEPS, Duration::ZERO, true).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run_dir: PathBuf = dir.path().join("run");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--test-threads=1"])
        .env(CHILD_ENV, &run_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait for a checkpoint past the first one (every 4 steps), then kill without warning.
    let ckpt_dir = run_dir.join(CHECKPOINT_DIR);
    let t0 = Instant::now();
    loop {
        let newest = checkpoint::list(&ckpt_dir)
            .unwrap_or_default()
            .first()
            .map(|c| c.0);
        if newest.is_some_and(|s| s >= 8) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child ended before it could be killed: {status}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let killed_at = checkpoint::list(&ckpt_dir).unwrap()[0].0;
    assert!(killed_at < STEPS, "killed mid-run, at step {killed_at}");

    let s = run_toy(&run_dir, true, STEPS, Duration::ZERO, true).unwrap();
    assert_eq!(s.steps, STEPS);
    assert_eq!(adapter_bits(&run_dir), adapter_bits(reference.path()));
}
