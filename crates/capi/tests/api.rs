//! The C functions called as C calls them, from Rust: every error path (null pointers, bad and
//! corrupt files, invalid UTF-8, bad options, invalid schemas, prompts over the context), and
//! streaming, stopping, cancelling and sharing across threads, on the tiny text model.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::{Arc, Barrier, Mutex};

use smolt_capi::*;

/// The tiny model with a vocabulary, written once for this file's tests.
fn tiny_path() -> &'static CString {
    static PATH: std::sync::OnceLock<(tempfile::TempDir, CString)> = std::sync::OnceLock::new();
    &PATH
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tiny-text.gguf");
            smolt_model::testing::tiny_text_model(3)
                .write(&path)
                .unwrap();
            (dir, c(path.to_str().unwrap()))
        })
        .1
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn cpath(p: &Path) -> CString {
    c(p.to_str().unwrap())
}

fn last_error() -> String {
    let p = smolt_last_error();
    assert!(!p.is_null(), "a failed call leaves a message");
    // SAFETY: a non-null `smolt_last_error` is a NUL-terminated string alive until the next
    // smolt call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A model handle, freed on drop.
struct Model(*mut SmoltModel);

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the handle came from smolt_model_load* and is freed only here.
        unsafe { smolt_model_free(self.0) };
    }
}

// SAFETY: a model handle is immutable and its functions are thread-safe (the header's
// promise, checked by `one_model_serves_sessions_on_several_threads`).
unsafe impl Send for Model {}
// SAFETY: as above: shared use from several threads is what the API allows.
unsafe impl Sync for Model {}

/// A session handle, freed on drop.
struct Session(*mut SmoltSession);

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle came from smolt_session_new and is freed only here, when no
        // other thread uses it.
        unsafe { smolt_session_free(self.0) };
    }
}

// SAFETY: sessions may be used from any thread, and cancelled from any thread while one
// generates (the header's promise, exercised by the cancel and busy tests).
unsafe impl Send for Session {}
// SAFETY: as above.
unsafe impl Sync for Session {}

fn load(path: &CStr) -> Model {
    let mut m = null_mut();
    // SAFETY: a valid C string and a valid out pointer.
    let s = unsafe { smolt_model_load(path.as_ptr(), &mut m) };
    assert_eq!(s, SmoltStatus::Ok, "{}", last_error());
    Model(m)
}

fn session(m: &Model) -> Session {
    let mut s = null_mut();
    // SAFETY: a live model and a valid out pointer.
    let st = unsafe { smolt_session_new(m.0, &mut s) };
    assert_eq!(st, SmoltStatus::Ok);
    Session(s)
}

/// What a callback saw, and when to stop or pause.
#[derive(Default)]
struct Seen {
    pieces: Vec<String>,
    /// Return non-zero at this piece (0-based).
    stop_at: Option<usize>,
    /// Called at the first piece (e.g. to cancel from another thread and wait).
    on_first: Option<Box<dyn FnMut()>>,
}

unsafe extern "C" fn collect(piece: *const c_char, user: *mut c_void) -> c_int {
    // SAFETY: `user` is the `&mut Seen` that `generate` passes, alive and not otherwise used
    // during the call.
    let seen = unsafe { &mut *(user as *mut Seen) };
    // SAFETY: smolt passes a NUL-terminated string valid for this call.
    let piece = unsafe { CStr::from_ptr(piece) }
        .to_str()
        .unwrap()
        .to_string();
    seen.pieces.push(piece);
    if seen.pieces.len() == 1 {
        if let Some(f) = seen.on_first.as_mut() {
            f();
        }
    }
    c_int::from(seen.stop_at == Some(seen.pieces.len() - 1))
}

/// A filled-in result: text, prompt tokens, reused tokens, output tokens, finish.
type Filled = (String, u32, u32, u32, SmoltFinish);

/// Runs `smolt_generate` and returns the status and the result (when filled in); the pieces
/// go to `seen`.
fn generate(
    s: &Session,
    prompt: &CStr,
    opts: &SmoltOptions,
    seen: &mut Seen,
) -> (SmoltStatus, Option<Filled>) {
    let mut r = SmoltResult {
        text: null_mut(),
        prompt_tokens: 0,
        reused_tokens: 0,
        output_tokens: 0,
        finish: SmoltFinish::Stop,
    };
    // SAFETY: a live session, a C string, options whose schema is null or a C string, a
    // callback matching the contract with its `Seen`, and a writable result.
    let st = unsafe {
        smolt_generate(
            s.0,
            prompt.as_ptr(),
            opts,
            Some(collect),
            seen as *mut Seen as *mut c_void,
            &mut r,
        )
    };
    let out = (!r.text.is_null()).then(|| {
        // SAFETY: a non-null result text is a NUL-terminated string from smolt_generate.
        let text = unsafe { CStr::from_ptr(r.text) }
            .to_str()
            .unwrap()
            .to_string();
        (
            text,
            r.prompt_tokens,
            r.reused_tokens,
            r.output_tokens,
            r.finish,
        )
    });
    // SAFETY: `r` was filled by smolt_generate (or is all null) and is released once.
    unsafe { smolt_result_free(&mut r) };
    assert!(r.text.is_null(), "smolt_result_free clears the text");
    // SAFETY: a second release of the same (now cleared) result is a no-op.
    unsafe { smolt_result_free(&mut r) };
    (st, out)
}

fn opts(max_tokens: u32) -> SmoltOptions {
    SmoltOptions {
        max_tokens,
        ..smolt_default_options()
    }
}

const SCHEMA: &str = r#"{"type": "object", "properties": {"mood": {"enum": ["calm", "angry"]},
    "level": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["mood", "level"], "additionalProperties": false}"#;

#[test]
fn null_pointers_are_refused_with_a_message() {
    let path = tiny_path();
    let mut m = null_mut();
    // SAFETY: null arguments are what this test checks; the out pointer is valid or null.
    unsafe {
        assert_eq!(smolt_model_load(null(), &mut m), SmoltStatus::NullArgument);
        assert!(last_error().contains("path"), "{}", last_error());
        assert_eq!(
            smolt_model_load(path.as_ptr(), null_mut()),
            SmoltStatus::NullArgument
        );
        assert!(last_error().contains("out"));
        assert!(m.is_null(), "out untouched on failure");
        assert_eq!(
            smolt_model_load_adapter(null(), c("x").as_ptr(), &mut m),
            SmoltStatus::NullArgument
        );
        let mut s = null_mut();
        assert_eq!(smolt_session_new(null(), &mut s), SmoltStatus::NullArgument);
        assert_eq!(smolt_session_cancel(null()), SmoltStatus::NullArgument);
        assert_eq!(smolt_model_context_length(null()), 0);
        let o = smolt_default_options();
        assert_eq!(
            smolt_generate(null(), c("hi").as_ptr(), &o, None, null_mut(), null_mut()),
            SmoltStatus::NullArgument
        );
        // Freeing NULL is allowed.
        smolt_model_free(null_mut());
        smolt_session_free(null_mut());
        smolt_result_free(null_mut());
    }
    let model = load(path);
    let mut out = null_mut();
    // SAFETY: a live model; a null dir and a null out pointer are the errors checked.
    unsafe {
        assert_eq!(
            smolt_model_load_adapter(model.0, null(), &mut out),
            SmoltStatus::NullArgument
        );
        assert_eq!(
            smolt_model_load_adapter(model.0, c("x").as_ptr(), null_mut()),
            SmoltStatus::NullArgument
        );
        assert_eq!(
            smolt_session_new(model.0, null_mut()),
            SmoltStatus::NullArgument
        );
    }
    let s = session(&model);
    // SAFETY: a live session; a null prompt is the error checked; null options, callback
    // and result are allowed.
    unsafe {
        assert_eq!(
            smolt_generate(s.0, null(), null(), None, null_mut(), null_mut()),
            SmoltStatus::NullArgument
        );
        assert!(last_error().contains("prompt"));
        let o = opts(4);
        assert_eq!(
            smolt_generate(s.0, c("hi").as_ptr(), &o, None, null_mut(), null_mut()),
            SmoltStatus::Ok
        );
        assert!(smolt_last_error().is_null(), "a success leaves no message");
        assert_eq!(smolt_session_cancel(s.0), SmoltStatus::Ok);
    }
}

#[test]
fn bad_and_corrupt_files_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(tiny_path().to_str().unwrap()).unwrap();
    let mut no_tokenizer = PathBuf::from(dir.path());
    no_tokenizer.push("no-tokenizer.gguf");
    let s = smolt_model::testing::TinySpec::default();
    smolt_model::testing::tiny_writer(&s, &smolt_model::testing::tiny_tensors(&s, 1), "gemma3")
        .write(&no_tokenizer)
        .unwrap();
    let cases: Vec<(PathBuf, SmoltStatus, &str)> = vec![
        (
            dir.path().join("missing.gguf"),
            SmoltStatus::Io,
            "cannot open",
        ),
        (dir.path().to_path_buf(), SmoltStatus::Model, "cannot load"),
        (
            {
                let p = dir.path().join("magic.gguf");
                std::fs::write(&p, b"GGML\x03\x00\x00\x00").unwrap();
                p
            },
            SmoltStatus::Model,
            "not a GGUF file",
        ),
        (
            {
                let p = dir.path().join("half.gguf");
                std::fs::write(&p, &good[..good.len() / 2]).unwrap();
                p
            },
            SmoltStatus::Model,
            "truncated",
        ),
        (no_tokenizer, SmoltStatus::Model, "no usable tokenizer"),
    ];
    for (path, want, needle) in cases {
        let mut m = null_mut();
        // SAFETY: a valid C string and out pointer.
        let st = unsafe { smolt_model_load(cpath(&path).as_ptr(), &mut m) };
        assert_eq!(st, want, "{}: {}", path.display(), last_error());
        assert!(m.is_null());
        let msg = last_error();
        assert!(msg.contains(needle), "{}: {msg}", path.display());
    }
    // Adapters: a folder that is not one, and one for another model.
    let model = load(tiny_path());
    for (dir, needle) in [
        (dir.path().join("nowhere"), "nowhere"),
        (dir.path().to_path_buf(), "adapter"),
    ] {
        let mut out = null_mut();
        // SAFETY: a live model, a C string, a valid out pointer.
        let st = unsafe { smolt_model_load_adapter(model.0, cpath(&dir).as_ptr(), &mut out) };
        assert_eq!(st, SmoltStatus::Adapter, "{}", last_error());
        assert!(out.is_null());
        assert!(last_error().contains(needle), "{}", last_error());
    }
}

#[test]
fn invalid_utf8_is_refused_wherever_text_goes_in() {
    let bad = CString::new(vec![b'a', 0xff, 0xfe]).unwrap();
    let mut m = null_mut();
    // SAFETY: NUL-terminated (if not UTF-8) strings and valid out pointers.
    unsafe {
        assert_eq!(
            smolt_model_load(bad.as_ptr(), &mut m),
            SmoltStatus::InvalidUtf8
        );
        assert!(last_error().contains("UTF-8"));
    }
    let model = load(tiny_path());
    // SAFETY: as above.
    let st = unsafe { smolt_model_load_adapter(model.0, bad.as_ptr(), &mut m) };
    assert_eq!(st, SmoltStatus::InvalidUtf8);
    let s = session(&model);
    let (st, out) = generate(&s, &bad, &opts(4), &mut Seen::default());
    assert_eq!((st, out), (SmoltStatus::InvalidUtf8, None));
    let o = SmoltOptions {
        json_schema: bad.as_ptr(),
        ..opts(4)
    };
    let (st, _) = generate(&s, &c("hi"), &o, &mut Seen::default());
    assert_eq!(st, SmoltStatus::InvalidUtf8);
    assert!(last_error().contains("json_schema"), "{}", last_error());
}

#[test]
fn bad_options_schemas_and_prompts_fail_before_generating() {
    let model = load(tiny_path());
    let s = session(&model);
    let bad_opts = [
        SmoltOptions {
            temperature: -1.0,
            ..opts(4)
        },
        SmoltOptions {
            temperature: f32::NAN,
            ..opts(4)
        },
        SmoltOptions {
            top_p: 0.0,
            ..opts(4)
        },
        SmoltOptions {
            prompt_format: 7,
            ..opts(4)
        },
        // Not from smolt_default_options(), and a struct from a newer header.
        SmoltOptions {
            struct_size: 0,
            ..opts(4)
        },
        SmoltOptions {
            struct_size: std::mem::size_of::<SmoltOptions>() as u32 + 8,
            ..opts(4)
        },
    ];
    for o in bad_opts {
        let mut seen = Seen::default();
        let (st, out) = generate(&s, &c("hi"), &o, &mut seen);
        assert_eq!((st, out), (SmoltStatus::InvalidArgument, None), "{o:?}");
        assert!(seen.pieces.is_empty());
    }
    assert!(last_error().contains("struct_size"), "{}", last_error());
    for (schema, needle) in [
        ("{not json", "invalid JSON Schema"),
        (r#"{"type": "strung"}"#, "invalid JSON Schema"),
        (
            r#"{"type": "object", "required": 3}"#,
            "invalid JSON Schema",
        ),
    ] {
        let schema = c(schema);
        let o = SmoltOptions {
            json_schema: schema.as_ptr(),
            ..opts(4)
        };
        let (st, out) = generate(&s, &c("hi"), &o, &mut Seen::default());
        assert_eq!((st, out), (SmoltStatus::Schema, None), "{}", last_error());
        assert!(last_error().contains(needle), "{}", last_error());
    }
    // Over the context (1024 tokens; about one per character).
    let long = c(&"word ".repeat(400));
    let (st, _) = generate(&s, &long, &opts(4), &mut Seen::default());
    assert_eq!(st, SmoltStatus::Prompt);
    assert!(
        last_error().contains("context holds 1024"),
        "{}",
        last_error()
    );
    // The session is still fine after all that.
    let (st, out) = generate(&s, &c("hi"), &opts(4), &mut Seen::default());
    assert_eq!(st, SmoltStatus::Ok);
    assert_eq!(out.unwrap().3, 4);
}

#[test]
fn text_streams_to_the_callback_and_a_schema_constrains_it() {
    let model = load(tiny_path());
    let s = session(&model);
    let mut seen = Seen::default();
    let (st, out) = generate(&s, &c("Once upon a time"), &opts(12), &mut seen);
    assert_eq!(st, SmoltStatus::Ok, "{}", last_error());
    let (text, prompt, reused, n, finish) = out.unwrap();
    assert_eq!(seen.pieces.concat(), text, "the pieces make the text");
    assert!(!seen.pieces.is_empty());
    assert_eq!((reused, n, finish), (0, 12, SmoltFinish::Length));
    assert!(prompt > 10);
    // The same prompt again: all but its last token come from the cache, same greedy text.
    let mut again = Seen::default();
    let (_, out2) = generate(&s, &c("Once upon a time"), &opts(12), &mut again);
    let out2 = out2.unwrap();
    assert_eq!(out2.2, prompt - 1, "reused");
    assert_eq!(out2.0, text);
    // Seeds: the same seed gives the same sample (hot: the tiny model's distribution is
    // peaked).
    let sampled = |seed| {
        let o = SmoltOptions {
            temperature: 4.0,
            seed,
            ..opts(16)
        };
        generate(&s, &c("Once"), &o, &mut Seen::default())
            .1
            .unwrap()
            .0
    };
    assert_eq!(sampled(5), sampled(5));
    assert_ne!(sampled(5), sampled(6));
    // A schema: the output is valid JSON of that schema, streamed too.
    let schema = c(SCHEMA);
    let o = SmoltOptions {
        json_schema: schema.as_ptr(),
        ..opts(40)
    };
    for prompt in [
        "The NPC feels",
        "A second prompt reuses the compiled schema",
    ] {
        let mut seen = Seen::default();
        let (st, out) = generate(&s, &c(prompt), &o, &mut seen);
        assert_eq!(st, SmoltStatus::Ok, "{}", last_error());
        let (text, _, _, _, finish) = out.unwrap();
        assert_eq!(finish, SmoltFinish::Stop);
        assert_eq!(seen.pieces.concat(), text);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            ["calm", "angry"].contains(&v["mood"].as_str().unwrap()),
            "{v}"
        );
        assert!((1..=9).contains(&v["level"].as_i64().unwrap()), "{v}");
    }
    // Too few tokens for the value: an error, the text still there, marked truncated.
    let free = c(
        r#"{"type": "object", "properties": {"line": {"type": "string"}},
        "required": ["line"]}"#,
    );
    let o = SmoltOptions {
        json_schema: free.as_ptr(),
        ..opts(3)
    };
    let (st, out) = generate(&s, &c("Say"), &o, &mut Seen::default());
    assert_eq!(st, SmoltStatus::Truncated);
    assert!(last_error().contains("NOT valid JSON"), "{}", last_error());
    let (text, _, _, _, finish) = out.unwrap();
    assert_eq!(finish, SmoltFinish::Truncated);
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    // Chat and task prompts render (the built-in Gemma format, the default task template).
    for format in [SmoltPromptFormat::Chat, SmoltPromptFormat::Task] {
        let o = SmoltOptions {
            prompt_format: format as u32,
            ..opts(4)
        };
        let (st, out) = generate(&s, &c("hello"), &o, &mut Seen::default());
        assert_eq!(st, SmoltStatus::Ok, "{format:?}: {}", last_error());
        assert!(out.unwrap().1 > 10, "{format:?} adds its template");
    }
}

#[test]
fn the_callback_stops_generation_and_is_not_called_again() {
    let model = load(tiny_path());
    let s = session(&model);
    let mut seen = Seen {
        stop_at: Some(2),
        ..Seen::default()
    };
    let (st, out) = generate(&s, &c("Once upon a time"), &opts(30), &mut seen);
    assert_eq!(st, SmoltStatus::Ok);
    let (text, _, _, n, finish) = out.unwrap();
    assert_eq!(finish, SmoltFinish::Callback);
    assert_eq!(seen.pieces.len(), 3, "{:?}", seen.pieces);
    assert!(n < 30);
    assert!(text.starts_with(&seen.pieces.concat()));
    // Under a schema too.
    let schema = c(SCHEMA);
    let o = SmoltOptions {
        json_schema: schema.as_ptr(),
        ..opts(40)
    };
    let mut seen = Seen {
        stop_at: Some(0),
        ..Seen::default()
    };
    let (st, out) = generate(&s, &c("x"), &o, &mut seen);
    assert_eq!(st, SmoltStatus::Ok);
    assert_eq!(out.unwrap().4, SmoltFinish::Callback);
    assert_eq!(seen.pieces.len(), 1);
}

/// Cancels from another thread at the first piece and waits until it has, so the next token
/// sees it.
fn cancel_at_first_piece(s: &Arc<Session>) -> (Box<dyn FnMut()>, std::thread::JoinHandle<()>) {
    let go = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let (g, d, s2) = (Arc::clone(&go), Arc::clone(&done), Arc::clone(s));
    let t = std::thread::spawn(move || {
        g.wait();
        // SAFETY: the session is alive (the Arc) while the other thread generates on it.
        assert_eq!(unsafe { smolt_session_cancel(s2.0) }, SmoltStatus::Ok);
        d.wait();
    });
    let f = Box::new(move || {
        go.wait();
        done.wait();
    });
    (f, t)
}

#[test]
fn cancel_from_another_thread_stops_the_running_generation_only() {
    let model = load(tiny_path());
    let s = Arc::new(session(&model));
    let schema = c(SCHEMA);
    let constrained = SmoltOptions {
        json_schema: schema.as_ptr(),
        ..opts(40)
    };
    for o in [opts(60), constrained] {
        let (f, t) = cancel_at_first_piece(&s);
        let mut seen = Seen {
            on_first: Some(f),
            ..Seen::default()
        };
        let (st, out) = generate(&s, &c("Once upon a time"), &o, &mut seen);
        t.join().unwrap();
        assert_eq!(st, SmoltStatus::Ok, "{}", last_error());
        let (text, _, _, n, finish) = out.unwrap();
        assert_eq!(finish, SmoltFinish::Cancelled, "{text}");
        assert!(n < 10, "{n} tokens after a cancel at the first piece");
    }
    // A cancel while nothing runs does not touch the next generation.
    // SAFETY: a live session.
    assert_eq!(unsafe { smolt_session_cancel(s.0) }, SmoltStatus::Ok);
    let (st, out) = generate(&s, &c("Once upon a time"), &opts(8), &mut Seen::default());
    assert_eq!(st, SmoltStatus::Ok);
    assert_eq!(out.unwrap().4, SmoltFinish::Length);
}

#[test]
fn a_session_generates_once_at_a_time_and_models_are_shared() {
    let model = Arc::new(load(tiny_path()));
    let s = Arc::new(session(&model));
    // While one thread generates (held at its first piece), another gets BUSY.
    let busy = Arc::new(Mutex::new(None));
    let (b, s2) = (Arc::clone(&busy), Arc::clone(&s));
    let mut seen = Seen {
        on_first: Some(Box::new(move || {
            let s3 = Arc::clone(&s2);
            let st = std::thread::spawn(move || {
                let r = generate(&s3, &c("other"), &opts(2), &mut Seen::default());
                (r.0, last_error())
            })
            .join()
            .unwrap();
            *b.lock().unwrap() = Some(st);
        })),
        ..Seen::default()
    };
    let (st, _) = generate(&s, &c("Once upon a time"), &opts(6), &mut seen);
    assert_eq!(st, SmoltStatus::Ok);
    let (st, msg) = busy.lock().unwrap().take().unwrap();
    assert_eq!(st, SmoltStatus::Busy);
    assert!(msg.contains("one session per thread"), "{msg}");
    // Sessions of one model on several threads at once give what they give alone.
    let alone = generate(
        &session(&model),
        &c("Hello there"),
        &opts(10),
        &mut Seen::default(),
    );
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&model);
            std::thread::spawn(move || {
                generate(
                    &session(&m),
                    &c("Hello there"),
                    &opts(10),
                    &mut Seen::default(),
                )
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), alone);
    }
    // A session outlives its model's handle.
    let m = load(tiny_path());
    let s = session(&m);
    drop(m);
    let (st, _) = generate(&s, &c("still here"), &opts(3), &mut Seen::default());
    assert_eq!(st, SmoltStatus::Ok);
}

#[test]
fn status_names_match_the_header() {
    let header = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include/smolt.h"),
    )
    .unwrap();
    for code in 0..=12 {
        // SAFETY: smolt_status_name returns a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(smolt_status_name(code)) }
            .to_str()
            .unwrap();
        assert!(
            header.contains(&format!("{name} = {code},")),
            "{name} = {code} is not in the header"
        );
    }
    // SAFETY: as above.
    let unknown = unsafe { CStr::from_ptr(smolt_status_name(99)) };
    assert_eq!(unknown.to_str().unwrap(), "SMOLT_STATUS_UNKNOWN");
    // SAFETY: smolt_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(smolt_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
