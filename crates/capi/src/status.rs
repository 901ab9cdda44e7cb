//! Errors as the C side sees them: a status code, and a message kept per thread for
//! `smolt_last_error`. Every C entry point runs through [`guard`], which also turns a panic
//! into [`SmoltStatus::Panic`] so that none crosses the boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::AssertUnwindSafe;

use crate::SmoltStatus;

/// A failed call: its code and what to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: SmoltStatus,
    pub message: String,
}

impl Error {
    pub fn new(status: SmoltStatus, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

thread_local! {
    /// The message of this thread's last failed call, as C text.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // A message never holds NUL in practice; if one does, it is cut there rather than lost.
    let message = message.split('\0').next().unwrap_or_default();
    let c = CString::new(message).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(c));
}

/// This thread's last error message, or null if the last call succeeded. The text lives until
/// the next call on this thread.
pub fn last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
}

/// Runs one C entry point that returns a status: clears the last error, runs `f`, and reports
/// its error or panic as a status (the message kept for `smolt_last_error`).
pub fn guard(f: impl FnOnce() -> Result<()>) -> SmoltStatus {
    LAST_ERROR.with(|l| *l.borrow_mut() = None);
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SmoltStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(p) => {
            set_last_error(&format!(
                "internal error (a bug in smolt, please report it): {}",
                panic_text(p.as_ref())
            ));
            SmoltStatus::Panic
        }
    }
}

/// A panic's message, if it has one.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Runs a C entry point that cannot fail (a release, a getter): a panic is caught and
/// dropped, and the last error is left as it was, so that a caller may release objects
/// before reading the message of a failed call.
pub fn quietly(f: impl FnOnce()) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(f));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> Option<String> {
        let p = last_error();
        if p.is_null() {
            return None;
        }
        // SAFETY: `last_error` returns null or a pointer into this thread's CString, which
        // lives until the next `guard` on this thread: none runs while it is read here.
        let text = unsafe { std::ffi::CStr::from_ptr(p) };
        Some(text.to_string_lossy().into())
    }

    #[test]
    fn errors_and_panics_become_codes_with_a_message_per_thread() {
        assert_eq!(guard(|| Ok(())), SmoltStatus::Ok);
        assert_eq!(last(), None);
        let s = guard(|| Err(Error::new(SmoltStatus::Schema, "bad\0tail")));
        assert_eq!(s, SmoltStatus::Schema);
        assert_eq!(last().as_deref(), Some("bad"));
        // Another thread has its own message.
        std::thread::spawn(|| assert_eq!(last(), None))
            .join()
            .unwrap();
        let s = guard(|| panic!("boom"));
        assert_eq!(s, SmoltStatus::Panic);
        assert!(last().unwrap().contains("boom"), "{:?}", last());
        assert_eq!(guard(|| Ok(())), SmoltStatus::Ok);
        assert_eq!(last(), None, "a success clears the message");
    }
}
