//! Time and peak memory of LoRA training steps on the real model.
//!
//! ```text
//! cargo run --release -p smolt-lora --example step_bench -- [seq] [answer] [steps] [recompute: 0|1] [fast|decoded|bf16|bf16-resident|f32]
//! ```
//! Defaults: a 512-token sequence with loss on the last 128 tokens, 3 steps, fast mode, no
//! recompute. Peak RSS is the process's VmHWM (mmap'd model pages included), read after the steps.
//! `bf16` is the AMX base `smolt train` uses where the CPU has it (`decoded` otherwise), with
//! the lean head; `bf16-resident` keeps the head's bf16 packings resident instead.
//! `SMOLT_PROFILE=1` adds the wall time per phase of each step (smolt_lora::prof).

use smolt_lora::{BaseMatmul, Frozen, HeadCache, LoraAdapter, LoraConfig, Sequence, StepOptions};
use smolt_model::{Model, Precision};
use std::time::Instant;

fn vm(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds used by this process so far (user + system), from /proc/self/stat: on a
/// shared machine, `cpu / threads` estimates the wall time the step would take on idle cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the `)`.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn main() {
    // As `smolt train` runs: glibc keeps freed buffers for reuse, and the step runs on a pool
    // thread, so each product's split does not hand the work across threads and back.
    smolt_model::keep_freed_memory();
    rayon::scope(|_| run());
}

fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (seq_len, answer, steps) = (arg(0, 512), arg(1, 128), arg(2, 3));
    let recompute = args.get(3).is_some_and(|a| a == "1" || a == "recompute");
    let mode = args.get(4).map(String::as_str).unwrap_or("fast");
    let precision = if mode == "f32" {
        Precision::F32
    } else {
        Precision::Fast
    };
    let matmul = match mode {
        "decoded" => BaseMatmul::Decoded,
        "bf16" | "bf16-resident" => BaseMatmul::Bf16,
        _ => BaseMatmul::Quantized,
    };
    let path =
        smolt_hub::model_for_tests().expect("the Gemma 3 270M model (SMOLT_MODEL, or fetched)");
    let model = Model::load(&path, precision).expect("load the model (set SMOLT_MODEL)");
    let t0 = Instant::now();
    let head_cache = if mode == "bf16-resident" {
        HeadCache::Resident
    } else {
        HeadCache::Lean
    };
    let base = Frozen::from_model_with_head(&model, matmul, head_cache);
    println!("base ready in {:.2} s", t0.elapsed().as_secs_f64());
    let mut adapter = LoraAdapter::<f32>::new(&model.spec, &LoraConfig::default(), 1).unwrap();
    // B = 0 would make half the adapter's backward trivially zero: give it PEFT-sized noise.
    for p in adapter.params_mut().iter_mut().skip(1).step_by(2) {
        p.data
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 1e-3 * ((i as f32) * 0.37).sin());
    }
    // Token ids spread over the vocabulary (what the text is does not change the cost).
    let mut x = 12345u64;
    let tokens: Vec<u32> = (0..seq_len)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i == 0 {
                2
            } else {
                100 + ((x >> 33) % 200_000) as u32
            }
        })
        .collect();
    let labels: Vec<i64> = tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if i + answer >= seq_len {
                t as i64
            } else {
                -100
            }
        })
        .collect();
    let seq = Sequence {
        tokens: &tokens,
        labels: &labels,
    };
    println!(
        "{precision:?} ({matmul:?} forward, {head_cache:?} bf16 head), {} threads, seq {seq_len}, loss on the last {answer}, recompute {recompute}, rank {}, {} trainable",
        rayon::current_num_threads(),
        adapter.config.rank,
        adapter.n_parameters()
    );
    println!("after load: VmRSS {} VmHWM {}", vm("VmRSS:"), vm("VmHWM:"));
    let mut times = Vec::new();
    for s in 0..steps {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let out = base
            .step(
                &mut adapter,
                &seq,
                &StepOptions {
                    recompute,
                    dropout_seed: s as u64,
                    normalizer: None,
                },
            )
            .unwrap();
        let dt = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - c0;
        if s == 0 {
            // FNV-1a over every gradient's bits: to compare builds and modes exactly.
            let digest = adapter
                .params()
                .iter()
                .flat_map(|p| p.grad.iter())
                .fold(0xcbf2_9ce4_8422_2325u64, |h, g| {
                    (h ^ g.to_bits() as u64).wrapping_mul(0x100_0000_01b3)
                });
            println!("step 0: loss {:?}, gradient digest {digest:016x}", out.loss);
        }
        adapter.zero_grad();
        println!(
            "step {s}: loss {:.4} over {} tokens, {dt:.2} s wall ({:.0} tok/s), {cpu:.2} CPU-s ({:.0} tok/s if the threads had their cores)",
            out.loss,
            out.n_targets,
            seq_len as f64 / dt,
            seq_len as f64 / (cpu / rayon::current_num_threads() as f64)
        );
        times.push(dt);
        if smolt_lora::prof::enabled() {
            let secs = smolt_lora::prof::seconds();
            smolt_lora::prof::reset();
            let named: f64 = secs[..7].iter().sum();
            for (name, s) in smolt_lora::prof::PHASES.iter().zip(secs) {
                println!("  {name:<30} {s:7.3} s  {:5.1}%", 100.0 * s / dt);
            }
            println!(
                "  {:<30} {:7.3} s  {:5.1}%",
                "other (norms, rope, glue…)",
                dt - named,
                100.0 * (dt - named) / dt
            );
        }
    }
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "best {best:.2} s/step = {:.0} tok/s; peak RSS (VmHWM) {}",
        seq_len as f64 / best,
        vm("VmHWM:")
    );
}
