//! A trained adapter attached for inference computes the same function the training engine
//! optimised: the loss from the inference logits equals the engine's loss with the adapter.

use smolt_lora::{attach_adapter, save_adapter, Frozen, LoraAdapter, LoraConfig, Sequence};
use smolt_model::{Logits, Model, Precision};

#[test]
fn attached_adapter_reproduces_the_engine_loss() {
    let gguf = smolt_model::testing::tiny_gemma3(11);
    let mut model = Model::from_gguf(gguf, Precision::F32).unwrap();
    let lcfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let mut adapter: LoraAdapter<f32> = LoraAdapter::new(&model.spec, &lcfg, 5).unwrap();
    // Non-zero B so the adapter changes the function.
    adapter.init_with(|layer, _t, is_b, i, j| {
        let base = 0.05 * ((layer * 7 + i * 3 + j) as f64 * 0.37).sin();
        if is_b {
            base
        } else {
            base * 2.0
        }
    });
    let tokens: Vec<u32> = (0..20).map(|i| 3 + (i * 37 % 290) as u32).collect();
    let labels: Vec<i64> = tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| if i >= 8 { t as i64 } else { -100 })
        .collect();
    let seq = Sequence {
        tokens: &tokens,
        labels: &labels,
    };
    let engine = Frozen::from_model(&model)
        .loss(Some(&adapter), &seq)
        .unwrap()
        .loss;
    let base_only = Frozen::from_model(&model).loss(None, &seq).unwrap().loss;

    let dir = tempfile::tempdir().unwrap();
    save_adapter(dir.path(), adapter.params(), &lcfg, "tiny").unwrap();
    let n = attach_adapter(&mut model, dir.path()).unwrap();
    assert_eq!(n, model.spec.n_layers() * 7);

    let mut cache = model.new_cache();
    let logits = model.forward(&tokens, &mut cache, Logits::All).unwrap();
    let v = model.spec.vocab_size;
    let mut sum = 0f64;
    let mut count = 0;
    for t in 7..tokens.len() - 1 {
        let row = &logits[t * v..(t + 1) * v];
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        sum += lse - row[tokens[t + 1] as usize] as f64;
        count += 1;
    }
    let inference = sum / count as f64;
    assert!(
        (inference - engine as f64).abs() < 1e-4 * engine.abs() as f64,
        "inference {inference} vs engine {engine}"
    );
    assert!(
        (engine - base_only).abs() > 1e-3,
        "the adapter must matter: {engine} vs {base_only}"
    );
}
