//! Train/valid/test splits: random, or ordered by a field ("train on 2019, test on 2020").
//!
//! An ordered split is the honest test for a model that will meet *future* documents: a random
//! split leaks the period's retailers, formats and prices into the test set.

use std::cmp::Ordering;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{write_jsonl, JsonlError, Record};

/// How to split. Serde-friendly so a task config can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SplitSpec {
    /// Shuffle with `seed`, then cut: `round(n × test_frac)` to test, `round(n × valid_frac)` to
    /// valid, the rest to train. Each part keeps the input order.
    Random {
        valid_frac: f64,
        test_frac: f64,
        seed: u64,
    },
    /// Order by `key`, then cut at `boundaries`: `[b]` puts `key < b` in train and the rest in
    /// test; `[v, t]` puts `key < v` in train, `v ≤ key < t` in valid, `key ≥ t` in test.
    ///
    /// `key` is a JSON pointer into the record (`/output/timestamp`) or, without a leading `/`,
    /// a field of `output` (`timestamp`, `items.0.name` with dots for nesting). Strings compare
    /// lexicographically, so a boundary `"2020"` splits ISO dates by year; numbers compare
    /// numerically when the boundary parses as one.
    Ordered {
        key: String,
        boundaries: Vec<String>,
    },
}

impl SplitSpec {
    /// "Train on the years before `year`, test on `year` and later" over an ISO date field.
    pub fn by_year(key: &str, test_from: u16) -> SplitSpec {
        SplitSpec::Ordered {
            key: key.to_string(),
            boundaries: vec![test_from.to_string()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("fractions must be in [0, 1] and sum to at most 1 (valid {valid}, test {test})")]
    BadFractions { valid: f64, test: f64 },
    #[error("an ordered split needs 1 or 2 boundaries in increasing order, got {0:?}")]
    BadBoundaries(Vec<String>),
    #[error("record {index} has no scalar at key {key:?} (a JSON pointer like /output/timestamp, or a field of output)")]
    MissingKey { index: usize, key: String },
}

/// The three parts. `valid` is empty for a one-boundary ordered split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits {
    pub train: Vec<Record>,
    pub valid: Vec<Record>,
    pub test: Vec<Record>,
}

impl Splits {
    /// Writes `train.jsonl`, `valid.jsonl` and `test.jsonl` into `dir` (an empty part gives an
    /// empty file, so downstream steps find every file where they expect it).
    pub fn write(&self, dir: &Path) -> Result<(), JsonlError> {
        write_jsonl(&dir.join("train.jsonl"), &self.train)?;
        write_jsonl(&dir.join("valid.jsonl"), &self.valid)?;
        write_jsonl(&dir.join("test.jsonl"), &self.test)
    }

    /// "train 800 · valid 100 · test 100", for the CLI.
    pub fn summary(&self) -> String {
        format!(
            "train {} · valid {} · test {}",
            self.train.len(),
            self.valid.len(),
            self.test.len()
        )
    }
}

/// Splits `records` as `spec` says; see [`SplitSpec`].
pub fn split(records: Vec<Record>, spec: &SplitSpec) -> Result<Splits, SplitError> {
    match spec {
        SplitSpec::Random {
            valid_frac,
            test_frac,
            seed,
        } => {
            let (v, t) = (*valid_frac, *test_frac);
            if !(0.0..=1.0).contains(&v) || !(0.0..=1.0).contains(&t) || v + t > 1.0 + 1e-9 {
                return Err(SplitError::BadFractions { valid: v, test: t });
            }
            let n = records.len();
            let n_test = (n as f64 * t).round() as usize;
            let n_valid = ((n as f64 * v).round() as usize).min(n - n_test);
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(*seed));
            // part[i]: 0 train, 1 valid, 2 test.
            let mut part = vec![0u8; n];
            for &i in &order[..n_test] {
                part[i] = 2;
            }
            for &i in &order[n_test..n_test + n_valid] {
                part[i] = 1;
            }
            Ok(distribute(records, |i, _| part[i]))
        }
        SplitSpec::Ordered { key, boundaries } => {
            if boundaries.is_empty()
                || boundaries.len() > 2
                || (boundaries.len() == 2 && boundaries[0] > boundaries[1])
            {
                return Err(SplitError::BadBoundaries(boundaries.clone()));
            }
            let mut keys = Vec::with_capacity(records.len());
            for (index, r) in records.iter().enumerate() {
                match lookup(r, key) {
                    Some(v) if !v.is_object() && !v.is_array() && !v.is_null() => {
                        keys.push(v.clone())
                    }
                    _ => {
                        return Err(SplitError::MissingKey {
                            index,
                            key: key.clone(),
                        })
                    }
                }
            }
            let below = |v: &Value, b: &str| compare(v, b) == Ordering::Less;
            Ok(distribute(records, |i, _| {
                let k = &keys[i];
                match boundaries.as_slice() {
                    [b] => {
                        if below(k, b) {
                            0
                        } else {
                            2
                        }
                    }
                    [v, t] => {
                        if below(k, v) {
                            0
                        } else if below(k, t) {
                            1
                        } else {
                            2
                        }
                    }
                    _ => unreachable!(),
                }
            }))
        }
    }
}

fn distribute(records: Vec<Record>, mut part: impl FnMut(usize, &Record) -> u8) -> Splits {
    let mut s = Splits::default();
    for (i, r) in records.into_iter().enumerate() {
        match part(i, &r) {
            0 => s.train.push(r),
            1 => s.valid.push(r),
            _ => s.test.push(r),
        }
    }
    s
}

fn lookup<'a>(r: &'a Record, key: &str) -> Option<&'a Value> {
    if key.starts_with('/') {
        if let Some(rest) = key.strip_prefix("/output") {
            return if rest.is_empty() {
                Some(&r.output)
            } else {
                r.output.pointer(rest)
            };
        }
        // Only /input is left at the top level.
        return None;
    }
    let mut v = &r.output;
    for part in key.split('.') {
        v = match v {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn compare(v: &Value, boundary: &str) -> Ordering {
    match v {
        Value::Number(n) => match (n.as_f64(), boundary.trim().parse::<f64>()) {
            (Some(x), Ok(b)) => x.partial_cmp(&b).unwrap_or(Ordering::Equal),
            _ => n.to_string().as_str().cmp(boundary),
        },
        Value::String(s) => s.as_str().cmp(boundary),
        other => other.to_string().as_str().cmp(boundary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recs(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                input: format!("r{i}"),
                output: json!({"timestamp": format!("{}-0{}-01T10:00", 2018 + i % 3, 1 + i % 9), "n": i, "o": {"k": i % 2}}),
            })
            .collect()
    }

    #[test]
    fn random_split_sizes_disjoint_and_seeded() {
        let spec = SplitSpec::Random {
            valid_frac: 0.1,
            test_frac: 0.2,
            seed: 3,
        };
        let s = split(recs(100), &spec).unwrap();
        assert_eq!((s.train.len(), s.valid.len(), s.test.len()), (70, 10, 20));
        let mut all: Vec<String> = s
            .train
            .iter()
            .chain(&s.valid)
            .chain(&s.test)
            .map(|r| r.input.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        assert_eq!(split(recs(100), &spec).unwrap(), s);
        let other = split(
            recs(100),
            &SplitSpec::Random {
                valid_frac: 0.1,
                test_frac: 0.2,
                seed: 4,
            },
        )
        .unwrap();
        assert_ne!(other.test, s.test);
        // Input order is kept inside a part.
        let idx: Vec<usize> = s
            .train
            .iter()
            .map(|r| r.input[1..].parse().unwrap())
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn random_split_edge_cases() {
        assert!(split(
            recs(10),
            &SplitSpec::Random {
                valid_frac: 0.6,
                test_frac: 0.5,
                seed: 0
            }
        )
        .is_err());
        assert!(split(
            recs(10),
            &SplitSpec::Random {
                valid_frac: -0.1,
                test_frac: 0.5,
                seed: 0
            }
        )
        .is_err());
        let s = split(
            vec![],
            &SplitSpec::Random {
                valid_frac: 0.1,
                test_frac: 0.1,
                seed: 0,
            },
        )
        .unwrap();
        assert_eq!(s, Splits::default());
        let s = split(
            recs(3),
            &SplitSpec::Random {
                valid_frac: 0.0,
                test_frac: 1.0,
                seed: 0,
            },
        )
        .unwrap();
        assert_eq!(s.test.len(), 3);
    }

    #[test]
    fn ordered_split_by_year() {
        let s = split(recs(30), &SplitSpec::by_year("timestamp", 2020)).unwrap();
        assert_eq!((s.train.len(), s.valid.len(), s.test.len()), (20, 0, 10));
        assert!(s
            .train
            .iter()
            .all(|r| r.output["timestamp"].as_str().unwrap() < "2020"));
        assert!(s
            .test
            .iter()
            .all(|r| r.output["timestamp"].as_str().unwrap().starts_with("2020")));
        let spec = SplitSpec::Ordered {
            key: "/output/timestamp".into(),
            boundaries: vec!["2019".into(), "2020".into()],
        };
        let s = split(recs(30), &spec).unwrap();
        assert_eq!((s.train.len(), s.valid.len(), s.test.len()), (10, 10, 10));
    }

    #[test]
    fn ordered_split_numeric_and_nested_keys() {
        // Numeric: 9 < 10 although "9" > "10" as strings.
        let s = split(
            recs(12),
            &SplitSpec::Ordered {
                key: "n".into(),
                boundaries: vec!["10".into()],
            },
        )
        .unwrap();
        assert_eq!((s.train.len(), s.test.len()), (10, 2));
        let s = split(
            recs(12),
            &SplitSpec::Ordered {
                key: "o.k".into(),
                boundaries: vec!["1".into()],
            },
        )
        .unwrap();
        assert_eq!((s.train.len(), s.test.len()), (6, 6));
    }

    #[test]
    fn ordered_split_errors() {
        let e = split(
            recs(3),
            &SplitSpec::Ordered {
                key: "nope".into(),
                boundaries: vec!["1".into()],
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope"));
        assert!(split(
            recs(3),
            &SplitSpec::Ordered {
                key: "o".into(),
                boundaries: vec!["1".into()]
            }
        )
        .is_err());
        assert!(split(
            recs(3),
            &SplitSpec::Ordered {
                key: "n".into(),
                boundaries: vec![]
            }
        )
        .is_err());
        assert!(split(
            recs(3),
            &SplitSpec::Ordered {
                key: "n".into(),
                boundaries: vec!["b".into(), "a".into()]
            }
        )
        .is_err());
    }

    #[test]
    fn spec_deserialises_from_config() {
        let s: SplitSpec =
            serde_json::from_str(r#"{"kind":"ordered","key":"timestamp","boundaries":["2020"]}"#)
                .unwrap();
        assert_eq!(s, SplitSpec::by_year("timestamp", 2020));
        let r: SplitSpec =
            serde_json::from_str(r#"{"kind":"random","valid_frac":0.1,"test_frac":0.1,"seed":1}"#)
                .unwrap();
        assert!(matches!(r, SplitSpec::Random { .. }));
    }

    #[test]
    fn write_creates_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = split(recs(10), &SplitSpec::by_year("timestamp", 2020)).unwrap();
        s.write(dir.path()).unwrap();
        for f in ["train.jsonl", "valid.jsonl", "test.jsonl"] {
            assert!(dir.path().join(f).exists());
        }
        assert_eq!(
            crate::read_jsonl(&dir.path().join("test.jsonl")).unwrap(),
            s.test
        );
    }
}
