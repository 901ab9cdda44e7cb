//! Draft tokens for speculative decoding, proposed by n-gram lookup in the text so far.
//!
//! Extraction copies spans of its input (a retailer's name, an address, a total), so the
//! tokens that followed the last few output tokens where they occur in the prompt are a good
//! guess for what comes next. The model checks all guesses in one forward pass; a wrong one
//! costs only the slots after it, a right one saves a whole decode step.

/// Longest and shortest suffix (in tokens) looked up in the history.
const MAX_N: usize = 4;
const MIN_N: usize = 2;

/// Up to `k` tokens that followed the most recent earlier occurrence of the longest suffix
/// of `history` (between `MAX_N` and `MIN_N` tokens) found earlier in `history`; empty when
/// none is found.
pub fn propose(history: &[u32], k: usize) -> Vec<u32> {
    let len = history.len();
    if k == 0 {
        return Vec::new();
    }
    for n in (MIN_N..=MAX_N.min(len.saturating_sub(1))).rev() {
        let suffix = &history[len - n..];
        // Most recent occurrence first: local context predicts best. Any earlier start counts,
        // overlapping the suffix included ("ab ab ab" continues itself).
        for start in (0..len - n).rev() {
            if &history[start..start + n] == suffix {
                let from = start + n;
                let to = (from + k).min(len);
                return history[from..to].to_vec();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_the_most_recent_match_of_the_longest_suffix() {
        // "… 7 8 9 10 11 … 1 2 7 8 9" → after "7 8 9" came "10 11".
        let h = [1, 2, 7, 8, 9, 10, 11, 3, 4, 5, 1, 2, 7, 8, 9];
        assert_eq!(propose(&h, 2), [10, 11]);
        assert_eq!(propose(&h, 8), [10, 11, 3, 4, 5, 1, 2, 7]);
        // Never past the end of the history.
        assert_eq!(propose(&h, 50).len(), 10);
        // The longest suffix wins over a more recent shorter one: "8 9" also occurs at the end
        // of "5 8 9 6", but "7 8 9" occurs only earlier.
        let h = [7, 8, 9, 100, 5, 8, 9, 6, 7, 8, 9];
        assert_eq!(propose(&h, 1), [100]);
        // A shorter suffix when the longer ones never occurred before.
        let h = [3, 4, 50, 60, 1, 3, 4];
        assert_eq!(propose(&h, 3), [50, 60, 1]);
    }

    #[test]
    fn proposes_nothing_without_a_match() {
        assert!(propose(&[], 4).is_empty());
        assert!(propose(&[1], 4).is_empty());
        assert!(propose(&[1, 2, 3, 4, 5], 4).is_empty());
        // One repeated token is not enough context (MIN_N = 2).
        assert!(propose(&[9, 1, 2, 9], 4).is_empty());
        assert!(propose(&[1, 2, 3, 1, 2], 0).is_empty());
    }

    #[test]
    fn a_repeating_pattern_continues_itself() {
        let h = [5, 6, 5, 6, 5, 6];
        assert_eq!(propose(&h, 3), [5, 6]);
    }
}
