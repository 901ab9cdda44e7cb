//! The C++ example (`examples/npc`) built with g++ against the static library cargo built
//! for these tests, and run: on the tiny text model (with and without an adapter), under
//! AddressSanitizer (leaks included) and Valgrind, and on the real model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use smolt_lora::{save_adapter, LoraAdapter, LoraConfig};
use smolt_model::{Model, Precision};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>/libsmolt_capi.a` (the test binary is in that profile's `deps/`). `cargo
/// test` builds the crate as an rlib for its tests and writes the static library only when a
/// `cargo build` ran before, as on a clean clone it has not: then it is built here once, with
/// the cargo, target directory and profile that built this test.
fn static_lib() -> PathBuf {
    static BUILT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let lib = dir.join("libsmolt_capi.a");
    let _one_at_a_time = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !lib.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "smolt-capi", "--lib", "--target-dir"])
            .arg(dir.parent().unwrap())
            .current_dir(repo());
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd
            .output()
            .expect("run cargo build for the static library");
        assert!(
            out.status.success(),
            "cargo build -p smolt-capi failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(lib.is_file(), "no static library at {}", lib.display());
    lib
}

/// Whether g++ runs here; the tests that need it say so and stop when it does not.
fn have_gxx() -> bool {
    let ok = Command::new("g++")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: g++ is not installed, so the C++ example cannot be built");
    }
    ok
}

/// Compiles the example into `out` with extra flags (sanitizers); the same command the
/// example's Makefile runs, with `-Werror`.
fn build(out: &Path, extra: &[&str]) -> PathBuf {
    let bin = out.join("npc");
    let src = repo().join("examples/npc/npc.cpp");
    let o = Command::new("g++")
        .args(["-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg(format!("-I{}", repo().join("include").display()))
        .arg(&src)
        .arg(static_lib())
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(&bin)
        .output()
        .expect("run g++");
    assert!(
        o.status.success(),
        "g++ failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let o = cmd.env("SMOLT_THREADS", "2").output().expect("run npc");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

/// The tiny random model with a real vocabulary, as a file.
fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-text.gguf");
    smolt_model::testing::tiny_text_model(3)
        .write(&path)
        .unwrap();
    path
}

/// A random adapter for `model`, strong enough to change its output.
fn random_adapter(model: &Path, dir: &Path) {
    let model = Model::load(model, Precision::Fast).unwrap();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let mut adapter: LoraAdapter<f32> = LoraAdapter::new(&model.spec, &cfg, 3).unwrap();
    adapter.init_with(|layer, _t, is_b, i, j| {
        let v = 0.2 * ((layer * 7 + i * 3 + j) as f64 * 0.37).sin();
        if is_b {
            v
        } else {
            v * 2.0
        }
    });
    save_adapter(dir, adapter.params(), &cfg, "tiny").unwrap();
}

const ACTIONS: [&str; 6] = ["greet", "trade", "attack", "flee", "sing", "ignore"];
const TARGETS: [&str; 5] = ["player", "goblin", "innkeeper", "bard", "nobody"];
const MOODS: [&str; 4] = ["calm", "angry", "afraid", "merry"];

/// What every run of the example must print: four turns, each with a narration and an action
/// valid against the example's schema, the interrupted narration cancelled, and the persona
/// prefix reused from the second prompt on. Returns the actions.
fn check_transcript(out: &str) -> Vec<Value> {
    assert!(out.starts_with("smolt "), "{out}");
    let turns = out.lines().filter(|l| l.starts_with("[turn ")).count();
    assert_eq!(turns, 4, "{out}");
    let actions: Vec<Value> = out
        .lines()
        .filter_map(|l| l.strip_prefix("  action: "))
        .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("not JSON: {j}: {e}\n{out}")))
        .collect();
    assert_eq!(actions.len(), 4, "{out}");
    for a in &actions {
        let obj = a.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{a}");
        assert!(ACTIONS.contains(&a["action"].as_str().unwrap()), "{a}");
        assert!(TARGETS.contains(&a["target"].as_str().unwrap()), "{a}");
        assert!(MOODS.contains(&a["mood"].as_str().unwrap()), "{a}");
    }
    let finishes: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("  narration finish: "))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(finishes.len(), 4, "{out}");
    assert_eq!(finishes[3], "cancelled", "the player walked off: {out}");
    // From the second narration on, the persona's tokens come from the session's cache.
    let reused: Vec<usize> = out
        .lines()
        .filter_map(|l| l.split(" (").nth(1))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(reused.len(), 4, "{out}");
    assert!(reused[1..].iter().all(|&r| r >= 10), "{reused:?}\n{out}");
    assert!(
        out.trim_end()
            .ends_with("done: 4 turns, 4 actions, 1 cancelled"),
        "{out}"
    );
    actions
}

#[test]
fn the_npc_example_runs_on_the_tiny_model_with_and_without_an_adapter() {
    if !have_gxx() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let bin = build(dir.path(), &[]);
    let (o, out, err) = run(Command::new(&bin).arg(&model));
    assert!(o.status.success(), "{out}\n{err}");
    println!("{out}");
    check_transcript(&out);
    // The same run gives the same text (fixed seeds).
    let (_, again, _) = run(Command::new(&bin).arg(&model));
    assert_eq!(out, again);
    // Chat prompts (the built-in Gemma format: the tiny model has no template).
    let (o, chat, err) = run(Command::new(&bin).arg(&model).arg("--chat"));
    assert!(o.status.success(), "{chat}\n{err}");
    check_transcript(&chat);
    // With an adapter the model is another one.
    let adapter = dir.path().join("adapter");
    random_adapter(&model, &adapter);
    let (o, tuned, err) = run(Command::new(&bin)
        .arg(&model)
        .arg("--adapter")
        .arg(&adapter));
    assert!(o.status.success(), "{tuned}\n{err}");
    assert!(tuned.lines().next().unwrap().ends_with(", with adapter"));
    check_transcript(&tuned);
    assert_ne!(out, tuned, "the adapter changes nothing");
    // Errors reach the C++ side as a status and a message.
    let (o, _, err) = run(Command::new(&bin).arg(dir.path().join("missing.gguf")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("SMOLT_STATUS_IO") && err.contains("missing.gguf"),
        "{err}"
    );
}

#[test]
fn the_npc_example_is_clean_under_address_sanitizer() {
    if !have_gxx() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let adapter = dir.path().join("adapter");
    random_adapter(&model, &adapter);
    let bin = build(
        dir.path(),
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    );
    let (o, out, err) = run(Command::new(&bin)
        .arg(&model)
        .arg("--adapter")
        .arg(&adapter)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        ));
    assert!(o.status.success(), "status {:?}\n{out}\n{err}", o.status);
    assert!(!err.contains("Sanitizer"), "{err}");
    check_transcript(&out);
}

#[test]
fn the_npc_example_is_clean_under_valgrind() {
    if !have_gxx() {
        return;
    }
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        // AddressSanitizer covers the same ground where Valgrind is missing.
        eprintln!("valgrind is not installed: only the AddressSanitizer run checks memory");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let bin = build(dir.path(), &[]);
    let (o, out, err) = run(Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=23",
        ])
        .arg(&bin)
        .arg(&model));
    assert!(o.status.success(), "status {:?}\n{out}\n{err}", o.status);
    assert!(err.contains("ERROR SUMMARY: 0 errors"), "{err}");
    check_transcript(&out);
}

#[test]
fn the_npc_example_runs_on_the_real_model() {
    if !have_gxx() {
        return;
    }
    let model = smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("this test needs Gemma 3 270M: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), &[]);
    let (o, out, err) = run(Command::new(&bin).arg(&model).arg("--chat"));
    assert!(o.status.success(), "{out}\n{err}");
    println!("{out}");
    check_transcript(&out);
    // Real narration: words, not an empty line.
    let narrations: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("  narration: "))
        .collect();
    assert_eq!(narrations.len(), 4, "{out}");
    assert!(
        narrations[..3]
            .iter()
            .all(|n| n.split_whitespace().count() >= 2),
        "{narrations:?}"
    );
}
