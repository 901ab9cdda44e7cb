//! Where the time goes: load, prefill (body only), LM head, one decode step, per precision.
//! `cargo run -p smolt-model --example timing -- [f32|fast] [tokens]`

use smolt_model::{Logits, Model, Precision};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // On a pool thread, as the commands run: from outside, every product would pay two
    // thread switches.
    rayon::scope(|_| run()).map_err(|e| e.to_string().into())
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let precision = if args.get(1).map(String::as_str) == Some("f32") {
        Precision::F32
    } else {
        Precision::Fast
    };
    let n: usize = args.get(2).map_or(512, |s| s.parse().unwrap());
    let path =
        smolt_hub::model_for_tests().expect("the Gemma 3 270M model (SMOLT_MODEL, or fetched)");
    let t0 = Instant::now();
    let model = Model::load(&path, precision)?;
    eprintln!(
        "{precision:?}: load {:.2}s (threads {})",
        t0.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let toks: Vec<u32> = (0..n as u32).map(|i| 1000 + (i * 7919) % 50000).collect();
    let mut cache = model.new_cache();
    let t0 = Instant::now();
    let hidden = model.forward_hidden(&toks, &mut cache)?;
    let body = t0.elapsed().as_secs_f64();
    eprintln!("body {n} tokens: {body:.3}s = {:.0} tok/s", n as f64 / body);
    let t0 = Instant::now();
    let rows = 64.min(n);
    let _ = model.lm_head(&hidden[..rows * model.spec.d_model]);
    eprintln!("head {rows} rows: {:.3}s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let steps: u32 = std::env::var("STEPS").map_or(16, |s| s.parse().unwrap());
    for i in 0..steps {
        let _ = model.forward(&[1000 + i], &mut cache, Logits::Last)?;
    }
    eprintln!(
        "decode: {:.1} ms/token",
        t0.elapsed().as_secs_f64() * 1000.0 / steps as f64
    );
    // The two halves of a decode step: the body for one token, the head for one row.
    let d = model.spec.d_model;
    let t0 = Instant::now();
    for i in 0..steps {
        let _ = model.forward_hidden(&[2000 + i], &mut cache)?;
    }
    let body1 = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
    let t0 = Instant::now();
    for _ in 0..steps {
        let _ = model.lm_head(&hidden[..d]);
    }
    let head1 = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
    let head_bytes =
        model.head().out_features as f64 * model.head().in_features as f64 * 34.0 / 32.0;
    eprintln!(
        "decode body {body1:.1} ms/token, head {head1:.1} ms/row ({:.1} GB/s if Q8_0)",
        head_bytes / head1 / 1e6
    );
    Ok(())
}
