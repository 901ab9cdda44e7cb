//! A tiny random Gemma 3 written with `GgufWriter`, checked against a straightforward f64
//! implementation of the architecture written here from the math (not from the crate's code).
//!
//! The model is `smolt_model::testing`'s default: d = 64, 2 query heads × 32 sharing 1 KV head,
//! FFN 256, 7 layers (layer 5 global, the rest sliding), vocab 300, window 8, so 20-token
//! sequences exercise the window; its projections mix F32, Q8_0, Q5_0, Q4_0 and Q4_K.

use rand::{Rng, SeedableRng};
use smolt_gguf::{Gguf, GgufWriter};
use smolt_model::testing::{tiny_tensors, tiny_writer, TinySpec, TinyTensor};
use smolt_model::{KvCache, Logits, Model, ModelError, Precision};

const D: usize = 64;
const NH: usize = 2;
const NKV: usize = 1;
const HD: usize = 32;
const FF: usize = 256;
const LAYERS: usize = 7;
const VOCAB: usize = 300;
const WINDOW: usize = 8;
const EPS: f64 = 1e-6;
const BASE_GLOBAL: f64 = 1e6;
const BASE_LOCAL: f64 = 1e4;

fn random_tensors(seed: u64) -> Vec<TinyTensor> {
    tiny_tensors(&TinySpec::default(), seed)
}

fn writer(tensors: &[TinyTensor], arch: &str) -> GgufWriter {
    tiny_writer(&TinySpec::default(), tensors, arch)
}

fn open(w: &GgufWriter) -> Gguf {
    Gguf::from_bytes(w.to_bytes()).unwrap()
}

fn tiny_model(precision: Precision) -> Model {
    Model::from_gguf(open(&writer(&random_tensors(7), "gemma3")), precision).unwrap()
}

fn tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..VOCAB as u32)).collect()
}

// ---------------------------------------------------------------------------------------------
// The f64 reference: Gemma 3 as the HF modeling code describes it, on the file's dequantized
// weights (the norm weights already hold 1 + w).

struct RefWeights {
    get: std::collections::HashMap<String, Vec<f64>>,
}

impl RefWeights {
    fn from_file(g: &Gguf) -> RefWeights {
        let get = g
            .tensors()
            .iter()
            .map(|info| {
                let mut v = vec![0f32; info.n_elements() as usize];
                smolt_quant::dequantize_row(info.ty, g.tensor_data(info), &mut v).unwrap();
                (info.name.clone(), v.into_iter().map(f64::from).collect())
            })
            .collect();
        RefWeights { get }
    }
    fn w(&self, name: &str) -> &[f64] {
        &self.get[name]
    }
}

fn rms_norm(x: &[f64], w: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + EPS).sqrt();
    x.iter().zip(w).map(|(a, b)| a * r * b).collect()
}

/// y = W x with W stored (out, in).
fn matvec(w: &[f64], x: &[f64]) -> Vec<f64> {
    w.chunks(x.len())
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// HF `apply_rotary_pos_emb`: x·cos + rotate_half(x)·sin, frequencies base^(-2i/hd).
fn rope(x: &mut [f64], pos: usize, base: f64) {
    let half = x.len() / 2;
    let orig = x.to_vec();
    for j in 0..x.len() {
        let i = j % half;
        let ang = pos as f64 * base.powf(-2.0 * i as f64 / x.len() as f64);
        let rot = if j < half {
            -orig[j + half]
        } else {
            orig[j - half]
        };
        x[j] = orig[j] * ang.cos() + rot * ang.sin();
    }
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// Logits (T, vocab) for every position. `window` overrides the sliding window (to show that
/// it matters).
fn reference_logits(w: &RefWeights, toks: &[u32], window: usize) -> Vec<Vec<f64>> {
    let t = toks.len();
    let emb = w.w("token_embd.weight");
    let mut xs: Vec<Vec<f64>> = toks
        .iter()
        .map(|&id| {
            emb[id as usize * D..][..D]
                .iter()
                .map(|v| v * (D as f64).sqrt())
                .collect()
        })
        .collect();
    for il in 0..LAYERS {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        let global = (il + 1) % 6 == 0;
        let base = if global { BASE_GLOBAL } else { BASE_LOCAL };
        let (mut qs, mut ks, mut vs) = (vec![], vec![], vec![]);
        for (p, x) in xs.iter().enumerate() {
            let a = rms_norm(x, w.w(&n("attn_norm")));
            let mut q = matvec(w.w(&n("attn_q")), &a);
            let mut k = matvec(w.w(&n("attn_k")), &a);
            let v = matvec(w.w(&n("attn_v")), &a);
            for h in q.chunks_mut(HD) {
                let normed = rms_norm(h, w.w(&n("attn_q_norm")));
                h.copy_from_slice(&normed);
                rope(h, p, base);
            }
            for h in k.chunks_mut(HD) {
                let normed = rms_norm(h, w.w(&n("attn_k_norm")));
                h.copy_from_slice(&normed);
                rope(h, p, base);
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for p in 0..t {
            let mut att = vec![0.0; NH * HD];
            for h in 0..NH {
                let g = h / (NH / NKV);
                let qh = &qs[p][h * HD..][..HD];
                let visible: Vec<usize> = (0..=p).filter(|&j| global || p - j < window).collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        qh.iter()
                            .zip(&ks[j][g * HD..][..HD])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (HD as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
                for (s, &j) in scores.iter().zip(&visible) {
                    let pj = (s - mx).exp() / z;
                    for i in 0..HD {
                        att[h * HD + i] += pj * vs[j][g * HD + i];
                    }
                }
            }
            let o = rms_norm(
                &matvec(w.w(&n("attn_output")), &att),
                w.w(&n("post_attention_norm")),
            );
            let x = &mut xs[p];
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let f = rms_norm(x, w.w(&n("ffn_norm")));
            let gate = matvec(w.w(&n("ffn_gate")), &f);
            let up = matvec(w.w(&n("ffn_up")), &f);
            let hid: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| gelu_tanh(*g) * u)
                .collect();
            let y = rms_norm(&matvec(w.w(&n("ffn_down")), &hid), w.w(&n("post_ffw_norm")));
            x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
    }
    xs.iter()
        .map(|x| matvec(emb, &rms_norm(x, w.w("output_norm.weight"))))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn f32_logits_match_f64_reference_at_every_position() {
    // The reference below hard-codes the shapes; make sure they are the tiny model's.
    let s = TinySpec::default();
    let shapes = (
        s.d_model,
        s.n_heads,
        s.n_kv_heads,
        s.head_dim,
        s.d_ff,
        s.n_layers,
        s.vocab,
        s.window,
    );
    assert_eq!(shapes, (D, NH, NKV, HD, FF, LAYERS, VOCAB, WINDOW));
    assert_eq!(
        (s.rms_eps as f64, s.rope_base_global as f64),
        (EPS as f32 as f64, BASE_GLOBAL)
    );
    let w = writer(&random_tensors(7), "gemma3");
    let g = open(&w);
    let reference = reference_logits(&RefWeights::from_file(&g), &tokens(20, 1), WINDOW);
    let model = Model::from_gguf(g, Precision::F32).unwrap();
    assert_eq!(
        model
            .spec
            .layers
            .iter()
            .filter(|l| l.window.is_none())
            .count(),
        1
    );
    let mut cache = model.new_cache();
    let logits = model
        .forward(&tokens(20, 1), &mut cache, Logits::All)
        .unwrap();
    let flat: Vec<f64> = reference.concat();
    let scale = flat.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&logits, &flat);
    eprintln!("f32 vs f64 reference: max diff {diff:.2e}, logit scale {scale:.2}");
    assert!(
        scale > 1.0,
        "logits too small to be a meaningful check: {scale}"
    );
    assert!(
        diff < 2e-5 * scale,
        "max |f32 − f64 reference| = {diff} (logit scale {scale})"
    );
}

#[test]
fn the_window_changes_late_positions() {
    let g = open(&writer(&random_tensors(7), "gemma3"));
    let w = RefWeights::from_file(&g);
    let toks = tokens(20, 1);
    let windowed = reference_logits(&w, &toks, WINDOW);
    let unwindowed = reference_logits(&w, &toks, usize::MAX);
    // Positions < WINDOW see the same keys either way; later ones must differ.
    assert_eq!(windowed[WINDOW - 1], unwindowed[WINDOW - 1]);
    let late: f64 = windowed[19]
        .iter()
        .zip(&unwindowed[19])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(late > 1e-3, "window had no effect ({late})");
}

#[test]
fn kv_cached_decoding_equals_one_full_forward() {
    for precision in [Precision::F32, Precision::Fast] {
        let model = tiny_model(precision);
        let toks = tokens(20, 2);
        let full = model
            .forward(&toks, &mut model.new_cache(), Logits::All)
            .unwrap();
        // Prefill 5, then 1, 1, a chunk of 6, then one at a time.
        let mut cache = model.new_cache();
        let mut got = Vec::new();
        let mut at = 0;
        for n in [5, 1, 1, 6, 1, 1, 1, 1, 1, 1, 1] {
            got.extend(
                model
                    .forward(&toks[at..at + n], &mut cache, Logits::All)
                    .unwrap(),
            );
            at += n;
        }
        assert_eq!(at, 20);
        assert_eq!(cache.len(), 20);
        let diff = got
            .iter()
            .zip(&full)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{precision:?}: incremental vs full max diff {diff}"
        );

        // Logits::Last is the last row of Logits::All; truncating the cache rewinds exactly.
        cache.truncate(13);
        let last = model
            .forward(&toks[13..], &mut cache, Logits::Last)
            .unwrap();
        let diff = last
            .iter()
            .zip(&full[19 * VOCAB..])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{precision:?}: after truncate, last-row diff {diff}"
        );
    }
}

#[test]
fn fast_is_close_to_f32() {
    let toks = tokens(20, 3);
    let f32_logits = tiny_model(Precision::F32)
        .forward(
            &toks,
            &mut KvCache::new(&tiny_model(Precision::F32).spec),
            Logits::All,
        )
        .unwrap();
    let fast = tiny_model(Precision::Fast);
    let fast_logits = fast
        .forward(&toks, &mut fast.new_cache(), Logits::All)
        .unwrap();
    let scale = f32_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = fast_logits
        .iter()
        .zip(&f32_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("Fast vs F32: max diff {diff:.3e}, logit scale {scale:.2}");
    // Q8 activations carry ~0.5% relative error per product; through 7 layers that stays a few %.
    assert!(
        diff < 0.05 * scale,
        "Fast vs F32 max diff {diff} (scale {scale})"
    );
    assert!(
        diff > 0.0,
        "Fast should not be bit-identical to F32: is it quantizing at all?"
    );
}

#[test]
fn special_tokens_come_from_the_vocabulary() {
    let m = tiny_model(Precision::Fast);
    assert_eq!(m.special.eos, Some(1));
    assert_eq!(m.special.bos, Some(2));
    assert_eq!(m.special.end_of_generation, vec![1, 106]);
}

fn load_err(tensors: &[TinyTensor], arch: &str) -> String {
    match Model::from_gguf(open(&writer(tensors, arch)), Precision::Fast) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let mut ts = random_tensors(7);
    let t = ts
        .iter_mut()
        .find(|t| t.name == "blk.3.attn_k.weight")
        .unwrap();
    t.dims = vec![D as u64 / 2, 2 * (NKV * HD) as u64];
    let msg = load_err(&ts, "gemma3");
    assert!(
        msg.contains("blk.3.attn_k.weight") && msg.contains("[32, 64]") && msg.contains("[64, 32]"),
        "{msg}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let mut ts = random_tensors(7);
    ts.retain(|t| t.name != "blk.4.ffn_up.weight");
    let msg = load_err(&ts, "gemma3");
    assert!(
        msg.contains("blk.4.ffn_up.weight") && msg.contains("not in the file"),
        "{msg}"
    );
}

#[test]
fn an_unknown_architecture_is_refused() {
    let msg = load_err(&random_tensors(7), "mamba");
    assert!(
        msg.contains("mamba") && msg.contains("not supported"),
        "{msg}"
    );
}

#[test]
fn out_of_range_tokens_and_a_full_context_are_errors() {
    let m = tiny_model(Precision::Fast);
    let mut cache = m.new_cache();
    assert!(matches!(
        m.forward(&[VOCAB as u32], &mut cache, Logits::Last),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        m.forward(&vec![5; 129], &mut cache, Logits::None),
        Err(ModelError::ContextFull { .. })
    ));
    assert!(
        cache.is_empty(),
        "a refused call must leave the cache untouched"
    );
    // Nothing in, nothing out.
    assert!(m.forward(&[], &mut cache, Logits::Last).unwrap().is_empty());
    assert!(m.forward(&[], &mut cache, Logits::All).unwrap().is_empty());
    assert!(cache.is_empty());
}

/// A batched step over sequences of different lengths, positions and adapters gives what each
/// sequence's own pass gives: exactly enough in f32, and within the 8-bit activations'
/// rounding in the fast mode (the rows meet the kernels' tiles in other groupings).
#[test]
fn a_batched_step_matches_each_sequence_alone() {
    use smolt_model::{BatchSeq, LoraDelta, Proj};
    for precision in [Precision::F32, Precision::Fast] {
        let base = Model::from_gguf(smolt_model::testing::tiny_gemma3(3), precision).unwrap();
        let mut tuned = Model::from_gguf(smolt_model::testing::tiny_gemma3(3), precision).unwrap();
        for (il, b) in tuned.blocks.iter_mut().enumerate() {
            for p in [Proj::Q, Proj::V, Proj::Down] {
                let lin = b.proj_mut(p);
                let (inp, out, r) = (lin.in_features, lin.out_features, 4);
                let wave = |n: usize, k: f32| -> Vec<f32> {
                    (0..n)
                        .map(|i| 0.05 * (k * i as f32 + il as f32).sin())
                        .collect()
                };
                lin.set_lora(Some(LoraDelta::new(
                    wave(r * inp, 0.37),
                    wave(out * r, 0.23),
                    r,
                    2.0,
                )))
                .unwrap();
            }
        }
        let prompts: [&[u32]; 3] = [&[2, 10, 11, 12, 13], &[2, 40], &[2, 7, 8, 9, 200, 201, 202]];
        let adapters = [None, Some(&tuned), Some(&tuned)];
        // Each alone: prompt, then one more token.
        let mut want = Vec::new();
        let mut caches = Vec::new();
        for (p, a) in prompts.iter().zip(adapters) {
            let m = a.unwrap_or(&base);
            let mut c = m.new_cache();
            m.forward_hidden(p, &mut c).unwrap();
            let h = m.forward_hidden(&[5], &mut c).unwrap();
            want.push(h);
            caches.push(c);
        }
        // Batched: all prompts in one step, then the three decode tokens in one step.
        let mut bc: Vec<_> = prompts.iter().map(|_| base.new_cache()).collect();
        {
            let mut seqs: Vec<BatchSeq> = bc
                .iter_mut()
                .zip(prompts.iter().zip(adapters))
                .map(|(cache, (p, adapter))| BatchSeq {
                    tokens: p,
                    cache,
                    adapter,
                })
                .collect();
            base.forward_batch(&mut seqs).unwrap();
        }
        let mut seqs: Vec<BatchSeq> = bc
            .iter_mut()
            .zip(adapters)
            .map(|(cache, adapter)| BatchSeq {
                tokens: &[5],
                cache,
                adapter,
            })
            .collect();
        let got = base.forward_batch(&mut seqs).unwrap();
        let d = base.spec.d_model;
        let tol = if precision == Precision::F32 {
            1e-5
        } else {
            0.05
        };
        let mut worst = 0f32;
        for (i, w) in want.iter().enumerate() {
            let g = &got[i * d..(i + 1) * d];
            let scale = w.iter().fold(0f32, |a, b| a.max(b.abs()));
            let diff = g.iter().zip(w).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            worst = worst.max(diff / scale);
        }
        eprintln!("{precision:?}: worst batched vs alone {worst:.2e} of the row's max");
        assert!(worst < tol, "{precision:?}: {worst}");
        // The adapter matters: the tuned sequences differ from the base.
        let mut c = base.new_cache();
        base.forward_hidden(prompts[1], &mut c).unwrap();
        let plain = base.forward_hidden(&[5], &mut c).unwrap();
        let moved = plain
            .iter()
            .zip(&got[d..2 * d])
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(moved > 1e-3, "the adapter changed nothing: {moved}");
        for (c, b) in caches.iter().zip(&bc) {
            assert_eq!(c.len(), b.len());
        }
    }
}
