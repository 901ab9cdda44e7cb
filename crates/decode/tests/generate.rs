//! The generation loop on a tiny random Gemma 3 (see `smolt_model::testing`).

use smolt_decode::{argmax, generate, generate_in, GenerateOptions, SamplingParams, StopReason};
use smolt_model::testing::tiny_gemma3;
use smolt_model::{Logits, Model, Precision};

fn model() -> Model {
    Model::from_gguf(tiny_gemma3(5), Precision::Fast).unwrap()
}

fn fixed(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        stop_at_end_of_generation: false,
        ..Default::default()
    }
}

const PROMPT: [u32; 5] = [2, 40, 41, 42, 43];

#[test]
fn greedy_generation_equals_argmax_of_full_forwards_without_cache() {
    let m = model();
    let out = generate(&m, &PROMPT, &fixed(20), |_| true).unwrap();
    assert_eq!(out.stop, StopReason::MaxTokens);
    assert_eq!(out.ids.len(), 20);
    // Recompute each step from scratch: a fresh cache and the whole sequence in one pass.
    let mut seq = PROMPT.to_vec();
    for &id in &out.ids {
        let logits = m.forward(&seq, &mut m.new_cache(), Logits::Last).unwrap();
        assert_eq!(argmax(&logits), id, "after {} tokens", seq.len());
        seq.push(id);
    }
}

#[test]
fn the_callback_streams_every_token_and_can_stop() {
    let m = model();
    let mut seen = Vec::new();
    let out = generate(&m, &PROMPT, &fixed(20), |id| {
        seen.push(id);
        seen.len() < 7
    })
    .unwrap();
    assert_eq!(out.stop, StopReason::Callback);
    assert_eq!(out.ids, seen);
    assert_eq!(out.ids.len(), 7);
}

#[test]
fn a_stop_token_ends_generation_and_is_not_returned() {
    let m = model();
    let free = generate(&m, &PROMPT, &fixed(20), |_| true).unwrap().ids;
    let stop = free[5];
    let first = free.iter().position(|&t| t == stop).unwrap();
    let opts = GenerateOptions {
        stop_tokens: vec![stop],
        ..fixed(20)
    };
    let mut streamed = 0;
    let out = generate(&m, &PROMPT, &opts, |_| {
        streamed += 1;
        true
    })
    .unwrap();
    assert_eq!(out.stop, StopReason::StopToken(stop));
    assert_eq!(out.ids, free[..first]);
    assert_eq!(streamed, first);
}

#[test]
fn end_of_generation_tokens_stop_sampling() {
    // At a high temperature the tiny model samples nearly uniformly over 300 ids, so <eos> (1)
    // or <end_of_turn> (106) turns up within a few hundred tokens for some seed.
    let m = model();
    assert_eq!(m.special.end_of_generation, vec![1, 106]);
    let mut stopped = 0;
    for seed in 0..12 {
        let opts = GenerateOptions {
            max_new_tokens: 100,
            sampling: SamplingParams {
                temperature: 50.0,
                seed,
                ..Default::default()
            },
            ..Default::default()
        };
        let out = generate(&m, &[2], &opts, |_| true).unwrap();
        assert!(
            !out.ids.iter().any(|t| [1, 106].contains(t)),
            "seed {seed}: an EOG token was returned"
        );
        match out.stop {
            StopReason::StopToken(id) => {
                assert!([1, 106].contains(&id));
                stopped += 1;
            }
            other => assert_eq!(other, StopReason::MaxTokens),
        }
    }
    assert!(stopped > 0, "no seed hit an end-of-generation token");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let m = model();
    let opts = |seed| GenerateOptions {
        sampling: SamplingParams {
            temperature: 3.0,
            top_k: 40,
            top_p: 0.95,
            seed,
        },
        ..fixed(24)
    };
    let a = generate(&m, &PROMPT, &opts(1), |_| true).unwrap();
    assert_eq!(a, generate(&m, &PROMPT, &opts(1), |_| true).unwrap());
    assert_ne!(
        a.ids,
        generate(&m, &PROMPT, &opts(2), |_| true).unwrap().ids
    );
}

#[test]
fn continuing_from_a_cache_equals_generating_from_scratch() {
    let m = model();
    let whole = generate(&m, &PROMPT, &fixed(10), |_| true).unwrap();
    let mut cache = m.new_cache();
    m.forward(&PROMPT[..3], &mut cache, Logits::None).unwrap();
    let cont = generate_in(&m, &mut cache, &PROMPT[3..], &fixed(10), |_| true).unwrap();
    assert_eq!(whole, cont);
    // The last sampled token was never fed.
    assert_eq!(cache.len(), PROMPT.len() + 9);
}

#[test]
fn the_context_length_bounds_generation() {
    let m = model(); // context 128
    let out = generate(&m, &[2; 120], &fixed(50), |_| true).unwrap();
    assert_eq!(out.stop, StopReason::ContextFull);
    assert_eq!(out.ids.len(), 9);
}
