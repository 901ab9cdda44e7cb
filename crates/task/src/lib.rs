//! smolt-task: what a job is, in one place below training, decoding and serving.
//!
//! A [`Task`] (read from `task.toml`) names the model, the data, the answer schema and how a
//! record becomes text: the prompt template ([`prompt`]), the chat template for conversations
//! ([`chat`]), the JSON style of answers ([`json`]). [`record`] reads the data formats with
//! file:line errors, [`check`] is `smolt data check`, [`init`] writes a task folder to start
//! from. Training, evaluation, generation, the demo — and next the server and the C API — all
//! take their task from here, so the same record renders the same way everywhere.
//!
//! Module order (each uses only those before it): `json` → `chat` → `tools` → `encoder` → `prompt` →
//! `schema` → `task` → `record` → `check` → `init`.

pub mod chat;
pub mod check;
pub mod encoder;
pub mod init;
pub mod json;
pub mod prompt;
pub mod record;
pub mod schema;
pub mod task;
pub mod tools;

pub use chat::{
    parse_calls, ChatError, ChatFormat, ChatTemplateSetting, Message, ModelTemplate, Role,
};
pub use encoder::{ByteEncoder, TextEncoder};
pub use json::{to_json_text, JsonStyle};
pub use record::{read_jsonl, DataError, DataErrors, Format, Location, TextExample};
pub use schema::AnswerSchema;
pub use task::{Overlong, Task, DEFAULT_TEMPLATE, RUN_TASK_FILE};
