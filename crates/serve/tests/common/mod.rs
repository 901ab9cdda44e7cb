//! What the server's integration tests share: the real model and a random adapter over it.

use std::path::PathBuf;

use smolt_lora::{save_adapter, LoraAdapter, LoraConfig};
use smolt_model::Model;

pub fn model_path() -> PathBuf {
    smolt_hub::model_for_tests().unwrap_or_else(|e| panic!("these tests need Gemma 3 270M: {e}"))
}

/// A random adapter over the real model, strong enough to change its greedy output.
pub fn random_adapter(model: &Model, dir: &std::path::Path) {
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let mut adapter: LoraAdapter<f32> = LoraAdapter::new(&model.spec, &cfg, 3).unwrap();
    adapter.init_with(|layer, _t, is_b, i, j| {
        let v = 0.05 * ((layer * 7 + i * 3 + j) as f64 * 0.37).sin();
        if is_b {
            v
        } else {
            v * 2.0
        }
    });
    save_adapter(dir, adapter.params(), &cfg, "gemma-3-270m").unwrap();
}
