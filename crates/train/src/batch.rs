//! Micro-batches: seeded shuffling plus length grouping under a token budget.
//!
//! Each epoch's plan is a pure function of (lengths, budget, seed, epoch), so the position in
//! the data is just (epoch, index of the next micro-batch): nothing mutable needs saving to
//! resume exactly where a run stopped.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Examples are sorted by length within windows of this many shuffled examples: wide enough
/// that neighbours in a micro-batch have similar lengths (little padding), narrow enough that
/// the order stays random across the epoch.
const GROUP_WINDOW: usize = 64;

/// A micro-batch: indices into the dataset's examples.
pub type MicroBatch = Vec<usize>;

/// Padded size of a micro-batch: longest example times count, what the engine's activation
/// memory scales with.
pub fn padded_tokens(lengths: &[usize], batch: &[usize]) -> usize {
    batch.iter().map(|&i| lengths[i]).max().unwrap_or(0) * batch.len()
}

/// Greedy packing of examples (already in the order wanted) into micro-batches whose padded
/// size stays within `budget`; an example longer than the budget runs alone.
fn group(order: &[usize], lengths: &[usize], budget: usize, out: &mut Vec<MicroBatch>) {
    let mut cur: MicroBatch = Vec::new();
    let mut cur_max = 0;
    for &i in order {
        let l = lengths[i];
        let new_max = cur_max.max(l);
        if !cur.is_empty() && new_max * (cur.len() + 1) > budget {
            out.push(std::mem::take(&mut cur));
            cur_max = 0;
        }
        cur_max = cur_max.max(l);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

/// The micro-batches of one training epoch, in the order they are used.
pub fn epoch_plan(lengths: &[usize], budget: usize, seed: u64, epoch: u32) -> Vec<MicroBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Stream 0 is left for other users of the seed; each epoch has its own stream, so
    // epoch k's order does not depend on how many draws earlier epochs made.
    rng.set_stream(1 + epoch as u64);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for window in order.chunks(GROUP_WINDOW) {
        let mut w = window.to_vec();
        // Stable sort: ties keep their shuffled order, so the result is still seed-determined.
        w.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        group(&w, lengths, budget, &mut batches);
    }
    batches.shuffle(&mut rng);
    batches
}

/// Fixed micro-batches for evaluation: sorted by length for the least padding, no shuffling.
pub fn eval_plan(lengths: &[usize], budget: usize) -> Vec<MicroBatch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut out = Vec::new();
    group(&order, lengths, budget, &mut out);
    out
}

/// Where the run is in the training data: the next micro-batch is `batch` of epoch `epoch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u32,
    pub batch: usize,
}

/// An endless stream of micro-batches over epochs, resumable from a [`DataPosition`].
pub struct BatchStream {
    lengths: Vec<usize>,
    budget: usize,
    seed: u64,
    pos: DataPosition,
    plan: Vec<MicroBatch>,
}

impl BatchStream {
    /// A stream that will next yield the micro-batch at `pos`.
    pub fn new(lengths: Vec<usize>, budget: usize, seed: u64, pos: DataPosition) -> Self {
        assert!(!lengths.is_empty(), "a batch stream needs examples");
        let plan = epoch_plan(&lengths, budget, seed, pos.epoch);
        BatchStream {
            lengths,
            budget,
            seed,
            pos,
            plan,
        }
    }

    /// The position of the next micro-batch.
    pub fn position(&self) -> DataPosition {
        self.pos
    }

    /// Fractional epochs consumed, for logs.
    pub fn epoch_progress(&self) -> f64 {
        self.pos.epoch as f64 + self.pos.batch as f64 / self.plan.len() as f64
    }

    /// Whole passes over the data drawn so far.
    pub fn passes_done(&self) -> u32 {
        self.pos.epoch + (self.pos.batch >= self.plan.len()) as u32
    }

    /// The next micro-batch and the epoch it belongs to.
    pub fn next_batch(&mut self) -> (u32, MicroBatch) {
        if self.pos.batch >= self.plan.len() {
            self.pos = DataPosition {
                epoch: self.pos.epoch + 1,
                batch: 0,
            };
            self.plan = epoch_plan(&self.lengths, self.budget, self.seed, self.pos.epoch);
        }
        let b = self.plan[self.pos.batch].clone();
        let epoch = self.pos.epoch;
        self.pos.batch += 1;
        (epoch, b)
    }
}

/// Micro-batches in the first `epochs` epochs, for turning epochs into a step count.
pub fn micro_batches_in(lengths: &[usize], budget: usize, seed: u64, epochs: u32) -> usize {
    (0..epochs)
        .map(|e| epoch_plan(lengths, budget, seed, e).len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(n: usize) -> Vec<usize> {
        (0..n).map(|i| 5 + (i * 37) % 90).collect()
    }

    #[test]
    fn each_epoch_is_a_permutation_within_budget() {
        let l = lengths(300);
        let plan = epoch_plan(&l, 256, 3, 0);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        for b in &plan {
            assert!(padded_tokens(&l, b) <= 256 || b.len() == 1);
        }
    }

    #[test]
    fn oversized_example_runs_alone() {
        let l = vec![10, 500, 10, 10];
        let plan = epoch_plan(&l, 100, 0, 0);
        assert!(plan.contains(&vec![1]));
    }

    #[test]
    fn deterministic_per_seed_and_epoch() {
        let l = lengths(200);
        assert_eq!(epoch_plan(&l, 200, 9, 2), epoch_plan(&l, 200, 9, 2));
        assert_ne!(epoch_plan(&l, 200, 9, 2), epoch_plan(&l, 200, 9, 3));
        assert_ne!(epoch_plan(&l, 200, 9, 2), epoch_plan(&l, 200, 10, 2));
    }

    #[test]
    fn grouping_reduces_padding() {
        let l = lengths(640);
        let plan = epoch_plan(&l, 512, 1, 0);
        let padded: usize = plan.iter().map(|b| padded_tokens(&l, b)).sum();
        let real: usize = l.iter().sum();
        // Random batches of this length mix would pad to roughly 1.6x.
        assert!((padded as f64) < 1.25 * real as f64, "{padded} vs {real}");
    }

    #[test]
    fn stream_resumes_from_a_position() {
        let l = lengths(50);
        let mut a = BatchStream::new(l.clone(), 128, 4, DataPosition::default());
        let mut all = Vec::new();
        let mut saved = None;
        for k in 0..100 {
            if k == 37 {
                saved = Some(a.position());
            }
            all.push(a.next_batch());
        }
        let mut b = BatchStream::new(l, 128, 4, saved.unwrap());
        for item in &all[37..] {
            assert_eq!(&b.next_batch(), item);
        }
        assert!(all.last().unwrap().0 >= 2, "100 micro-batches span epochs");
    }

    #[test]
    fn eval_plan_covers_everything_once() {
        let l = lengths(77);
        let mut seen: Vec<usize> = eval_plan(&l, 300).into_iter().flatten().collect();
        seen.sort();
        assert_eq!(seen, (0..77).collect::<Vec<_>>());
    }
}
