//! `smolt train` without the CLI, for trying the real engine:
//!
//! ```text
//! cargo run --release -p smolt-train --example train_gemma -- OUT_DIR [--config c.toml] [--resume] [key=value ...]
//! ```
//!
//! e.g. `... -- runs/sroie model=~/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf
//! data=shared/data/sroie/train.jsonl max_steps=20`.

fn main() -> anyhow::Result<()> {
    let mut out = None;
    let mut config = None;
    let mut resume = false;
    let mut overrides = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--resume" {
            resume = true;
        } else if a == "--config" {
            config = args.next();
        } else if let Some((k, v)) = a.split_once('=') {
            overrides.push((k.to_string(), v.to_string()));
        } else if out.is_none() {
            out = Some(a);
        } else {
            anyhow::bail!("usage: train_gemma OUT_DIR [--config FILE] [--resume] [key=value ...]");
        }
    }
    let out = std::path::PathBuf::from(out.unwrap_or_else(|| "runs/gemma".into()));
    let cfg = smolt_train::gemma::run_config(
        &out,
        config.as_deref().map(std::path::Path::new),
        &overrides,
        resume,
    )?;
    smolt_train::gemma::train(cfg, &out, resume)?;
    Ok(())
}
