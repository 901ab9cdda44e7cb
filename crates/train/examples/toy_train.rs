//! Trains the toy bigram model with checkpoints, to try the training machinery by hand:
//!
//! ```text
//! cargo run -p smolt-train --example toy_train -- runs/toy [--resume] [--steps N] [--delay-ms D]
//! ```
//!
//! Kill it (Ctrl-C, or `kill -9`) and run again with `--resume`: the final adapter is
//! bit-identical to an uninterrupted run's.

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut resume = false;
    let mut steps = 40;
    let mut delay_ms = 50;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--resume" => resume = true,
            "--steps" => steps = args.next().unwrap_or_default().parse()?,
            "--delay-ms" => delay_ms = args.next().unwrap_or_default().parse()?,
            _ if dir.is_none() => dir = Some(a),
            _ => anyhow::bail!("usage: toy_train DIR [--resume] [--steps N] [--delay-ms D]"),
        }
    }
    let dir = dir.unwrap_or_else(|| "runs/toy".into());
    smolt_train::toy::run_toy(
        dir.as_ref(),
        resume,
        steps,
        Duration::from_millis(delay_ms),
        false,
    )?;
    Ok(())
}
