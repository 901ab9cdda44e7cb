//! smolt: the library facade over the layered crates, and the pipeline steps that combine them.
//!
//! Only `smolt train` and `smolt demo` reach [`train`]; generation, evaluation and serving
//! ([`serve`]) take their task from [`task`] and their adapters from [`lora`].
pub mod evaluate;
pub mod evaluate_tools;
pub mod tune;

pub use smolt_constrain as constrain;
pub use smolt_data as data;
pub use smolt_decode as decode;
pub use smolt_eval as eval;
pub use smolt_gguf as gguf;
pub use smolt_hub as hub;
pub use smolt_kernels as kernels;
pub use smolt_lora as lora;
pub use smolt_model as model;
pub use smolt_quant as quant;
pub use smolt_serve as serve;
pub use smolt_task as task;
pub use smolt_teacher as teacher;
pub use smolt_tokenizer as tokenizer;
pub use smolt_train as train;
