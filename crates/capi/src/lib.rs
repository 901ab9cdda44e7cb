//! The C API of smolt (`include/smolt.h`, generated from this file by cbindgen): load a GGUF
//! model and LoRA adapters, open sessions, generate text or schema-constrained JSON, stream it
//! through a callback, cancel from another thread.
//!
//! Every function here is a thin shell: it checks the C arguments (null pointers, UTF-8,
//! option values), calls the safe layer in `engine`, and reports errors as a
//! [`SmoltStatus`] plus a per-thread message ([`smolt_last_error`]). Each runs under
//! `catch_unwind`, so no panic crosses into C. The `unsafe` is here and only here, every block
//! saying why it is sound; the header states the caller's side of each contract.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod engine;
mod status;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::Arc;

use smolt_decode::SamplingParams;

use engine::{Finish, LoadedModel, PromptFormat, Request, Session};
use status::{guard, quietly, Error, Result};

/// What a call returned: `SMOLT_STATUS_OK` (0) or the reason it failed, with a message from
/// `smolt_last_error()`.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmoltStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was null.
    NullArgument = 1,
    /// A text argument (path, prompt, schema) is not valid UTF-8.
    InvalidUtf8 = 2,
    /// An option is out of range (temperature below 0 or NaN, top_p outside (0, 1], an
    /// unknown prompt format).
    InvalidArgument = 3,
    /// The file or folder cannot be read (missing, no permission).
    Io = 4,
    /// The file is not a model smolt can run (not GGUF, truncated, unsupported architecture,
    /// no tokenizer).
    Model = 5,
    /// The adapter cannot be attached (missing files, shapes of another model, bad run config).
    Adapter = 6,
    /// The JSON Schema is not JSON or not a schema the constrained decoder supports.
    Schema = 7,
    /// The prompt cannot be used: empty, longer than the model's context, or the chat format
    /// failed.
    Prompt = 8,
    /// The session is generating on another thread.
    Busy = 9,
    /// The token limit cut a schema-constrained output inside an unfinished value: the text
    /// (in the result) is NOT valid JSON. Raise max_tokens or bound the schema.
    Truncated = 10,
    /// The decode loop failed.
    Generation = 11,
    /// A bug in smolt: it was caught, and the object involved is still usable.
    Panic = 12,
}

/// Why a generation ended (`smolt_result.finish`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmoltFinish {
    /// The model ended its answer, or the schema-constrained value is complete.
    Stop = 0,
    /// `max_tokens` were generated (a constrained value is complete all the same).
    Length = 1,
    /// `max_tokens` ran out inside an unfinished constrained value (the call returned
    /// `SMOLT_STATUS_TRUNCATED`).
    Truncated = 2,
    /// The model's context is full.
    ContextFull = 3,
    /// The callback returned non-zero.
    Callback = 4,
    /// `smolt_session_cancel` was called.
    Cancelled = 5,
}

/// How `smolt_generate` turns the prompt text into the model's input
/// (`smolt_options.prompt_format`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmoltPromptFormat {
    /// The text as it is; special-token text such as `<start_of_turn>` becomes those tokens,
    /// and BOS is added if the vocabulary wants it.
    Raw = 0,
    /// One user message rendered with the model's chat template (or the task's
    /// `chat_template` setting of the adapter's training run), then the opened model turn.
    Chat = 1,
    /// The input of the adapter's task template (`{input}` in its `config.toml`), exactly as
    /// training rendered it; the default task's template without an adapter run.
    Task = 2,
}

/// A loaded model: the base weights, perhaps with one adapter. Immutable, so it may be used
/// from any number of threads at once.
pub struct SmoltModel {
    inner: Arc<LoadedModel>,
}

/// A model with its own KV cache, for one generation at a time. The tokens that a prompt
/// shares with the start of the previous prompt (a persona, a system prompt, few-shot
/// examples) are not computed again.
pub struct SmoltSession {
    inner: Session,
}

/// Receives generated text as it comes: `piece` is NUL-terminated UTF-8 (whole characters),
/// valid only during the call; `user` is the pointer given to `smolt_generate`. Return 0 to
/// go on, non-zero to stop. It runs on the thread that called `smolt_generate`, must not
/// throw, and must not call `smolt_generate`.
pub type SmoltTokenCallback =
    Option<unsafe extern "C" fn(piece: *const c_char, user: *mut c_void) -> c_int>;

/// Settings of one generation: start from `smolt_default_options()` and change fields.
///
/// Versioned by size: `struct_size` says which fields the caller knows. A later smolt.h may
/// add fields at the end; the library takes the fields that fit in `struct_size` and the
/// defaults for the rest, so a program built against an older header keeps working with a
/// newer library. A size the library does not know (smaller than the first versioned
/// layout, or larger than its own: a newer header) is `SMOLT_STATUS_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmoltOptions {
    /// `sizeof(smolt_options)` as the caller was compiled with; `smolt_default_options()`
    /// sets it. Never change it by hand.
    pub struct_size: u32,
    /// At most this many new tokens (default 128).
    pub max_tokens: u32,
    /// 0 is greedy: always the most likely token (default 0).
    pub temperature: f32,
    /// Sample among the most likely tokens whose probabilities add up to top_p, in (0, 1]
    /// (default 1).
    pub top_p: f32,
    /// Sample among the top_k most likely tokens; 0: no limit (default 0).
    pub top_k: u32,
    /// Random seed: the same seed, options and prompt give the same text (default 0).
    pub seed: u64,
    /// A JSON Schema as text, or NULL (default). When set, the output is JSON valid against
    /// it, by construction. The last schema compiled is kept by the session.
    pub json_schema: *const c_char,
    /// A `SMOLT_PROMPT_FORMAT_*` value (default `SMOLT_PROMPT_FORMAT_RAW`).
    pub prompt_format: u32,
}

/// What `smolt_generate` produced. Release the text with `smolt_result_free`.
#[repr(C)]
#[derive(Debug)]
pub struct SmoltResult {
    /// The whole output, NUL-terminated UTF-8 (NUL characters the model writes are dropped),
    /// owned by the library.
    pub text: *mut c_char,
    /// Tokens in the prompt, of which `reused_tokens` were already in the session's cache.
    pub prompt_tokens: u32,
    pub reused_tokens: u32,
    /// Tokens generated.
    pub output_tokens: u32,
    /// Why it ended: a `SMOLT_FINISH_*` value.
    pub finish: SmoltFinish,
}

// ---- argument checks: each turns one C argument into a Rust value or an error ----

/// `p` as UTF-8 text.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays unchanged for `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::new(
            SmoltStatus::NullArgument,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: `p` is not null and, by this function's contract, NUL-terminated and unchanged
    // for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Error::new(
            SmoltStatus::InvalidUtf8,
            format!("{what} is not valid UTF-8: {e}"),
        )
    })
}

/// The object behind a handle.
///
/// # Safety
/// `p` is null or a pointer this library returned for a `T` and has not freed, not freed
/// for `'a` either.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: by this function's contract a non-null `p` points to a live `T` (allocated by
    // `Box::into_raw` in this library), and `T` is only ever shared (`&T`), never mutated
    // through the handle.
    unsafe { p.as_ref() }
        .ok_or_else(|| Error::new(SmoltStatus::NullArgument, format!("{what} is NULL")))
}

/// Checks an output pointer before any work is done.
fn out_ptr<T>(p: *mut T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::new(
            SmoltStatus::NullArgument,
            format!("{what} is NULL"),
        ));
    }
    Ok(())
}

/// Moves `value` to the heap and stores its address in `*out`.
///
/// # Safety
/// `out` is non-null, aligned and writable.
unsafe fn give<T>(out: *mut *mut T, value: T) {
    let p = Box::into_raw(Box::new(value));
    // SAFETY: the caller guarantees `out` is valid for a write; the old value is a plain
    // pointer with nothing to drop.
    unsafe { out.write(p) };
}

/// Takes back and drops an object this library handed out.
///
/// # Safety
/// `p` is null or came from `give` for a `T`, and is not used after this call.
unsafe fn take_back<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in `give` and is not used again: this is the
        // one owner reclaiming it.
        drop(unsafe { Box::from_raw(p) });
    }
}

// ---- the C functions ----

/// The library's version, e.g. "0.1.0" (a static string: never free it).
#[no_mangle]
pub extern "C" fn smolt_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// The message of the last call on this thread that returned a `smolt_status`, if it failed;
/// NULL if it succeeded. The functions that return no status (the `*_free` functions and the
/// getters) leave it alone, so a caller may release objects before reading it. The text stays
/// valid until the next call that returns a status on this thread. Messages name the file,
/// option or limit at fault.
#[no_mangle]
pub extern "C" fn smolt_last_error() -> *const c_char {
    status::last_error()
}

/// `size_of::<SmoltOptions>()` today.
const OPTIONS_SIZE: usize = std::mem::size_of::<SmoltOptions>();
/// The size of the first versioned `smolt_options` (`struct_size` through `prompt_format`):
/// the smallest a caller may pass. Fields added later go after it, and this stays.
const OPTIONS_SIZE_V1: usize = std::mem::offset_of!(SmoltOptions, prompt_format) + 4;

/// The options `options` points to, as this library reads them: the first `struct_size`
/// bytes from the caller, the defaults for fields beyond them (see [`SmoltOptions`]).
///
/// # Safety
/// `options` is NULL or points to readable memory of at least 4 bytes whose first `u32` is
/// the size of the readable `smolt_options` behind it.
unsafe fn read_options(options: *const SmoltOptions) -> Result<SmoltOptions> {
    if options.is_null() {
        return Ok(smolt_default_options());
    }
    // SAFETY: every version of the struct starts with its size, a u32 (caller's promise).
    let size = unsafe { std::ptr::read_unaligned(options.cast::<u32>()) } as usize;
    if !(OPTIONS_SIZE_V1..=OPTIONS_SIZE).contains(&size) {
        return Err(Error::new(
            SmoltStatus::InvalidArgument,
            format!(
                "options->struct_size is {size}, but this library reads smolt_options of \
                 {OPTIONS_SIZE_V1} to {OPTIONS_SIZE} bytes: start from smolt_default_options() \
                 and build against the smolt.h of this library (or an older one)"
            ),
        ));
    }
    let mut out = smolt_default_options();
    // SAFETY: the caller's struct has `size` readable bytes, and `out` has OPTIONS_SIZE ≥
    // size writable ones; the two do not overlap (`out` is a local). Every bit pattern is
    // valid for the fields (integers, floats, a pointer), so copying a prefix of the bytes
    // leaves `out` a valid value whatever the caller wrote.
    unsafe {
        std::ptr::copy_nonoverlapping(
            options.cast::<u8>(),
            (&mut out as *mut SmoltOptions).cast::<u8>(),
            size,
        );
    }
    out.struct_size = OPTIONS_SIZE as u32;
    Ok(out)
}

/// The default generation settings (see `smolt_options`).
#[no_mangle]
pub extern "C" fn smolt_default_options() -> SmoltOptions {
    SmoltOptions {
        struct_size: OPTIONS_SIZE as u32,
        max_tokens: 128,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        json_schema: std::ptr::null(),
        prompt_format: SmoltPromptFormat::Raw as u32,
    }
}

/// Loads a GGUF model file (memory-mapped: the weights stay in the file's pages). On success
/// `*out` is the model, to release with `smolt_model_free`; on failure `*out` is untouched.
/// Errors: `SMOLT_STATUS_IO` (cannot open the file), `SMOLT_STATUS_MODEL` (not a usable
/// model), `SMOLT_STATUS_NULL_ARGUMENT`, `SMOLT_STATUS_INVALID_UTF8`.
///
/// The first call starts the compute threads: `SMOLT_THREADS` of them if that environment
/// variable is set, else one per core.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or points to writable storage for
/// a pointer.
#[no_mangle]
pub unsafe extern "C" fn smolt_model_load(
    path: *const c_char,
    out: *mut *mut SmoltModel,
) -> SmoltStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string, unchanged during the call.
        let path = unsafe { text(path, "path") }?;
        out_ptr(out, "out")?;
        let inner = Arc::new(LoadedModel::load(Path::new(path))?);
        // SAFETY: `out` was checked non-null; the caller guarantees it is writable.
        unsafe { give(out, SmoltModel { inner }) };
        Ok(())
    })
}

/// A new model: the weights of `base` with the LoRA adapter in `dir` attached (a `smolt train`
/// run directory, or any PEFT LoRA folder: `adapter_config.json` + `adapter_model.safetensors`).
/// A run directory's task (`config.toml`) then decides how `SMOLT_PROMPT_FORMAT_CHAT` and
/// `_TASK` prompts render and how constrained JSON is laid out, as in training. Any adapter of
/// `base` is not kept: the new model is base + this adapter. `base` stays valid and unchanged;
/// free both. Errors: `SMOLT_STATUS_ADAPTER`, `SMOLT_STATUS_MODEL` (the base file changed),
/// `SMOLT_STATUS_NULL_ARGUMENT`, `SMOLT_STATUS_INVALID_UTF8`.
///
/// # Safety
/// `base` is NULL or a live model from `smolt_model_load`/`smolt_model_load_adapter`; `dir`
/// is NULL or a NUL-terminated string; `out` is NULL or points to writable storage for a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn smolt_model_load_adapter(
    base: *const SmoltModel,
    dir: *const c_char,
    out: *mut *mut SmoltModel,
) -> SmoltStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a live model handle.
        let base = unsafe { handle(base, "base") }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string, unchanged during the call.
        let dir = unsafe { text(dir, "dir") }?;
        out_ptr(out, "out")?;
        let inner = Arc::new(base.inner.with_adapter(Path::new(dir))?);
        // SAFETY: `out` was checked non-null; the caller guarantees it is writable.
        unsafe { give(out, SmoltModel { inner }) };
        Ok(())
    })
}

/// Releases a model. Sessions made from it keep what they need and stay usable. NULL is
/// ignored.
///
/// # Safety
/// `model` is NULL or a live model handle, not used after this call by any thread.
#[no_mangle]
pub unsafe extern "C" fn smolt_model_free(model: *mut SmoltModel) {
    // SAFETY: the caller passes NULL or a live model handle and never uses it again.
    quietly(|| unsafe { take_back(model) });
}

/// The model's context length in tokens (prompt + output), or 0 if `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live model handle.
#[no_mangle]
pub unsafe extern "C" fn smolt_model_context_length(model: *const SmoltModel) -> u32 {
    let mut n = 0;
    quietly(|| {
        // SAFETY: the caller passes NULL or a live model handle.
        if let Ok(model) = unsafe { handle(model, "model") } {
            n = u32::try_from(model.inner.context_length()).unwrap_or(u32::MAX);
        }
    });
    n
}

/// A new session over `model`, with an empty KV cache. Use one session per thread (a
/// session's calls may come from any thread, one generation at a time); sessions of one model
/// share its weights. Release with `smolt_session_free`.
///
/// # Safety
/// `model` is NULL or a live model handle; `out` is NULL or points to writable storage for a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn smolt_session_new(
    model: *const SmoltModel,
    out: *mut *mut SmoltSession,
) -> SmoltStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a live model handle.
        let model = unsafe { handle(model, "model") }?;
        out_ptr(out, "out")?;
        let inner = Session::new(Arc::clone(&model.inner));
        // SAFETY: `out` was checked non-null; the caller guarantees it is writable.
        unsafe { give(out, SmoltSession { inner }) };
        Ok(())
    })
}

/// Releases a session. NULL is ignored.
///
/// # Safety
/// `session` is NULL or a live session handle; no generation or cancel runs on it, and no
/// thread uses it after this call.
#[no_mangle]
pub unsafe extern "C" fn smolt_session_free(session: *mut SmoltSession) {
    // SAFETY: the caller passes NULL or a live session handle that nothing uses any more.
    quietly(|| unsafe { take_back(session) });
}

/// Asks the generation running on `session` to stop: it ends at its next token with
/// `SMOLT_FINISH_CANCELLED` (status `SMOLT_STATUS_OK`). Safe to call from any thread while
/// another generates. A cancel does not carry over: a generation that starts after it runs
/// normally, and one asked for just as `smolt_generate` starts may be lost (cancel once the
/// callback has seen text, or again).
///
/// # Safety
/// `session` is NULL or a live session handle (not freed before this call returns).
#[no_mangle]
pub unsafe extern "C" fn smolt_session_cancel(session: *const SmoltSession) -> SmoltStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a live session handle; `Session` is shared by
        // reference only and its cancel flag is atomic.
        unsafe { handle(session, "session") }?.inner.cancel();
        Ok(())
    })
}

/// Reads and checks the C options.
fn request<'a>(prompt: &'a str, o: &SmoltOptions, schema: Option<&'a str>) -> Result<Request<'a>> {
    let invalid = |m: String| Error::new(SmoltStatus::InvalidArgument, m);
    if o.temperature.is_nan() || o.temperature < 0.0 {
        return Err(invalid(format!(
            "temperature must be 0 (greedy) or more, not {}",
            o.temperature
        )));
    }
    if !(o.top_p > 0.0 && o.top_p <= 1.0) {
        return Err(invalid(format!("top_p must be in (0, 1], not {}", o.top_p)));
    }
    let format = match o.prompt_format {
        f if f == SmoltPromptFormat::Raw as u32 => PromptFormat::Raw,
        f if f == SmoltPromptFormat::Chat as u32 => PromptFormat::Chat,
        f if f == SmoltPromptFormat::Task as u32 => PromptFormat::Task,
        f => return Err(invalid(format!("unknown prompt_format {f}"))),
    };
    Ok(Request {
        prompt,
        format,
        max_tokens: o.max_tokens as usize,
        sampling: SamplingParams {
            temperature: o.temperature,
            top_k: o.top_k as usize,
            top_p: o.top_p,
            seed: o.seed,
        },
        schema,
    })
}

/// NUL-free C text.
fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Generates a continuation of `prompt` on `session`. Text goes to `callback` (if not NULL)
/// piece by piece as it is decoded, on this thread; the whole text, counts and the finish
/// reason go to `*result` (if not NULL; release it with `smolt_result_free`). `options` NULL
/// means `smolt_default_options()`.
///
/// With `options->json_schema` the output is JSON valid against the schema: each step samples
/// only among the tokens the schema allows. If `max_tokens` runs out inside an unfinished
/// value the call returns `SMOLT_STATUS_TRUNCATED` (the result is still filled in, with
/// `SMOLT_FINISH_TRUNCATED`): that text must not be used as JSON.
///
/// Errors: `SMOLT_STATUS_NULL_ARGUMENT`, `_INVALID_UTF8`, `_INVALID_ARGUMENT`, `_SCHEMA`,
/// `_PROMPT`, `_BUSY` (the session is generating on another thread), `_TRUNCATED`,
/// `_GENERATION`. On any error but `_TRUNCATED`, `*result` is untouched.
///
/// # Safety
/// `session` is NULL or a live session handle; `prompt` is NULL or a NUL-terminated string;
/// `options` is NULL or points to a `smolt_options` (of `struct_size` readable bytes, as
/// `smolt_default_options()` sets it) whose `json_schema` is NULL or a
/// NUL-terminated string; `callback`, if not NULL, is safe to call with a NUL-terminated
/// string and `user`; `result` is NULL or points to writable storage for a `smolt_result`.
/// None of them change or go away during the call.
#[no_mangle]
pub unsafe extern "C" fn smolt_generate(
    session: *const SmoltSession,
    prompt: *const c_char,
    options: *const SmoltOptions,
    callback: SmoltTokenCallback,
    user: *mut c_void,
    result: *mut SmoltResult,
) -> SmoltStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a live session handle.
        let session = unsafe { handle(session, "session") }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string, unchanged during the call.
        let prompt = unsafe { text(prompt, "prompt") }?;
        // SAFETY: the caller passes NULL or a pointer to a readable `smolt_options` of
        // `struct_size` bytes.
        let options = unsafe { read_options(options) }?;
        let schema = if options.json_schema.is_null() {
            None
        } else {
            // SAFETY: non-null, and the caller guarantees a NUL-terminated string.
            Some(unsafe { text(options.json_schema, "options->json_schema") }?)
        };
        let req = request(prompt, &options, schema)?;
        let mut on_piece = |piece: &str| -> bool {
            let Some(cb) = callback else { return true };
            let piece = c_text(piece);
            // SAFETY: the caller guarantees `cb` may be called with a NUL-terminated string
            // (alive for the call: `piece` outlives it) and `user`.
            unsafe { cb(piece.as_ptr(), user) == 0 }
        };
        let out = session.inner.generate(&req, &mut on_piece)?;
        let finish = match out.finish {
            Finish::Stop => SmoltFinish::Stop,
            Finish::Length => SmoltFinish::Length,
            Finish::Truncated => SmoltFinish::Truncated,
            Finish::ContextFull => SmoltFinish::ContextFull,
            Finish::Callback => SmoltFinish::Callback,
            Finish::Cancelled => SmoltFinish::Cancelled,
        };
        if !result.is_null() {
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let r = SmoltResult {
                text: c_text(&out.text).into_raw(),
                prompt_tokens: count(out.prompt_tokens),
                reused_tokens: count(out.reused_tokens),
                output_tokens: count(out.output_tokens),
                finish,
            };
            // SAFETY: `result` is non-null and, by the caller's contract, writable; whatever
            // it held is not read or dropped (it may be uninitialised).
            unsafe { result.write(r) };
        }
        if finish == SmoltFinish::Truncated {
            return Err(Error::new(
                SmoltStatus::Truncated,
                format!(
                    "the output was cut off by max_tokens ({}) inside an unfinished value: it is \
                     NOT valid JSON; raise max_tokens or bound the schema (maxLength, maxItems)",
                    options.max_tokens
                ),
            ));
        }
        Ok(())
    })
}

/// Releases the text of a result and sets it to NULL (so a second call does nothing). NULL
/// and a zeroed result are ignored.
///
/// # Safety
/// `result` is NULL or points to a `smolt_result` whose `text` is NULL or came from
/// `smolt_generate` and was not released since.
#[no_mangle]
pub unsafe extern "C" fn smolt_result_free(result: *mut SmoltResult) {
    quietly(|| {
        if result.is_null() {
            return;
        }
        // SAFETY: `result` is non-null and points to a `smolt_result`; only its `text` field
        // is read and written, through a raw place (the other fields are not looked at, so
        // their bit patterns do not matter).
        let text = unsafe { std::ptr::addr_of_mut!((*result).text).replace(std::ptr::null_mut()) };
        if !text.is_null() {
            // SAFETY: `text` came from `CString::into_raw` in `smolt_generate` and, by the
            // caller's contract, was not released since; the field is now NULL, so it cannot
            // be released twice through this result.
            drop(unsafe { CString::from_raw(text) });
        }
    });
}

/// A short name for a status code ("SMOLT_STATUS_SCHEMA"), or "SMOLT_STATUS_UNKNOWN" (a
/// static string: never free it).
#[no_mangle]
pub extern "C" fn smolt_status_name(status: i32) -> *const c_char {
    let name: &'static str = match status {
        0 => "SMOLT_STATUS_OK\0",
        1 => "SMOLT_STATUS_NULL_ARGUMENT\0",
        2 => "SMOLT_STATUS_INVALID_UTF8\0",
        3 => "SMOLT_STATUS_INVALID_ARGUMENT\0",
        4 => "SMOLT_STATUS_IO\0",
        5 => "SMOLT_STATUS_MODEL\0",
        6 => "SMOLT_STATUS_ADAPTER\0",
        7 => "SMOLT_STATUS_SCHEMA\0",
        8 => "SMOLT_STATUS_PROMPT\0",
        9 => "SMOLT_STATUS_BUSY\0",
        10 => "SMOLT_STATUS_TRUNCATED\0",
        11 => "SMOLT_STATUS_GENERATION\0",
        12 => "SMOLT_STATUS_PANIC\0",
        _ => "SMOLT_STATUS_UNKNOWN\0",
    };
    name.as_ptr().cast()
}
