//! What can go wrong, phrased for the person who wrote the schema or grammar.

use std::path::PathBuf;

/// Errors of this crate. Compile-time errors ([`ConstrainError::InvalidSchema`],
/// [`ConstrainError::Rejected`], [`ConstrainError::AcceptsNothing`]) are meant to be shown to
/// the user as they are: they carry llguidance's own text plus where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConstrainError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },

    /// The schema breaks the JSON Schema meta-schema (a typo in a keyword's value, a wrong type).
    #[error("{what} is not a valid JSON Schema: at {pointer}: {message}")]
    InvalidSchema {
        what: String,
        /// JSON pointer into the schema (`/properties/total/minimum`), `/` for the root.
        pointer: String,
        message: String,
    },

    /// llguidance cannot honour the constraint: an unsupported keyword, a contradiction
    /// (`minimum` > `maximum`, conflicting `type`s), a Lark or regex syntax error.
    #[error("{what} cannot be enforced: {message}{hint}")]
    Rejected {
        what: String,
        message: String,
        /// Extra advice, empty or starting with a newline.
        hint: String,
    },

    /// The constraint compiles but no output satisfies it.
    #[error("{what} accepts no output at all: {detail}")]
    AcceptsNothing { what: String, detail: String },

    /// A tool list or tool choice that cannot be used (see [`crate::ToolError::param`]).
    #[error(transparent)]
    Tools(#[from] crate::tools::ToolError),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// llguidance failed while generating (a bug, or a token fed that the mask forbade).
    #[error("constraint engine: {0}")]
    Engine(String),

    /// The logits source (the model) failed.
    #[error("forward pass: {0}")]
    Forward(#[source] anyhow::Error),
}

pub type Result<T, E = ConstrainError> = std::result::Result<T, E>;
