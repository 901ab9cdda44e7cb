//! A tiny random Gemma 3 written as a real GGUF, so the tests run the same binding and kernels
//! as the real model: 7 layers (layer 5 is global, the rest slide over a window of 4), 2 query
//! heads sharing 1 KV head of 16, d = 32, MLP 64, vocabulary 200; weights in Q8_0, Q5_0 and F32.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smolt_gguf::{GgmlType, Gguf, GgufWriter, Value};
use smolt_model::{Model, Precision};

pub const D: usize = 32;
pub const F: usize = 64;
pub const HD: usize = 16;
pub const VOCAB: usize = 200;
pub const LAYERS: usize = 7;
pub const WINDOW: usize = 4;

fn quantized(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; smolt_quant::row_bytes(ty, values.len()).unwrap()];
    smolt_quant::quantize_row(ty, values, &mut out).unwrap();
    out
}

/// The tiny Gemma 3.
pub fn tiny_gguf(seed: u64) -> Vec<u8> {
    tiny_gguf_of("gemma3", seed)
}

/// Llama 3.1-style RoPE frequency divisors for a head of 16 (`rope_freqs.weight`), all
/// different so that a divisor applied to the wrong pair shows.
pub const ROPE_FREQS: [f32; HD / 2] = [1.0, 1.25, 1.5, 2.0, 2.69, 4.0, 6.5, 8.0];

/// The same shapes as family `a`: `gemma3` (above); `qwen2` (SwiGLU, q/k/v biases, no q/k
/// norms or post-norms, full attention everywhere, an untied Q8_0 head); `llama` (SwiGLU, no
/// biases, interleaved-pair RoPE with [`ROPE_FREQS`], an untied head); `qwen3` (SwiGLU, q/k
/// norms, no biases, tied head).
pub fn tiny_gguf_of(a: &str, seed: u64) -> Vec<u8> {
    let gemma = a == "gemma3";
    let qk_norm = gemma || a == "qwen3";
    let untied_head = a == "qwen2" || a == "llama";
    let qkv_bias = a == "qwen2";
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(a.into()));
    for (k, v) in [
        ("embedding_length", D),
        ("block_count", LAYERS),
        ("feed_forward_length", F),
        ("attention.head_count", 2),
        ("attention.head_count_kv", 1),
        ("attention.key_length", HD),
        ("attention.value_length", HD),
        ("context_length", 128),
        ("vocab_size", VOCAB),
    ] {
        w.set(format!("{a}.{k}"), Value::U32(v as u32));
    }
    if gemma {
        w.set(
            format!("{a}.attention.sliding_window"),
            Value::U32(WINDOW as u32),
        );
        w.set(format!("{a}.rope.freq_base_swa"), Value::F32(10.0));
    }
    w.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-6),
    );
    // Small RoPE bases so that the rotation matters over a dozen positions.
    w.set(format!("{a}.rope.freq_base"), Value::F32(1000.0));
    if a == "llama" {
        w.set(format!("{a}.rope.dimension_count"), Value::U32(HD as u32));
    }

    let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
    };
    let add = |w: &mut GgufWriter, name: &str, dims: &[usize], ty: GgmlType, v: &[f32]| {
        let dims: Vec<u64> = dims.iter().map(|&x| x as u64).collect();
        let data = if ty == GgmlType::F32 {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            quantized(ty, v)
        };
        w.add_tensor(name, &dims, ty, data).unwrap();
    };
    let embd = uniform(VOCAB * D, 0.5);
    add(
        &mut w,
        "token_embd.weight",
        &[D, VOCAB],
        GgmlType::Q8_0,
        &embd,
    );
    let norm = |u: Vec<f32>| -> Vec<f32> { u.iter().map(|x| 1.0 + x).collect() };
    let on = norm(uniform(D, 0.3));
    add(&mut w, "output_norm.weight", &[D], GgmlType::F32, &on);
    if a == "llama" {
        add(
            &mut w,
            "rope_freqs.weight",
            &[HD / 2],
            GgmlType::F32,
            &ROPE_FREQS,
        );
    }
    if untied_head {
        let head = uniform(VOCAB * D, 0.5);
        add(&mut w, "output.weight", &[D, VOCAB], GgmlType::Q8_0, &head);
    }
    use GgmlType::*;
    for il in 0..LAYERS {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        // (name, in, out, type)
        for (s, inp, out, ty) in [
            ("attn_q", D, 2 * HD, Q5_0),
            ("attn_k", D, HD, Q8_0),
            ("attn_v", D, HD, F32),
            ("attn_output", 2 * HD, D, Q5_0),
            ("ffn_gate", D, F, Q8_0),
            ("ffn_up", D, F, Q5_0),
            ("ffn_down", F, D, Q8_0),
        ] {
            let v = uniform(inp * out, 1.2 / (inp as f32).sqrt());
            add(&mut w, &n(s), &[inp, out], ty, &v);
        }
        let norms: &[(&str, usize)] = if gemma {
            &[
                ("attn_norm", D),
                ("attn_q_norm", HD),
                ("attn_k_norm", HD),
                ("post_attention_norm", D),
                ("ffn_norm", D),
                ("post_ffw_norm", D),
            ]
        } else if qk_norm {
            &[
                ("attn_norm", D),
                ("attn_q_norm", HD),
                ("attn_k_norm", HD),
                ("ffn_norm", D),
            ]
        } else {
            &[("attn_norm", D), ("ffn_norm", D)]
        };
        for &(s, len) in norms {
            let v = norm(uniform(len, 0.3));
            add(&mut w, &n(s), &[len], F32, &v);
        }
        if qkv_bias {
            for (s, len) in [("attn_q", 2 * HD), ("attn_k", HD), ("attn_v", HD)] {
                let v = uniform(len, 0.5);
                add(&mut w, &format!("blk.{il}.{s}.bias"), &[len], F32, &v);
            }
        }
    }
    w.to_bytes()
}

pub fn tiny_model(precision: Precision) -> Model {
    tiny_model_of("gemma3", precision)
}

pub fn tiny_model_of(arch: &str, precision: Precision) -> Model {
    Model::from_gguf(Gguf::from_bytes(tiny_gguf_of(arch, 7)).unwrap(), precision).unwrap()
}

/// 12 tokens, a prompt of 5 and loss on the rest (labels = ids there).
pub fn tiny_sequence() -> (Vec<u32>, Vec<i64>) {
    let tokens: Vec<u32> = vec![2, 17, 199, 45, 3, 88, 120, 7, 7, 150, 61, 9];
    let labels = tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| if i < 5 { -100 } else { t as i64 })
        .collect();
    (tokens, labels)
}

/// Cross-entropy (natural log, HF shift) from full logits `(T, vocab)`, in f64.
pub fn ce_from_logits(logits: &[f32], vocab: usize, labels: &[i64]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for t in 0..labels.len() - 1 {
        let y = labels[t + 1];
        if y < 0 {
            continue;
        }
        let row = &logits[t * vocab..][..vocab];
        let mx = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let lse = mx + row.iter().map(|&z| (z as f64 - mx).exp()).sum::<f64>().ln();
        sum += lse - row[y as usize] as f64;
        n += 1;
    }
    sum / n as f64
}
