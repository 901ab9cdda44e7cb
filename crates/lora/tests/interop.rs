//! Adapters leave and enter smolt unchanged: smolt → GGUF LoRA → smolt and smolt → PEFT → smolt
//! keep every tensor bit for bit (f32) and every logit; a merged GGUF reloads as a plain model
//! that computes what the base plus the attached adapter computes, within the error of the
//! quantizer that stores the merged weights. Files others write (half precision, adapter names
//! in tensor names, rank and alpha patterns) read as PEFT means them; what smolt cannot apply
//! is refused with the reason.

use std::path::Path;

use smolt_gguf::{GgmlType, Gguf};
use smolt_lora::{
    attach_adapter, gguf_lora, merged_gguf, AdapterWeights, LoraAdapter, LoraConfig, MergeTypes,
    Target,
};
use smolt_model::{Logits, Model, Precision};

fn tiny_gemma(precision: Precision) -> Model {
    Model::from_gguf(smolt_model::testing::tiny_gemma3(11), precision).unwrap()
}

fn tiny_family(family: &str) -> Model {
    Model::load(
        format!(
            "{}/../model/tests/fixtures/tiny_{family}.gguf",
            env!("CARGO_MANIFEST_DIR")
        ),
        Precision::F32,
    )
    .unwrap()
}

fn tiny_llama() -> Model {
    tiny_family("llama")
}

/// A trained-looking adapter: random A, non-zero B, on `targets`.
fn adapter(model: &Model, rank: usize, rslora: bool, targets: &[Target]) -> AdapterWeights {
    let cfg = LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        rslora,
        targets: targets.to_vec(),
        ..LoraConfig::default()
    };
    let mut ad: LoraAdapter<f32> = LoraAdapter::new(&model.spec, &cfg, 3).unwrap();
    ad.init_with(|layer, t, is_b, i, j| {
        let v = 0.03 * ((layer * 13 + t.index() * 5 + i * 7 + j * 3) as f64 * 0.29).sin();
        if is_b {
            v
        } else {
            4.0 * v
        }
    });
    AdapterWeights::from_params(ad.params(), &cfg, "tiny").unwrap()
}

const TOKENS: [u32; 12] = [2, 17, 99, 4, 250, 31, 8, 77, 150, 5, 42, 120];

fn logits(model: &Model) -> Vec<f32> {
    model
        .forward(&TOKENS, &mut model.new_cache(), Logits::All)
        .unwrap()
}

fn logits_with(mut model: Model, path: &Path) -> Vec<f32> {
    attach_adapter(&mut model, path).unwrap();
    logits(&model)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_same_tensors(a: &AdapterWeights, b: &AdapterWeights) {
    assert_eq!(a.pairs.len(), b.pairs.len());
    for ((ka, pa), (kb, pb)) in a.pairs.iter().zip(&b.pairs) {
        assert_eq!(ka, kb);
        assert_eq!(pa.rank, pb.rank, "{ka:?}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&pa.a) == bits(&pb.a), "{ka:?}: A differs");
        assert!(bits(&pa.b) == bits(&pb.b), "{ka:?}: B differs");
        assert_eq!(pa.scale as f32, pb.scale as f32, "{ka:?}: scale");
    }
    assert_eq!((a.rank, a.alpha, a.rslora), (b.rank, b.alpha, b.rslora));
}

#[test]
fn gguf_lora_and_peft_round_trips_are_bit_exact() {
    // Every family: llama and SmolLM2 permute q/k rows between GGUF and PEFT, the others do
    // not; Qwen 3 has q/k norms; rsLoRA changes the scale.
    let gemma = || tiny_gemma(Precision::F32);
    let qwen3 = || tiny_family("qwen3");
    let smollm2 = || tiny_family("smollm2");
    for (name, fresh, rslora) in [
        ("gemma", &gemma as &dyn Fn() -> Model, false),
        ("llama", &tiny_llama, true),
        ("qwen3", &qwen3, false),
        ("smollm2", &smollm2, true),
    ] {
        let model = fresh();
        let w = adapter(&model, 4, rslora, &Target::ALL);
        let dir = tempfile::tempdir().unwrap();
        let want = {
            let mut m = fresh();
            w.attach(&mut m).unwrap();
            logits(&m)
        };

        let gguf = dir.path().join("adapter.gguf");
        gguf_lora::write(&w, &gguf, model.spec.arch.name(), GgmlType::F32).unwrap();
        let back = AdapterWeights::read(&gguf, &model.spec).unwrap();
        assert_same_tensors(&w, &back);
        let m = fresh();
        assert_eq!(logits_with(m, &gguf), want, "{name}: GGUF LoRA logits");

        let peft = dir.path().join("peft");
        w.write_peft(&peft, &model.spec).unwrap();
        let back = AdapterWeights::read(&peft, &model.spec).unwrap();
        assert_same_tensors(&w, &back);
        let m = fresh();
        assert_eq!(logits_with(m, &peft), want, "{name}: PEFT logits");

        // And across: GGUF → PEFT → GGUF.
        let again = dir.path().join("again.gguf");
        gguf_lora::write(
            &AdapterWeights::read(&peft, &model.spec).unwrap(),
            &again,
            model.spec.arch.name(),
            GgmlType::F32,
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&gguf).unwrap(),
            "{name}: GGUF → PEFT → GGUF changes the file"
        );
    }
}

#[test]
fn gguf_lora_follows_llama_cpp_layout() {
    let model = tiny_gemma(Precision::F32);
    let w = adapter(&model, 4, true, &[Target::Q, Target::Down]);
    let bytes = gguf_lora::to_bytes(&w, "gemma3", GgmlType::Q8_0).unwrap();
    let g = Gguf::from_bytes(bytes).unwrap();
    assert_eq!(g.get_str("general.type").unwrap(), "adapter");
    assert_eq!(g.get_str("adapter.type").unwrap(), "lora");
    assert_eq!(g.get_str("general.architecture").unwrap(), "gemma3");
    // rsLoRA folded in: llama.cpp's alpha/r must equal alpha/√r.
    let alpha = g.get_f64("adapter.lora.alpha").unwrap();
    assert!((alpha / 4.0 - 8.0 / 2.0).abs() < 1e-6, "alpha {alpha}");
    let (d, ff) = (model.spec.d_model as u64, model.spec.d_ff as u64);
    let a = g.tensor_info("blk.2.attn_q.weight.lora_a").unwrap();
    assert_eq!((a.dims.clone(), a.ty), (vec![d, 4], GgmlType::Q8_0));
    let b = g.tensor_info("blk.2.ffn_down.weight.lora_b").unwrap();
    // Rows of r = 4 are not whole Q8_0 blocks: f16, as llama.cpp's converter does.
    assert_eq!((b.dims.clone(), b.ty), (vec![4, d], GgmlType::F16));
    let a = g.tensor_info("blk.0.ffn_down.weight.lora_a").unwrap();
    assert_eq!(a.dims, vec![ff, 4]);
    assert!(g.tensor_info("blk.0.attn_k.weight.lora_a").is_none());

    // Lossy types read back close to the f32 adapter.
    let back = gguf_lora::from_gguf(&g, "gemma3").unwrap();
    for (k, p) in &w.pairs {
        let q = &back.pairs[k];
        let err = max_abs_diff(&p.a, &q.a);
        let amax = p.a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(err <= amax / 127.0, "{k:?}: A off by {err}");
        assert!(max_abs_diff(&p.b, &q.b) <= 1e-3 * 0.03, "{k:?}: B");
        assert!((p.scale - q.scale).abs() < 1e-6);
    }
}

#[test]
fn peft_folders_from_elsewhere_read_as_peft_means_them() {
    // Half-precision tensors, `.default` adapter names, no `base_model.model.` prefix, a rank
    // and an alpha pattern.
    let model = tiny_gemma(Precision::F32);
    let dir = tempfile::tempdir().unwrap();
    let (d, q) = (model.spec.d_model, model.spec.q_dim());
    let a8: Vec<f32> = (0..8 * d).map(|i| (i as f32 * 0.1).sin() * 0.1).collect();
    let b8: Vec<f32> = (0..q * 8).map(|i| (i as f32 * 0.3).cos() * 0.01).collect();
    let a4: Vec<f32> = (0..4 * d).map(|i| (i as f32 * 0.2).sin() * 0.1).collect();
    let b4: Vec<f32> = (0..q * 4).map(|i| (i as f32 * 0.7).cos() * 0.01).collect();
    let h = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect()
    };
    let (ha8, hb8, ha4, hb4) = (h(&a8), h(&b8), h(&a4), h(&b4));
    fn view(shape: Vec<usize>, data: &[u8]) -> safetensors::tensor::TensorView<'_> {
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape, data).unwrap()
    }
    let tensors = vec![
        (
            "model.layers.0.self_attn.q_proj.lora_A.default.weight".to_string(),
            view(vec![8, d], &ha8),
        ),
        (
            "model.layers.0.self_attn.q_proj.lora_B.default.weight".to_string(),
            view(vec![q, 8], &hb8),
        ),
        (
            "model.layers.1.self_attn.q_proj.lora_A.default.weight".to_string(),
            view(vec![4, d], &ha4),
        ),
        (
            "model.layers.1.self_attn.q_proj.lora_B.default.weight".to_string(),
            view(vec![q, 4], &hb4),
        ),
    ];
    std::fs::write(
        dir.path().join("adapter_model.safetensors"),
        safetensors::serialize(tensors, &None).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
            "target_modules": ["q_proj"], "rank_pattern": {"model.layers.1.self_attn.q_proj": 4},
            "alpha_pattern": {"model.layers.1.self_attn.q_proj": 2}, "use_rslora": false,
            "modules_to_save": null, "bias": "none"}"#,
    )
    .unwrap();
    let w = AdapterWeights::read(dir.path(), &model.spec).unwrap();
    assert_eq!(w.pairs.len(), 2);
    let p0 = &w.pairs[&(0, Target::Q)];
    let p1 = &w.pairs[&(1, Target::Q)];
    assert_eq!((p0.rank, p0.scale), (8, 2.0));
    assert_eq!((p1.rank, p1.scale), (4, 0.5));
    assert!(max_abs_diff(&p1.a, &a4) < 1e-3 * 0.1);

    // The pattern survives PEFT → GGUF (a single alpha: the ratio folded into B) → PEFT.
    let gguf = dir.path().join("a.gguf");
    gguf_lora::write(&w, &gguf, "gemma3", GgmlType::F32).unwrap();
    let want = {
        let mut m = tiny_gemma(Precision::F32);
        w.attach(&mut m).unwrap();
        logits(&m)
    };
    let got = logits_with(tiny_gemma(Precision::F32), &gguf);
    assert!(
        max_abs_diff(&want, &got) < 1e-5,
        "{}",
        max_abs_diff(&want, &got)
    );
    let cfg = w.peft_config();
    assert_eq!(cfg["rank_pattern"]["model.layers.1.self_attn.q_proj"], 4);
    assert_eq!(cfg["alpha_pattern"]["model.layers.1.self_attn.q_proj"], 2.0);
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj"]));
}

#[test]
fn what_cannot_be_applied_is_refused_with_the_reason() {
    let model = tiny_gemma(Precision::F32);
    let dir = tempfile::tempdir().unwrap();
    let err = |p: &Path| {
        format!(
            "{:#}",
            AdapterWeights::read(p, &model.spec)
                .err()
                .unwrap_or_else(|| panic!("{} read", p.display()))
        )
    };

    // A model file given as an adapter.
    let m = dir.path().join("model.gguf");
    std::fs::write(&m, smolt_model::testing::tiny_text_model(1).to_bytes()).unwrap();
    assert!(err(&m).contains("not a LoRA adapter"), "{}", err(&m));

    // An adapter for another architecture.
    let w = adapter(&model, 4, false, &[Target::V]);
    let l = dir.path().join("llama.gguf");
    gguf_lora::write(&w, &l, "llama", GgmlType::F32).unwrap();
    assert!(err(&l).contains("`llama` model"), "{}", err(&l));

    // A file that is not a GGUF at all, and one that does not exist.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf").unwrap();
    assert!(err(&junk).contains("GGUF"), "{}", err(&junk));
    assert!(err(&dir.path().join("nope")).contains("does not exist"));
    let st = dir.path().join("adapter_model.safetensors");
    std::fs::write(&st, b"{}").unwrap();
    assert!(err(&st).contains("adapter_config.json"), "{}", err(&st));

    // A DoRA folder.
    let dora = dir.path().join("dora");
    w.write_peft(&dora, &model.spec).unwrap();
    let cfg = dora.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("\"use_dora\": false", "\"use_dora\": true"),
    )
    .unwrap();
    assert!(err(&dora).contains("DoRA"), "{}", err(&dora));

    // An adapter whose shapes do not fit: `down`'s factors where `v` belongs; a layer the
    // model lacks.
    let mut bad = adapter(&model, 4, false, &[Target::V, Target::Down]);
    let down = bad.pairs[&(0, Target::Down)].clone();
    bad.pairs.insert((0, Target::V), down.clone());
    let g = dir.path().join("bad.gguf");
    gguf_lora::write(&bad, &g, "gemma3", GgmlType::F32).unwrap();
    assert!(err(&g).contains("does not fit"), "{}", err(&g));
    assert!(err(&g).contains("layer 0 `v`"), "{}", err(&g));
    let mut deep = adapter(&model, 4, false, &[Target::V]);
    deep.pairs.insert((50, Target::Down), down);
    gguf_lora::write(&deep, &g, "gemma3", GgmlType::F32).unwrap();
    assert!(err(&g).contains("layer 50"), "{}", err(&g));
}

#[test]
fn merged_gguf_is_the_base_plus_the_adapter() {
    let model = tiny_gemma(Precision::F32);
    let w = adapter(&model, 4, false, &Target::ALL);
    let unmerged = {
        let mut m = tiny_gemma(Precision::F32);
        w.attach(&mut m).unwrap();
        logits(&m)
    };
    let base = logits(&model);
    let n_layers = model.spec.n_layers();
    let merge = |types| {
        let mut calls = 0;
        let (g, report) =
            merged_gguf(model.gguf(), &w, n_layers, types, "test", |_, _| calls += 1).unwrap();
        assert_eq!(calls, model.gguf().tensors().len());
        assert_eq!(report.merged, 7 * n_layers);
        Gguf::from_bytes(g.to_bytes()).unwrap()
    };

    // In f32 the merge is exact up to summation order.
    let f32_file = merge(MergeTypes::All(GgmlType::F32));
    assert_eq!(f32_file.get_u64("general.file_type").unwrap(), 0);
    assert_eq!(f32_file.get_str("smolt.merged.adapter").unwrap(), "test");
    let merged = logits(&Model::from_gguf(f32_file, Precision::F32).unwrap());
    let exact = max_abs_diff(&merged, &unmerged);
    assert!(exact < 1e-4, "f32 merge off by {exact}");

    // Same types: the update goes onto each weight's own grid (Q4_0 … Q8_0 here), rounded
    // stochastically, so the merged model is off by rounding noise: about what quantizing
    // the base's own f32 weights to those types costs.
    let same = merge(MergeTypes::Same);
    for (a, b) in same.tensors().iter().zip(model.gguf().tensors()) {
        assert_eq!((&a.name, a.ty), (&b.name, b.ty));
    }
    let merged = logits(&Model::from_gguf(same, Precision::F32).unwrap());
    let err = max_abs_diff(&merged, &unmerged);
    let s = smolt_model::testing::TinySpec::default();
    let mut f32_tensors = smolt_model::testing::tiny_tensors(&s, 11);
    f32_tensors.iter_mut().for_each(|t| t.ty = GgmlType::F32);
    let float_base = smolt_model::testing::tiny_writer(&s, &f32_tensors, "gemma3").to_bytes();
    let float_base =
        Model::from_gguf(Gguf::from_bytes(float_base).unwrap(), Precision::F32).unwrap();
    let quant_err = max_abs_diff(&logits(&float_base), &base);
    eprintln!("merged (same types) vs unmerged: {err:.3}; base quantized vs f32: {quant_err:.3}");
    assert!(
        err < 1.5 * quant_err,
        "requantized merge off by {err}, quantizing the base costs {quant_err}"
    );

    // An adapter tensor that names no weight of the base is an error, not a silent skip.
    let mut extra = w.clone();
    let p = extra.pairs[&(0, Target::Q)].clone();
    extra.pairs.insert((99, Target::Q), p);
    let e = merged_gguf(
        model.gguf(),
        &extra,
        n_layers,
        MergeTypes::Same,
        "x",
        |_, _| {},
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("pairs"), "{e}");
}
