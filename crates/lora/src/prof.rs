//! Opt-in wall-clock breakdown of a training step (`SMOLT_PROFILE=1`): where the step's time
//! goes, by phase, summed over calls. Off, a span costs one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The phases a step is split into. Spans of different phases never nest, except `Decode`,
/// which is also counted inside the phase that asked for the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    BaseForward,
    LoraForward,
    BaseBackward,
    LoraBackward,
    AttentionForward,
    AttentionBackward,
    Head,
    Decode,
}

/// Names, in [`Phase`] order.
pub const PHASES: [&str; 8] = [
    "base fwd (x·Wᵀ)",
    "lora fwd",
    "base bwd (dY·W)",
    "lora bwd",
    "attention fwd",
    "attention bwd",
    "head + CE",
    "  (decode, inside the above)",
];

static NS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Whether `SMOLT_PROFILE=1` (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SMOLT_PROFILE").is_ok_and(|v| v.trim() == "1"))
}

/// Times its own life into `phase` when profiling is on.
pub struct Span(Phase, Option<Instant>);

/// Starts timing `phase` until the returned guard drops.
pub fn span(phase: Phase) -> Span {
    Span(phase, enabled().then(Instant::now))
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(t0) = self.1 {
            NS[self.0 as usize].fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// Seconds per phase since the last [`reset`], in [`PHASES`] order.
pub fn seconds() -> [f64; 8] {
    std::array::from_fn(|i| NS[i].load(Ordering::Relaxed) as f64 * 1e-9)
}

/// Zeroes the counters.
pub fn reset() {
    NS.iter().for_each(|a| a.store(0, Ordering::Relaxed));
}
