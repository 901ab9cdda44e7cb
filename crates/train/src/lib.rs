//! smolt-train: everything around the LoRA forward/backward — tokenized data, batching,
//! optimiser, schedule, checkpoints and resume, metrics and reports — written against the small
//! [`Trainable`] trait so that it is tested on a toy model and the LoRA engine plugs in without
//! changes here.
//!
//! Flow: [`TrainConfig`] (a [`smolt_task::Task`] plus training settings) →
//! [`dataset::load_dataset`] (the task's records → ids + loss mask through a [`TextEncoder`]) →
//! [`Trainer`] (micro-batches from [`batch`], AdamW from [`optim`], lr from [`schedule`],
//! atomic [`checkpoint`]s) → run directory (`config.toml`, the adapter in PEFT format via
//! [`smolt_lora::files`], `metrics.csv`, `loss.png`, `summary.json` via [`report`]).
//!
//! [`gemma::LoraEngine`] is the real [`Trainable`] (smolt-lora over smolt-model), and
//! [`gemma::train`] is the whole `smolt train` command; [`toy`] is the test model.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod gemma;
pub mod optim;
pub mod report;
pub mod schedule;
pub mod toy;

pub use config::TrainConfig;
pub use dataset::{Dataset, Example};
pub use engine::{LossSum, Trainable, Trainer};
pub use smolt_lora::Param;
pub use smolt_task::TextEncoder;
