//! Prefill and decode throughput, measured like llama-bench's pp512 / tg128:
//! `cargo run --release -p smolt-decode --example speed -- [threads=2] [fast|f32]`
//! (model from SMOLT_MODEL, else the default model, fetched and cached on first use).

use smolt_decode::{generate, GenerateOptions};
use smolt_model::{Logits, Model, Precision};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).map_or(Ok(2), |s| s.parse())?;
    let precision = match args.get(2).map(String::as_str) {
        Some("f32") => Precision::F32,
        _ => Precision::Fast,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let path =
        smolt_hub::model_for_tests().expect("the Gemma 3 270M model (SMOLT_MODEL, or fetched)");
    let t = Instant::now();
    let model = Model::load(&path, precision)?;
    println!(
        "{precision:?}, {threads} threads: load {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Arbitrary but valid ids; BOS first, as a real prompt would be.
    let prompt: Vec<u32> = std::iter::once(2)
        .chain((1..512u32).map(|i| 1000 + (i * 7919) % 50_000))
        .collect();
    // Warm-up (page in the mmap, spin up the pool), then the best of three runs.
    model.forward(&prompt[..64], &mut model.new_cache(), Logits::Last)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut cache = model.new_cache();
        let t = Instant::now();
        model.forward(&prompt, &mut cache, Logits::Last)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "prefill 512 tokens: {:.3} s = {:.0} tokens/s",
        best,
        512.0 / best
    );

    // Decode 128 tokens after a short prompt (tg128 starts from an empty context).
    let opts = GenerateOptions {
        max_new_tokens: 128,
        stop_at_end_of_generation: false,
        ..Default::default()
    };
    let mut first = None;
    let t = Instant::now();
    let out = generate(&model, &[2], &opts, |_| {
        first.get_or_insert_with(Instant::now);
        true
    })?;
    let steps = out.ids.len() - 1;
    let dt = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!(
        "decode {} tokens: {:.3} s = {:.1} tokens/s (first token {:.1} ms)",
        steps,
        dt,
        steps as f64 / dt,
        (t.elapsed().as_secs_f64() - dt) * 1e3
    );
    Ok(())
}
