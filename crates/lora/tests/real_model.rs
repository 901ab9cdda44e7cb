//! One LoRA training step on the real Gemma 3 270M against PEFT (fixtures/lora_grad_gemma3.json:
//! HF transformers + PEFT in float32 on the GGUF's dequantized weights, closed-form sin/cos
//! adapter init, r = 8, alpha = 16, loss on 24 answer tokens).
//!
//! Needs the model file: `SMOLT_MODEL`, else the default model fetched and cached on first use
//! as the binary does (`smolt_hub::model_for_tests`). Without it these tests FAIL, never skip.

use serde_json::Value;
use smolt_lora::{
    BaseMatmul, Frozen, HeadCache, LoraAdapter, LoraConfig, Sequence, StepOptions, Target,
};
use smolt_model::{Model, Precision};
use std::path::PathBuf;

fn model_path() -> PathBuf {
    smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("the real-model tests need Gemma 3 270M Q4_K_M: {e}"))
}

fn fixture() -> Value {
    let text = include_str!("fixtures/lora_grad_gemma3.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

/// The same step with an accurate loss (float64 model and cross-entropy): the shipped fixture's
/// float32 log-softmax over 262,144 logits is biased (see this file's `about.correction`).
fn fixture_f64ce() -> Value {
    let text = include_str!("fixtures/lora_grad_gemma3_f64ce.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

fn sequence(fx: &Value) -> (Vec<u32>, Vec<i64>) {
    let ids: Vec<u32> = fx["about"]["input"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    // "-100 at positions 0..39, labels[t] = ids[t] at positions 40..63"
    let labels = ids
        .iter()
        .enumerate()
        .map(|(t, &id)| if t < 40 { -100 } else { id as i64 })
        .collect();
    (ids, labels)
}

/// The fixture's closed-form init: A[i][j] = 0.01·sin(0.37i + 0.11j + 0.05·layer + 0.7·m + 1),
/// B[i][j] = 0.01·cos(0.23i + 0.13j + 0.05·layer + 0.7·m + 2), in f64 then rounded to f32.
fn fixture_adapter(model: &Model) -> LoraAdapter<f32> {
    let cfg = LoraConfig {
        rank: 8,
        alpha: 16.0,
        rslora: false,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
    };
    let mut ad = LoraAdapter::<f32>::zeros(&model.spec, &cfg).unwrap();
    ad.init_with(|layer, t, is_b, i, j| {
        let (l, m, i, j) = (layer as f64, t.index() as f64, i as f64, j as f64);
        if is_b {
            0.01 * (0.23 * i + 0.13 * j + 0.05 * l + 0.7 * m + 2.0).cos()
        } else {
            0.01 * (0.37 * i + 0.11 * j + 0.05 * l + 0.7 * m + 1.0).sin()
        }
    });
    ad
}

/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` → the fixture's key
/// `layers.0.self_attn.q_proj.lora_A`.
fn fixture_key(name: &str) -> &str {
    name.trim_start_matches("base_model.model.model.")
        .trim_end_matches(".weight")
}

struct Diffs {
    loss_lora: f64,
    loss_base: f64,
    worst_fro: f64,
    worst_element: f64,
    grad_norm_all: f64,
}

fn compare(precision: Precision, matmul: BaseMatmul) -> Diffs {
    compare_with(&fixture(), precision, matmul)
}

fn compare_with(fx: &Value, precision: Precision, matmul: BaseMatmul) -> Diffs {
    compare_on(&model_path(), fx, precision, matmul)
}

fn compare_on(
    path: &std::path::Path,
    fx: &Value,
    precision: Precision,
    matmul: BaseMatmul,
) -> Diffs {
    let res = &fx["results"];
    let model = Model::load(path, precision).unwrap();
    let base = Frozen::from_model_with(&model, matmul);
    let (ids, labels) = sequence(fx);
    let seq = Sequence {
        tokens: &ids,
        labels: &labels,
    };
    let mut ad = fixture_adapter(&model);
    assert_eq!(
        ad.params().len(),
        res["n_lora_tensors"].as_u64().unwrap() as usize
    );
    assert_eq!(
        ad.n_parameters(),
        res["n_trainable_params"].as_u64().unwrap() as usize
    );
    let t0 = std::time::Instant::now();
    let out = base.step(&mut ad, &seq, &StepOptions::default()).unwrap();
    let dt = t0.elapsed();
    let loss_base = base.loss(None, &seq).unwrap().loss;
    assert_eq!(out.n_targets, 24);

    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    let mut worst_fro = 0f64;
    let mut worst_element = 0f64;
    let mut all = 0f64;
    for p in ad.params() {
        let want = &res["grads"][fixture_key(&p.name)];
        assert_eq!(
            want["shape"][0].as_u64().unwrap() as usize,
            p.shape[0],
            "{}",
            p.name
        );
        assert_eq!(
            want["shape"][1].as_u64().unwrap() as usize,
            p.shape[1],
            "{}",
            p.name
        );
        let fro = p
            .grad
            .iter()
            .map(|&g| (g as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        all += fro * fro;
        worst_fro = worst_fro.max(rel(fro, want["fro"].as_f64().unwrap()));
        let cols = p.shape[1];
        for (key, r, c) in [
            ("g00", 0, 0),
            ("g12", 1, 2),
            ("g_last_last", p.shape[0] - 1, cols - 1),
        ] {
            let w = want[key].as_f64().unwrap();
            let g = p.grad[r * cols + c] as f64;
            // "1e-3 relative or 1e-6 absolute, whichever is larger", as a ratio to that bound.
            worst_element = worst_element.max((g - w).abs() / (1e-3 * w.abs()).max(1e-6));
        }
    }
    let d = Diffs {
        loss_lora: out.loss,
        loss_base,
        worst_fro,
        worst_element,
        grad_norm_all: all.sqrt(),
    };
    eprintln!(
        "{precision:?} ({matmul:?} forward): step {:.2} s; loss {} (PEFT {}, rel {:.1e}); base loss {} (rel {:.1e}); \
         grad norm {} (PEFT {}, rel {:.1e}); worst per-tensor |grad| rel diff {:.1e}; \
         worst element diff / tolerance {:.2}",
        dt.as_secs_f64(),
        d.loss_lora,
        res["loss_lora"],
        rel(d.loss_lora, res["loss_lora"].as_f64().unwrap()),
        d.loss_base,
        rel(d.loss_base, res["loss_base"].as_f64().unwrap()),
        d.grad_norm_all,
        res["grad_norm_all"],
        rel(d.grad_norm_all, res["grad_norm_all"].as_f64().unwrap()),
        d.worst_fro,
        d.worst_element,
    );
    d
}

/// The tolerances against an accurate reference: loss, base loss and the whole gradient's
/// norm within 1e-4 relative, every per-tensor norm within 1e-4, single elements within theirs.
fn assert_within_reference_tolerances(d: &Diffs, res: &Value) {
    let rel =
        |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
    assert!(rel(d.loss_lora, "loss_lora") < 1e-4, "loss {}", d.loss_lora);
    assert!(
        rel(d.loss_base, "loss_base") < 1e-4,
        "base loss {}",
        d.loss_base
    );
    assert!(rel(d.grad_norm_all, "grad_norm_all") < 1e-4);
    assert!(
        d.worst_fro < 1e-4,
        "a per-tensor gradient norm is off by {:.2e} relative",
        d.worst_fro
    );
    assert!(
        d.worst_element <= 1.0,
        "a gradient element is {:.2}× its tolerance off",
        d.worst_element
    );
}

#[test]
fn f32_reference_matches_peft() {
    let res = fixture()["results"].clone();
    let d = compare(Precision::F32, BaseMatmul::Quantized);
    let rel =
        |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
    assert!(
        rel(d.loss_lora, "loss_lora") < 1e-4,
        "loss {} vs PEFT {}",
        d.loss_lora,
        res["loss_lora"]
    );
    assert!(
        rel(d.loss_base, "loss_base") < 1e-4,
        "base loss {} vs HF {}",
        d.loss_base,
        res["loss_base"]
    );
    // The fixture asks 1e-4 here; we land at 3.6e-4 on a few small-norm tensors. The
    // reference is at fault: its float32 log-softmax over 262,144 logits under-sums (loss
    // 2.2e-5 low, per-row gradient scaling), which moves HF's own gradient norms by 4.1e-4.
    // Against the accurate reference smolt is within 1e-4: `f32_reference_matches_accurate_peft`.
    assert!(
        d.worst_fro < 1e-3,
        "a per-tensor gradient norm is off by {:.2e} relative",
        d.worst_fro
    );
    assert!(
        d.worst_element <= 1.0,
        "a gradient element is {:.2}× its tolerance off",
        d.worst_element
    );
}

/// Against the same PEFT step with an accurate (float64) loss, every tolerance the issue asks
/// holds: loss and per-tensor gradient norms within 1e-4 relative.
#[test]
fn f32_reference_matches_accurate_peft() {
    let fx = fixture_f64ce();
    let res = &fx["results"];
    let d = compare_with(&fx, Precision::F32, BaseMatmul::Quantized);
    assert_within_reference_tolerances(&d, res);
}

/// The quantized model with decoded-tile forward products: the reference arithmetic without the
/// dequantized copy of the model, so the reference tolerances apply.
#[test]
fn decoded_forward_matches_peft_like_the_reference() {
    let res = fixture()["results"].clone();
    let d = compare(Precision::Fast, BaseMatmul::Decoded);
    let rel =
        |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
    assert!(
        rel(d.loss_lora, "loss_lora") < 1e-4,
        "loss {} vs PEFT {}",
        d.loss_lora,
        res["loss_lora"]
    );
    assert!(
        rel(d.loss_base, "loss_base") < 1e-4,
        "base loss {} vs HF {}",
        d.loss_base,
        res["loss_base"]
    );
    assert!(rel(d.grad_norm_all, "grad_norm_all") < 1e-4);
    assert!(
        d.worst_fro < 1e-3,
        "a per-tensor gradient norm is off by {:.2e} relative",
        d.worst_fro
    );
    assert!(
        d.worst_element <= 1.0,
        "a gradient element is {:.2}× its tolerance off",
        d.worst_element
    );
}

/// The fast mode (quantized weights, Q8 activations in the forward) is not the reference
/// arithmetic: it is bounded loosely here and its distance reported.
#[test]
fn fast_mode_lands_near_peft() {
    let res = fixture()["results"].clone();
    let d = compare(Precision::Fast, BaseMatmul::Quantized);
    let rel =
        |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
    assert!(
        rel(d.loss_lora, "loss_lora") < 0.03,
        "fast loss {} vs PEFT {}",
        d.loss_lora,
        res["loss_lora"]
    );
    assert!(
        rel(d.grad_norm_all, "grad_norm_all") < 0.1,
        "fast grad norm {} vs PEFT {}",
        d.grad_norm_all,
        res["grad_norm_all"]
    );
}

/// The bf16 base's lean head (each of the 128 vocabulary chunks of the 262,144 × 640 Q8_0
/// table decoded and packed during the call) against the resident one (packed at load): the
/// fixture's step gives the same loss and gradients, bit for bit.
#[test]
fn lean_bf16_head_equals_the_resident_one() {
    let fx = fixture();
    let model = Model::load(model_path(), Precision::Fast).unwrap();
    let (ids, labels) = sequence(&fx);
    let seq = Sequence {
        tokens: &ids,
        labels: &labels,
    };
    let run = |cache| {
        let base = Frozen::from_model_with_head(&model, BaseMatmul::Bf16, cache);
        let mut ad = fixture_adapter(&model);
        let out = base.step(&mut ad, &seq, &StepOptions::default()).unwrap();
        let grads: Vec<u32> = ad
            .params()
            .iter()
            .flat_map(|p| p.grad.iter().map(|g| g.to_bits()))
            .collect();
        (out.loss, grads)
    };
    let (l_res, g_res) = run(HeadCache::Resident);
    let (l_lean, g_lean) = run(HeadCache::Lean);
    assert_eq!(
        l_lean.to_bits(),
        l_res.to_bits(),
        "loss {l_lean} vs {l_res}"
    );
    assert!(g_lean == g_res, "the adapter gradients differ");
}

/// The bf16 base (AMX where present): not the reference arithmetic, so bounded here by what
/// `smolt train` may accept for its default, with the measured distances printed. Its loss
/// is within ~1e-3 of the f32 reference as an rms (six SROIE batches of 512 tokens: 9.6e-4
/// with the linear layers in bf16, 1.0e-3 with attention's products too), single examples up to
/// 2e-3 either way (1.8e-3 in both); this fixture's 24 targets land at 5e-4 and 1.9e-3.
/// With the head's logits in int8 (AVX-512 VNNI without AMX): 3.4e-3 here; on eight SROIE
/// receipt steps (loss on the answers) 1.9e-3 relative rms, worst 3.3e-3, against 1.6e-3 and
/// 3.1e-3 with bf16 logits on the same steps. Hence 5e-3.
/// The gradient norm: 1.05e-2 from PEFT's with the f32 fallback's summation order (AVX2, AMD
/// Zen 3; bf16 operands, f32 sums, the same arithmetic as the hardware's), under 1e-2 on AMX
/// and AVX-512 BF16; Fast's 8-bit activations land at 1.9e-2 and the f32 engine at 1.3e-5.
/// Hence 2e-2: a bug (a missed term, a wrong scale) moves it by tenths.
#[test]
fn bf16_base_lands_near_peft() {
    let res = fixture()["results"].clone();
    let d = compare(Precision::Fast, BaseMatmul::Bf16);
    let rel =
        |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
    assert!(
        rel(d.loss_lora, "loss_lora") < 5e-3,
        "bf16 loss {} vs PEFT {}",
        d.loss_lora,
        res["loss_lora"]
    );
    assert!(
        rel(d.grad_norm_all, "grad_norm_all") < 2e-2,
        "bf16 grad norm {} vs PEFT {}",
        d.grad_norm_all,
        res["grad_norm_all"]
    );
    // Measured with the linear layers in bf16: 2.7e-2 on AMX, 4.5e-2 on AVX-512 BF16 (other
    // summation order); with attention's products too: 5.4e-2 on AVX-512 BF16. Small-norm
    // tensors move most; the f32 path lands at 4e-4; a bug would be O(1).
    assert!(
        d.worst_fro < 0.1,
        "a per-tensor gradient norm is off by {:.2e} relative",
        d.worst_fro
    );
}

/// The same step in f64 (every weight converted, ~3 GB): how much of the f32 engine's distance
/// to PEFT is its own rounding. Slow and big, so run on demand with `--ignored`.
#[test]
#[ignore]
fn f64_engine_vs_peft() {
    let fx = fixture();
    let res = &fx["results"];
    let model = Model::load(model_path(), Precision::F32).unwrap();
    let base = Frozen::<f64>::dense_from_model(&model);
    let mut ad = LoraAdapter::<f64>::zeros(&model.spec, &fixture_adapter(&model).config).unwrap();
    for (p, q) in ad
        .params_mut()
        .iter_mut()
        .zip(fixture_adapter(&model).params())
    {
        p.data = q.data.iter().map(|&x| x as f64).collect();
    }
    drop(model);
    let (ids, labels) = sequence(&fx);
    let seq = Sequence {
        tokens: &ids,
        labels: &labels,
    };
    let out = base.step(&mut ad, &seq, &StepOptions::default()).unwrap();
    let loss_base = base.loss(None, &seq).unwrap().loss;
    let mut worst = 0f64;
    for p in ad.params() {
        let fro = p.grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        let want = res["grads"][fixture_key(&p.name)]["fro"].as_f64().unwrap();
        worst = worst.max((fro - want).abs() / want);
    }
    eprintln!(
        "f64 engine: loss {} (PEFT f64 {}), base {} (HF f64 {}), worst per-tensor |grad| rel diff {worst:.1e}",
        out.loss, res["float64_check"]["loss_lora_f64"], loss_base, res["float64_check"]["loss_base_f64"]
    );
}

/// Qwen 2.5 0.5B (SwiGLU, q/k/v biases, untied head) through the same block and backward:
/// the PEFT step of `lora_grad_qwen2_f64ce.json` (float64 model and loss; HF's own float32 loss
/// over 151,936 logits is 1.6e-4 off its float64 one in places, see `lora_grad_qwen2.json`).
fn qwen_fixture(name: &str) -> Value {
    let text = match name {
        "f32" => include_str!("fixtures/lora_grad_qwen2.json"),
        _ => include_str!("fixtures/lora_grad_qwen2_f64ce.json"),
    };
    serde_json::from_str(text).expect("fixture is JSON")
}

fn qwen_path() -> PathBuf {
    smolt_hub::qwen_for_tests()
        .unwrap_or_else(|e| panic!("the Qwen tests need Qwen2.5 0.5B Q4_K_M: {e}"))
}

#[test]
fn qwen2_f32_reference_matches_accurate_peft() {
    let fx = qwen_fixture("f64ce");
    let res = &fx["results"];
    // The fixture's labels are the rule `sequence` applies: -100 on the 40 prompt tokens.
    let (_, labels) = sequence(&fx);
    let want: Vec<i64> = fx["about"]["input"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, want);
    let d = compare_on(&qwen_path(), &fx, Precision::F32, BaseMatmul::Quantized);
    assert_within_reference_tolerances(&d, res);
}

/// HF's own float32 step: the loss within 1e-4; gradient norms within 1e-3, since the
/// reference itself is 1.6e-4 off its float64 run.
#[test]
fn qwen2_f32_reference_matches_peft() {
    let fx = qwen_fixture("f32");
    let res = &fx["results"];
    let d = compare_on(&qwen_path(), &fx, Precision::F32, BaseMatmul::Quantized);
    let rel =
        |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
    assert!(rel(d.loss_lora, "loss_lora") < 1e-4, "loss {}", d.loss_lora);
    assert!(
        d.worst_fro < 1e-3,
        "worst per-tensor norm {:.2e}",
        d.worst_fro
    );
    assert!(d.worst_element <= 1.0, "element {:.2}", d.worst_element);
}

/// The training default (bf16 base where the CPU has it, else the fast quantized forward) on
/// Qwen: not the reference arithmetic; bounded loosely, distances printed.
#[test]
fn qwen2_fast_and_bf16_land_near_peft() {
    let fx = qwen_fixture("f64ce");
    let res = &fx["results"];
    for matmul in [BaseMatmul::Quantized, BaseMatmul::Bf16] {
        let d = compare_on(&qwen_path(), &fx, Precision::Fast, matmul);
        let rel =
            |a: f64, k: &str| (a - res[k].as_f64().unwrap()).abs() / res[k].as_f64().unwrap().abs();
        assert!(
            rel(d.loss_lora, "loss_lora") < 0.03,
            "{matmul:?}: loss {}",
            d.loss_lora
        );
        assert!(
            rel(d.grad_norm_all, "grad_norm_all") < 0.1,
            "{matmul:?}: grad norm {}",
            d.grad_norm_all
        );
    }
}
