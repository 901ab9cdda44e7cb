//! Learning rate per step: linear warmup, then cosine decay or constant.

use crate::config::{Schedule, TrainConfig};

/// The learning-rate schedule of a run, fixed once the total step count is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: u64,
    pub total: u64,
    pub kind: Schedule,
    pub min_ratio: f64,
}

impl LrSchedule {
    pub fn new(cfg: &TrainConfig, total_steps: u64) -> Self {
        LrSchedule {
            peak: cfg.lr,
            warmup: cfg.warmup_steps,
            total: total_steps,
            kind: cfg.schedule,
            min_ratio: cfg.min_lr_ratio,
        }
    }

    /// Learning rate for optimiser step `step` (0-based). Warmup starts at peak/warmup rather
    /// than 0 (as Hugging Face's does) so the first step is not wasted; the cosine part is
    /// Hugging Face's `get_cosine_schedule_with_warmup`, whose floor would be reached one step
    /// after the last, so no step runs at lr = 0 either.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        match self.kind {
            Schedule::Constant => self.peak,
            Schedule::Cosine => {
                let decay_steps = self.total.saturating_sub(self.warmup);
                let progress = if decay_steps == 0 {
                    0.0
                } else {
                    ((step - self.warmup) as f64 / decay_steps as f64).min(1.0)
                };
                let floor = self.peak * self.min_ratio;
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: Schedule, warmup: u64, total: u64, min_ratio: f64) -> LrSchedule {
        LrSchedule {
            peak: 2e-4,
            warmup,
            total,
            kind,
            min_ratio,
        }
    }

    #[test]
    fn warmup_is_linear() {
        let s = sched(Schedule::Cosine, 10, 100, 0.0);
        for t in 0..10 {
            assert_eq!(s.lr(t), 2e-4 * (t + 1) as f64 / 10.0);
        }
        assert_eq!(s.lr(9), 2e-4);
    }

    #[test]
    fn cosine_matches_the_formula() {
        let s = sched(Schedule::Cosine, 10, 110, 0.1);
        assert!((s.lr(10) - 2e-4).abs() < 1e-18);
        assert!(s.lr(109) > 2e-5);
        for t in 10..110u64 {
            let p = (t - 10) as f64 / 100.0;
            let want = 2e-5 + (2e-4 - 2e-5) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            assert!((s.lr(t) - want).abs() < 1e-18, "step {t}");
        }
        // Halfway through decay the lr is the mean of peak and floor.
        let mid = sched(Schedule::Cosine, 0, 100, 0.0);
        assert!((mid.lr(50) - 1e-4).abs() < 1e-18);
        // Past the end it stays at the floor.
        assert!((s.lr(500) - 2e-5).abs() < 1e-18);
    }

    #[test]
    fn constant_after_warmup() {
        let s = sched(Schedule::Constant, 3, 50, 0.0);
        assert_eq!(s.lr(0), 2e-4 / 3.0);
        for t in 3..60 {
            assert_eq!(s.lr(t), 2e-4);
        }
    }

    #[test]
    fn no_warmup_and_single_step() {
        let s = sched(Schedule::Cosine, 0, 1, 0.0);
        assert_eq!(s.lr(0), 2e-4);
    }
}
