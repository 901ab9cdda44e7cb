//! smolt-train: everything around the LoRA forward/backward — data, batching, optimiser,
//! schedule, checkpoints and resume, metrics and reports — written against the small
//! [`Trainable`] trait so that it is tested on a toy model and the Gemma 3 LoRA engine plugs in
//! without changes here.
//!
//! Flow: [`TrainConfig`] → [`data::load_dataset`] (JSONL → ids + loss mask through a
//! [`TextEncoder`]) → [`Trainer`] (micro-batches from [`batch`], AdamW from [`optim`], lr from
//! [`schedule`], atomic [`checkpoint`]s) → run directory (`config.toml`, adapter in PEFT format
//! via [`adapter`], `metrics.csv`, `loss.png`, `summary.json` via [`report`]).
//!
//! [`gemma::LoraEngine`] is the real [`Trainable`] (smolt-lora over smolt-model), and
//! [`gemma::train`] is the whole `smolt train` command; [`toy`] is the test model.

pub mod adapter;
pub mod batch;
pub mod chat;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod engine;
pub mod gemma;
pub mod io;
pub mod optim;
pub mod prompt;
pub mod report;
pub mod schedule;
pub mod task;
pub mod toy;

pub use config::TrainConfig;
pub use data::{Dataset, Example, TextEncoder};
pub use engine::{LossSum, Param, Trainable, Trainer};
