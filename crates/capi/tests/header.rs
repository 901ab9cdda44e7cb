//! The committed header is what cbindgen makes of the sources now: a change to the C API that
//! is not in `include/smolt.h` fails here. `SMOLT_BLESS=1` writes the new header instead.

use std::path::Path;

#[test]
fn the_committed_header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("../../include/smolt.h");
    if std::env::var_os("SMOLT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `SMOLT_BLESS=1 cargo test -p smolt-capi --test header` and commit it",
        path.display()
    );
    // The parts a C user relies on are there, documented.
    for needle in [
        "smolt_status smolt_model_load(const char *path, smolt_model **out);",
        "smolt_status smolt_session_cancel(const smolt_session *session);",
        "typedef int (*smolt_token_callback)(const char *piece, void *user);",
        "SMOLT_STATUS_OK = 0",
        "SMOLT_FINISH_CANCELLED = 5",
        "SMOLT_PROMPT_FORMAT_CHAT = 1",
    ] {
        assert!(generated.contains(needle), "the header lacks {needle:?}");
    }
}
