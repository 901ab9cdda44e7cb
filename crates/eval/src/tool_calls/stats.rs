//! Accuracy over many cases: overall, per tool, per argument, and counts of each problem.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CaseResult;

/// The bucket of "no call" cases in per-tool accuracy.
pub const NO_CALL: &str = "(no call)";

/// Passed out of total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub passed: usize,
    pub total: usize,
}

impl Rate {
    fn add(&mut self, passed: bool) {
        self.total += 1;
        self.passed += usize::from(passed);
    }

    /// The share passed; 0 for no cases.
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}

/// How often one argument of one function came out right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgumentStat {
    pub function: String,
    pub argument: String,
    pub rate: Rate,
}

/// Accuracy of a set of cases, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallStats {
    pub overall: Rate,
    /// Per expected function (a case counts for each function it expects once), and
    /// [`NO_CALL`] for the cases where the model should not call.
    pub per_tool: BTreeMap<String, Rate>,
    /// Per expected argument, in function then argument order.
    pub per_argument: Vec<ArgumentStat>,
    /// How many failed cases had each kind of problem ([`super::Problem::kind`]).
    pub problems: BTreeMap<String, usize>,
}

impl ToolCallStats {
    pub fn from_results<'a>(results: impl IntoIterator<Item = &'a CaseResult>) -> ToolCallStats {
        let mut s = ToolCallStats::default();
        let mut args: BTreeMap<(String, String), Rate> = BTreeMap::new();
        for r in results {
            s.overall.add(r.passed);
            let mut tools: Vec<&str> = r.expected_functions.iter().map(String::as_str).collect();
            tools.sort_unstable();
            tools.dedup();
            if tools.is_empty() {
                tools.push(NO_CALL);
            }
            for t in tools {
                s.per_tool.entry(t.to_string()).or_default().add(r.passed);
            }
            for a in &r.arguments {
                args.entry((a.function.clone(), a.argument.clone()))
                    .or_default()
                    .add(a.correct);
            }
            let mut kinds: Vec<&str> = r.problems.iter().map(|p| p.kind()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            for k in kinds {
                *s.problems.entry(k.to_string()).or_default() += 1;
            }
        }
        s.per_argument = args
            .into_iter()
            .map(|((function, argument), rate)| ArgumentStat {
                function,
                argument,
                rate,
            })
            .collect();
        s
    }
}
