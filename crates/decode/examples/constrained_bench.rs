//! What constraints cost and save on the real model: mask time per token (median, p99, max),
//! end-to-end constrained vs unconstrained greedy decode on the same prompts, forward passes
//! saved by feeding forced tokens in one batch, and what the grammar-aware head saves.
//!
//! ```text
//! cargo run --release -p smolt-decode --example constrained_bench [-- N_SCHEMAS [THREADS]]
//! ```
//! Schemas and prompts: this crate's `tests/schemas/` (18) and `tests/prompts.json`, the
//! first prompt of each; model from SMOLT_MODEL (default: the cached Gemma 3 270M).
//! Five runs per schema: constrained with 6 n-gram drafts checked per pass (forced tokens
//! batched, only allowed head rows scored when few are), the same without drafts (as smolt
//! runs by default),
//! the same with the full head too, constrained one token per pass with the full head (the
//! mask's own overhead), and unconstrained greedy for as many tokens.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolt_constrain::{ConstraintEngine, ConstraintSpec};
use smolt_decode::{generate_constrained, greedy, GenerateLimits, ModelLogits};
use smolt_model::{Logits, Model, Precision};

/// Draft tokens per step in the speculative run.
const DRAFTS: usize = 6;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n_schemas: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let path =
        smolt_hub::model_for_tests().expect("the Gemma 3 270M model (SMOLT_MODEL, or fetched)");
    let model = Model::load(&path, Precision::Fast)?;
    println!("{}, {threads} threads", path.display());
    let tok = Arc::new(smolt_tokenizer::Tokenizer::from_gguf(model.gguf())?);

    let t = Instant::now();
    let engine = ConstraintEngine::new(tok.clone())?;
    println!(
        "engine (trie + parser factory): {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let prompts: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prompts.json"))?)?;

    let mut mask_ns: Vec<u64> = Vec::new();
    let (mut t_spec, mut t_con, mut t_full, mut t_one, mut t_free) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let (mut drafted, mut accepted, mut spec_passes, mut spec_diverged) = (0, 0, 0, 0);
    let (mut passes, mut passes_one, mut saved, mut out_tokens) = (0, 0, 0, 0);
    let mut compile_us = Vec::new();
    let mut diverged = 0;
    let mut runs = 0;
    println!(
        "{:<16} {:>5} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "schema",
        "toks",
        "passes",
        "forced",
        "mask p50",
        "draft ms",
        "no-draft",
        "full-head",
        "1-by-1 ms",
        "free ms"
    );
    for (name, texts) in prompts.iter().take(n_schemas) {
        let t = Instant::now();
        let c = engine.compile(&ConstraintSpec::json_schema_file(
            dir.join("schemas").join(format!("{name}.json")),
        )?)?;
        compile_us.push(t.elapsed().as_micros() as u64);
        let prompt = tok.encode(
            &format!("Extract the data as JSON.\n\n{}\n\nJSON: ", texts[0]),
            true,
            false,
        );

        // Constrained with drafts, forced tokens batched, grammar-aware head.
        let mut st = c.start();
        let mut src = ModelLogits::new(&model);
        let limits = GenerateLimits::new(160).with_speculation(DRAFTS);
        let t = Instant::now();
        let spec = generate_constrained(&mut src, &prompt, &mut st, limits, greedy)?;
        let dt_spec = t.elapsed();

        // Without drafts: smolt's default.
        let mut st = c.start();
        let mut src = ModelLogits::new(&model);
        let t = Instant::now();
        let out =
            generate_constrained(&mut src, &prompt, &mut st, GenerateLimits::new(160), greedy)?;
        let dt_con = t.elapsed();

        // The same with every head row scored: what the grammar-aware head saves.
        let mut st = c.start();
        let mut src = ModelLogits::new(&model);
        src.subset_head = false;
        let t = Instant::now();
        let full =
            generate_constrained(&mut src, &prompt, &mut st, GenerateLimits::new(160), greedy)?;
        let dt_full = t.elapsed();
        assert_eq!(
            full.ids, out.ids,
            "{name}: the grammar-aware head changed the output"
        );

        // Constrained, one token per pass, full head: the mask's own cost per token.
        let mut st = c.start();
        let mut src = ModelLogits::new(&model);
        src.subset_head = false;
        let limits = GenerateLimits {
            batch_forced: false,
            ..GenerateLimits::new(160)
        };
        let t = Instant::now();
        let one = generate_constrained(&mut src, &prompt, &mut st, limits, greedy)?;
        let dt_one = t.elapsed();
        // A batched forward is not bit-identical to the same tokens fed one by one (other
        // kernels, other summation order), so near-ties can flip; count them.
        if one.ids != out.ids {
            diverged += 1;
        }

        // Unconstrained greedy, same prompt, same number of tokens.
        let mut cache = model.new_cache();
        let t = Instant::now();
        let mut logits = model.forward(&prompt, &mut cache, Logits::Last)?;
        for _ in 1..out.ids.len() {
            let id = greedy(&logits);
            logits = model.forward(&[id], &mut cache, Logits::Last)?;
        }
        let dt_free = t.elapsed();

        // Drafts are checked in a batched pass, whose arithmetic is not bit-identical to one
        // token at a time: count near-ties that flip.
        if spec.ids != out.ids {
            spec_diverged += 1;
        }
        drafted += spec.stats.drafted;
        accepted += spec.stats.drafts_accepted;
        spec_passes += spec.stats.forward_passes;
        runs += 1;
        let mut m = out.stats.mask_nanos.clone();
        m.extend_from_slice(&one.stats.mask_nanos);
        m.sort_unstable();
        println!(
            "{:<16} {:>5} {:>7} {:>7} {:>6.1}µs {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
            name,
            out.ids.len(),
            spec.stats.forward_passes,
            out.stats.forced_tokens,
            percentile(&m, 0.5) as f64 / 1e3,
            dt_spec.as_secs_f64() * 1e3,
            dt_con.as_secs_f64() * 1e3,
            dt_full.as_secs_f64() * 1e3,
            dt_one.as_secs_f64() * 1e3,
            dt_free.as_secs_f64() * 1e3,
        );
        mask_ns.extend_from_slice(&m);
        t_spec += dt_spec;
        t_con += dt_con;
        t_full += dt_full;
        t_one += dt_one;
        t_free += dt_free;
        passes += out.stats.forward_passes;
        passes_one += one.stats.forward_passes;
        saved += out.stats.passes_saved;
        out_tokens += out.ids.len();
    }
    mask_ns.sort_unstable();
    compile_us.sort_unstable();
    println!();
    println!(
        "mask per token over {} steps: median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        mask_ns.len(),
        percentile(&mask_ns, 0.5) as f64 / 1e3,
        percentile(&mask_ns, 0.99) as f64 / 1e3,
        mask_ns.last().copied().unwrap_or(0) as f64 / 1e3
    );
    println!(
        "compile per schema: median {} µs, max {} µs",
        percentile(&compile_us, 0.5),
        compile_us.last().copied().unwrap_or(0)
    );
    println!(
        "{out_tokens} output tokens: {passes} forward passes batched ({saved} saved by forced \
         tokens, {:.0}% of {} one-token passes); one-by-one runs took {passes_one}",
        100.0 * saved as f64 / (passes + saved).max(1) as f64,
        passes + saved
    );
    println!(
        "greedy outputs that differ batched vs one by one (numerics of batched forward): \
         {diverged} of {runs}"
    );
    println!(
        "n-gram drafts: {accepted} of {drafted} accepted; {spec_passes} forward passes with drafts \
         vs {passes} without; outputs that differ with drafts: {spec_diverged} of {runs}"
    );
    let per = |d: Duration| d.as_secs_f64() * 1e3 / out_tokens.max(1) as f64;
    println!(
        "ms per output token (prefill included): constrained {:.2} (6 drafts), {:.2} \
         (no drafts: smolt's default), {:.2} (no drafts, full head), {:.2} (one by one, full head); \
         unconstrained {:.2}",
        per(t_spec),
        per(t_con),
        per(t_full),
        per(t_one),
        per(t_free),
    );
    println!(
        "constrained / unconstrained time: {:.3}× with 6 drafts, {:.3}× without (smolt's default), \
         {:.3}× without drafts with the full head, {:.3}× one token per pass with the full head \
         (the mask's own overhead)",
        t_spec.as_secs_f64() / t_free.as_secs_f64(),
        t_con.as_secs_f64() / t_free.as_secs_f64(),
        t_full.as_secs_f64() / t_free.as_secs_f64(),
        t_one.as_secs_f64() / t_free.as_secs_f64()
    );
    Ok(())
}
