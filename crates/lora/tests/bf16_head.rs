//! The lean bf16 LM head (each vocabulary chunk decoded from the file and packed at each call)
//! against the resident one (every chunk packed once at load): the same numbers bit for bit,
//! on a random tiny Gemma 3 whose Q8_0 token table spans several vocabulary chunks. The real
//! model's check is in real_model.rs.

use smolt_lora::{
    linear_cross_entropy, BaseMatmul, Frozen, HeadCache, LoraAdapter, LoraConfig, Sequence,
    StepOptions, CHUNK,
};
use smolt_model::testing::{tiny_tensors, tiny_writer, TinySpec};
use smolt_model::{Model, Precision};

/// Two whole chunks and a partial one whose length is not a multiple of 32 (the packings'
/// padding), d = 64, a single layer.
fn multi_chunk_model() -> Model {
    let s = TinySpec {
        vocab: 2 * CHUNK + 333,
        n_layers: 1,
        ..TinySpec::default()
    };
    let bytes = tiny_writer(&s, &tiny_tensors(&s, 5), "gemma3").to_bytes();
    let gguf = smolt_gguf::Gguf::from_bytes(bytes).expect("tiny GGUF parses");
    Model::from_gguf(gguf, Precision::Fast).expect("tiny model loads")
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn lean_head_equals_the_resident_one_bit_for_bit() {
    let model = multi_chunk_model();
    let lean = Frozen::from_model_with_head(&model, BaseMatmul::Bf16, HeadCache::Lean);
    let resident = Frozen::from_model_with_head(&model, BaseMatmul::Bf16, HeadCache::Resident);
    let (vocab, d) = lean.head().shape();
    assert_eq!(vocab, 2 * CHUNK + 333);
    // Row counts that leave partial 16- and 32-row blocks; targets in every chunk, the last
    // row of the vocabulary included.
    for n in [1, 37, 70] {
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ n as u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let h: Vec<f32> = (0..n * d).map(|_| (6.0 * next() - 3.0) as f32).collect();
        let mut targets: Vec<u32> = (0..n).map(|_| (next() * vocab as f64) as u32).collect();
        targets[0] = vocab as u32 - 1;
        let run = |f: &Frozen<f32>| {
            let mut dh: Vec<f32> = (0..n * d).map(|i| i as f32 * 1e-3).collect();
            let loss = linear_cross_entropy(f.head(), &h, &targets, 0.7, Some(&mut dh));
            let loss_only = linear_cross_entropy(f.head(), &h, &targets, 0.7, None);
            (loss, loss_only, dh)
        };
        let (l0, o0, d0) = run(&resident);
        let (l1, o1, d1) = run(&lean);
        assert!(l0.is_finite() && l0 > 0.0, "loss {l0}");
        assert_eq!(l1.to_bits(), l0.to_bits(), "n {n}: loss {l1} vs {l0}");
        assert_eq!(o1.to_bits(), o0.to_bits(), "n {n}: loss without gradient");
        assert_eq!(
            o0.to_bits(),
            l0.to_bits(),
            "n {n}: the gradient changed the loss"
        );
        assert!(bits(&d1) == bits(&d0), "n {n}: dh differs");
    }
}

/// A whole training step through either head: the same loss and adapter gradients.
#[test]
fn steps_with_either_head_are_bit_identical() {
    let model = multi_chunk_model();
    let vocab = model.spec.vocab_size as u32;
    let tokens: Vec<u32> = (0..40u32).map(|i| 2 + i * 613 % (vocab - 2)).collect();
    let labels: Vec<i64> = tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| if i >= 25 { t as i64 } else { -100 })
        .collect();
    let seq = Sequence {
        tokens: &tokens,
        labels: &labels,
    };
    let run = |cache| {
        let base = Frozen::from_model_with_head(&model, BaseMatmul::Bf16, cache);
        let mut ad = LoraAdapter::<f32>::new(&model.spec, &LoraConfig::default(), 3).unwrap();
        // B = 0 at init: give it values so every gradient is non-trivial.
        for p in ad.params_mut().iter_mut().skip(1).step_by(2) {
            p.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 1e-2 * ((i as f32) * 0.37).sin());
        }
        let out = base.step(&mut ad, &seq, &StepOptions::default()).unwrap();
        let grads: Vec<u32> = ad.params().iter().flat_map(|p| bits(&p.grad)).collect();
        (out.loss.to_bits(), grads)
    };
    let (l0, g0) = run(HeadCache::Resident);
    let (l1, g1) = run(HeadCache::Lean);
    assert_eq!(l1, l0, "loss");
    assert!(g1 == g0, "adapter gradients differ");
    assert!(g0.iter().any(|&g| g != 0), "all gradients zero");
}
