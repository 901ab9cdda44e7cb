//! The shared-prefix cache: prompts that start alike (one system prompt, one few-shot block,
//! one task template) reuse the keys and values computed for that start instead of running
//! it through the model again.
//!
//! An entry is a prompt's KV cache, cut to whole blocks of `smolt_model::PREFIX_ALIGN`
//! positions, and the model (base or adapter) that computed it: an adapter changes every
//! key and value, so entries are only ever shared by the same model. A new prompt takes the
//! longest stored prefix it shares, again in whole blocks and leaving at least
//! `smolt_model::PREFIX_MIN_FEED` tokens to feed: under those two rules the model gives bit
//! for bit the numbers of one pass (the `smolt_model::PREFIX_ALIGN` contract), so reusing a
//! prefix changes the time a request takes, never its answer.
//!
//! Memory is bounded by a byte budget over the stored rows; the least recently used entries
//! go first.

use std::sync::Arc;

use smolt_model::{KvCache, PREFIX_ALIGN, PREFIX_MIN_FEED};

/// One stored prefix.
struct Entry<M> {
    /// Entries are matched by this `Arc`'s identity; holding it keeps the model (and so the
    /// identity) alive while the entry lives, even if its adapter is unloaded meanwhile.
    model: Arc<M>,
    tokens: Vec<u32>,
    cache: KvCache,
    /// The clock when it was last stored or reused.
    used: u64,
}

/// Stored prompt prefixes per model, within a byte budget (see the module doc).
pub(crate) struct PrefixCache<M> {
    entries: Vec<Entry<M>>,
    budget: usize,
    bytes: usize,
    clock: u64,
}

/// What a lookup found: a cache holding the first `cache.len()` positions of the prompt.
pub(crate) struct Hit {
    pub cache: KvCache,
}

/// The longest prefix of `len` prompt tokens that may be taken from a cache: whole blocks,
/// with `PREFIX_MIN_FEED` tokens left to feed.
fn usable(shared: usize, len: usize) -> usize {
    let most = shared.min(len.saturating_sub(PREFIX_MIN_FEED));
    most / PREFIX_ALIGN * PREFIX_ALIGN
}

fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<M> PrefixCache<M> {
    /// A cache that keeps at most `budget` bytes of keys and values (0: keeps nothing).
    pub(crate) fn new(budget: usize) -> Self {
        PrefixCache {
            entries: Vec::new(),
            budget,
            bytes: 0,
            clock: 0,
        }
    }

    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The longest stored prefix of `prompt` computed by `model`, copied into a fresh cache;
    /// `None` when no entry shares a whole usable block with it.
    pub(crate) fn lookup(&mut self, model: &Arc<M>, prompt: &[u32]) -> Option<Hit> {
        let (best, n) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| Arc::ptr_eq(&e.model, model))
            .map(|(i, e)| (i, usable(common_len(&e.tokens, prompt), prompt.len())))
            .max_by_key(|&(_, n)| n)?;
        if n == 0 {
            return None;
        }
        self.clock += 1;
        let e = &mut self.entries[best];
        e.used = self.clock;
        Some(Hit {
            cache: e.cache.prefix(n),
        })
    }

    /// Stores the whole blocks of `cache`, which holds `prompt` (at least) as computed by
    /// `model`. An entry that this one extends is replaced; one that already holds these
    /// blocks is only marked as used.
    pub(crate) fn insert(&mut self, model: &Arc<M>, prompt: &[u32], cache: &KvCache) {
        let n = prompt.len().min(cache.len()) / PREFIX_ALIGN * PREFIX_ALIGN;
        if n == 0 || self.budget == 0 {
            return;
        }
        self.clock += 1;
        let tokens = &prompt[..n];
        let same_model = |e: &Entry<M>| Arc::ptr_eq(&e.model, model);
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| same_model(e) && e.tokens.len() >= n && e.tokens[..n] == *tokens)
        {
            e.used = self.clock;
            return;
        }
        let stored = cache.prefix(n);
        let size = stored.bytes();
        if size > self.budget {
            return;
        }
        // An entry this one extends holds nothing this one does not.
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if same_model(e) && tokens.starts_with(&e.tokens) {
                self.bytes -= e.cache.bytes();
                self.entries.swap_remove(i);
            } else {
                i += 1;
            }
        }
        while self.bytes + size > self.budget {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
                break;
            };
            self.bytes -= self.entries[oldest].cache.bytes();
            self.entries.swap_remove(oldest);
        }
        self.bytes += size;
        self.entries.push(Entry {
            model: Arc::clone(model),
            tokens: tokens.to_vec(),
            cache: stored,
            used: self.clock,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolt_model::testing::tiny_gemma3;
    use smolt_model::{Logits, Model, Precision};

    fn model() -> Model {
        Model::from_gguf(tiny_gemma3(7), Precision::Fast).unwrap()
    }

    /// A prompt of `n` tokens: `shared` first, then tokens from `seed`.
    fn prompt(shared: &[u32], n: usize, seed: u32) -> Vec<u32> {
        let mut p = shared.to_vec();
        p.extend((0..n - shared.len()).map(|i| 3 + (i as u32 * 31 + seed * 17) % 250));
        p
    }

    fn filled(m: &Model, p: &[u32]) -> KvCache {
        let mut c = m.new_cache();
        m.forward(p, &mut c, Logits::None).unwrap();
        c
    }

    #[test]
    fn usable_prefixes_are_whole_blocks_leaving_a_feed() {
        assert_eq!(usable(63, 200), 0);
        assert_eq!(usable(64, 200), 64);
        assert_eq!(
            usable(200, 200),
            128,
            "168 leaves 32, rounded down to a block"
        );
        assert_eq!(usable(130, 96), 64);
        assert_eq!(usable(130, 95), 0, "95 − 32 = 63: no whole block");
    }

    #[test]
    fn a_shared_start_is_found_per_model_and_continues_bit_for_bit() {
        let m = model();
        let (a, b) = (Arc::new(1u8), Arc::new(2u8));
        let shared: Vec<u32> = (0..70).map(|i| 5 + i * 3).collect();
        let first = prompt(&shared, 100, 1);
        let mut pc = PrefixCache::new(1 << 20);
        assert!(pc.lookup(&a, &first).is_none());
        pc.insert(&a, &first, &filled(&m, &first));
        assert_eq!(pc.entries.len(), 1);
        assert_eq!(pc.entries[0].tokens.len(), 64);
        assert_eq!(pc.bytes(), pc.entries[0].cache.bytes());

        let second = prompt(&shared, 110, 2);
        assert!(pc.lookup(&b, &second).is_none(), "another model's keys");
        let hit = pc.lookup(&a, &second).expect("64 shared positions");
        assert_eq!(hit.cache.len(), 64);
        // Continued from the hit, the logits are those of one pass over the whole prompt.
        let mut c = hit.cache;
        let reused = m.forward(&second[64..], &mut c, Logits::Last).unwrap();
        let whole = m
            .forward(&second, &mut m.new_cache(), Logits::Last)
            .unwrap();
        assert!(reused
            .iter()
            .zip(&whole)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
        // Differing inside the first block: nothing to reuse.
        let mut other = second.clone();
        other[10] += 1;
        assert!(pc.lookup(&a, &other).is_none());
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used() {
        let m = model();
        let a = Arc::new(());
        let prompts: Vec<Vec<u32>> = (0..3).map(|s| prompt(&[2], 100, s)).collect();
        let one = filled(&m, &prompts[0]).prefix(64).bytes();
        let mut pc = PrefixCache::new(2 * one);
        pc.insert(&a, &prompts[0], &filled(&m, &prompts[0]));
        pc.insert(&a, &prompts[1], &filled(&m, &prompts[1]));
        // Using the first makes the second the oldest.
        assert!(pc.lookup(&a, &prompts[0]).is_some());
        pc.insert(&a, &prompts[2], &filled(&m, &prompts[2]));
        assert_eq!(pc.entries.len(), 2);
        assert!(pc.bytes() <= 2 * one);
        assert!(pc.lookup(&a, &prompts[0]).is_some());
        assert!(pc.lookup(&a, &prompts[1]).is_none(), "evicted");
        assert!(pc.lookup(&a, &prompts[2]).is_some());
        // Storing blocks that are held already adds nothing.
        pc.insert(&a, &prompts[2], &filled(&m, &prompts[2]));
        assert_eq!(pc.entries.len(), 2);
        let mut none = PrefixCache::new(0);
        none.insert(&a, &prompts[0], &filled(&m, &prompts[0]));
        assert_eq!(none.bytes(), 0);
    }
}
