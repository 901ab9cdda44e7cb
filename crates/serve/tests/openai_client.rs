//! The server as OpenAI's own Python client sees it: `openai_client.py` drives chat,
//! completions, streaming, JSON schema, adapters, logprobs, `n` and errors through the
//! `openai` package, installed with pip into a virtual environment under the target folder
//! (once; later runs reuse it).
//!
//! Without a package registry this test FAILS, saying so: a silent pass would claim a
//! compatibility nobody checked. `SMOLT_SKIP_OPENAI_TEST=1` skips it on purpose (never in CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use smolt_model::{Model, Precision};
use smolt_serve::{AdapterSpec, Background, ServeConfig};

mod common;
use common::{model_path, random_adapter};

/// What pip installs: the current client (the one users get; its chat and completions API
/// has kept its shape since 1.0) and the validator.
const PACKAGES: &[&str] = &["openai>=1.40", "jsonschema>=4"];

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn shown(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A venv with the packages, made (or completed) here; its python.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let python = dir.join("bin").join("python");
    let imports = || {
        python.exists()
            && run(Command::new(&python).args(["-c", "import openai, jsonschema"]))
                .status
                .success()
    };
    if imports() {
        return python;
    }
    let out = run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&dir));
    assert!(
        out.status.success(),
        "cannot create a Python virtual environment (python3 -m venv) in {}:\n{}",
        dir.display(),
        shown(&out)
    );
    let out = run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PACKAGES));
    assert!(
        out.status.success(),
        "pip could not install {PACKAGES:?} from the package registry, so the OpenAI client \
         check cannot run (set SMOLT_SKIP_OPENAI_TEST=1 to skip it knowingly):\n{}",
        shown(&out)
    );
    assert!(imports(), "the packages installed but do not import");
    python
}

#[test]
fn the_openai_python_client_gets_what_it_expects() {
    if std::env::var("SMOLT_SKIP_OPENAI_TEST").as_deref() == Ok("1") {
        eprintln!("SKIPPED: SMOLT_SKIP_OPENAI_TEST=1");
        return;
    }
    let start = Instant::now();
    let python = venv();
    eprintln!("venv ready in {:.1?}", start.elapsed());
    let model = model_path();
    let adapter = tempfile::tempdir().unwrap();
    random_adapter(
        &Model::load(&model, Precision::Fast).unwrap(),
        adapter.path(),
    );
    let mut config = ServeConfig::new(&model, "base");
    config.adapters.push(AdapterSpec {
        name: "rnd".into(),
        dir: adapter.path().to_path_buf(),
    });
    config.max_model_len = Some(1024);
    let server = Background::start(config, "127.0.0.1:0").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let logs = tempfile::tempdir().unwrap();
    let (log, log_err) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}/v1", server.addr()))
        .arg(adapter.path())
        // Files, not pipes: nothing reads a pipe while the child runs, and a full one would
        // block it.
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(std::fs::File::create(&log_err).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    // A server that stops answering must fail the test, not hang it: the script takes
    // seconds, so minutes mean something is stuck.
    let deadline = Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    eprintln!("{}\n{}", read(&log), read(&log_err));
    assert!(
        status.success(),
        "openai_client.py failed or timed out (above)"
    );
    server.stop().unwrap();
    eprintln!("done in {:.1?}", start.elapsed());
}
