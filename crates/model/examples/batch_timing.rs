//! Where a served batch's decode step goes: `forward_batch` over N sequences of one token
//! each (the body), then the LM head over their N rows, against one sequence alone.
//! `cargo run --release -p smolt-model --example batch_timing -- [N] [--keep-panels]`
//! (`STEPS=k`: steps per size; `ONLY=1`: the N-row steps alone, for a profiler)

use smolt_model::{BatchSeq, Model, Precision};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // On a pool thread, as the server's engine runs: from outside, every product would pay
    // two thread switches.
    rayon::scope(|_| run()).map_err(|e| e.to_string().into())
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let steps: usize = std::env::var("STEPS").map_or(12, |s| s.parse().unwrap());
    let path =
        smolt_hub::model_for_tests().expect("the Gemma 3 270M model (SMOLT_MODEL, or fetched)");
    let mut model = Model::load(&path, Precision::Fast)?;
    if args.iter().any(|a| a == "--keep-panels") {
        model.keep_panels();
    }
    let prompt: Vec<u32> = (0..40u32).map(|i| 1000 + (i * 7919) % 50000).collect();
    let mut caches: Vec<_> = (0..n).map(|_| model.new_cache()).collect();
    for c in &mut caches {
        model.forward_hidden(&prompt, c)?;
    }
    let d = model.spec.d_model;
    // `ONLY=1`: the N-row steps alone (for a profiler).
    let sizes = if std::env::var_os("ONLY").is_some() {
        vec![n]
    } else {
        vec![1, n]
    };
    for rows in sizes {
        let (mut body, mut head) = (f64::MAX, f64::MAX);
        for s in 0..steps {
            let toks: Vec<[u32; 1]> = (0..rows).map(|i| [2000 + (s * 31 + i) as u32]).collect();
            let mut seqs: Vec<BatchSeq> = caches[..rows]
                .iter_mut()
                .zip(&toks)
                .map(|(cache, t)| BatchSeq {
                    tokens: t,
                    cache,
                    adapter: None,
                })
                .collect();
            let t0 = Instant::now();
            let hidden = model.forward_batch(&mut seqs)?;
            body = body.min(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            let logits = model.lm_head(&hidden);
            head = head.min(t0.elapsed().as_secs_f64());
            assert_eq!(logits.len(), rows * model.spec.vocab_size);
            assert_eq!(hidden.len(), rows * d);
        }
        println!(
            "{rows:>3} rows: body {:.2} ms, head {:.2} ms, step {:.2} ms ({:.1} ms per row)",
            body * 1e3,
            head * 1e3,
            (body + head) * 1e3,
            (body + head) * 1e3 / rows as f64
        );
    }
    Ok(())
}
