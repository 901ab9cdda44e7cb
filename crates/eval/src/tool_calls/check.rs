//! One case: the answer's calls against the expected calls.

use serde_json::Value;

use super::values::{type_ok, types, value_ok};
use super::{Answer, ArgumentOutcome, Call, CaseResult, Expected, ExpectedCall, Function, Problem};

/// Scores `answer` against `expected`, given the functions the model was offered.
pub fn check_case(functions: &[Function], answer: &Answer, expected: &Expected) -> CaseResult {
    let wanted = match expected {
        Expected::NoCall => {
            let problems = match answer {
                Answer::Calls(calls) if !calls.is_empty() => {
                    vec![Problem::CalledWhenNoCallExpected {
                        names: calls.iter().map(|c| c.name.clone()).collect(),
                    }]
                }
                // Text, no calls, or output that is not a call: the model did not call.
                _ => Vec::new(),
            };
            return verdict(problems, Vec::new(), Vec::new());
        }
        Expected::Calls(wanted) => wanted,
    };
    let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
    let all_wrong = || -> Vec<ArgumentOutcome> {
        wanted
            .iter()
            .flat_map(|w| {
                w.arguments.keys().map(|a| ArgumentOutcome {
                    function: w.name.clone(),
                    argument: a.clone(),
                    correct: false,
                })
            })
            .collect()
    };
    if let Some(w) = wanted
        .iter()
        .find(|w| !functions.iter().any(|f| f.name == w.name))
    {
        let problem = Problem::UnknownFunction {
            name: w.name.clone(),
        };
        return verdict(vec![problem], names, all_wrong());
    }
    let calls = match answer {
        Answer::Calls(calls) => calls,
        Answer::Text(_) => return verdict(vec![Problem::NoCall], names, all_wrong()),
        Answer::Malformed(message) => {
            let problem = Problem::Malformed {
                message: message.clone(),
            };
            return verdict(vec![problem], names, all_wrong());
        }
    };
    if calls.len() != wanted.len() {
        let problem = Problem::WrongCount {
            expected: wanted.len(),
            got: calls.len(),
        };
        return verdict(vec![problem], names, all_wrong());
    }
    // Every expected call against every output call, then a matching that pairs each
    // expected call with a call that satisfies it, in any order.
    let checks: Vec<Vec<CallCheck>> = wanted
        .iter()
        .map(|w| {
            let f = functions
                .iter()
                .find(|f| f.name == w.name)
                .expect("checked");
            calls.iter().map(|c| check_call(f, c, w)).collect()
        })
        .collect();
    let pairs = matching(&checks);
    let mut problems = Vec::new();
    let mut arguments = Vec::new();
    let mut free: Vec<bool> = (0..calls.len())
        .map(|j| !pairs.contains(&Some(j)))
        .collect();
    for (i, pair) in pairs.iter().enumerate() {
        let check = match pair {
            Some(j) => &checks[i][*j],
            None => {
                // Report against the nearest call left over: the right function first,
                // then the fewest problems.
                let j = (0..calls.len())
                    .filter(|&j| free[j])
                    .min_by_key(|&j| (calls[j].name != wanted[i].name, checks[i][j].problems.len()))
                    .expect("as many calls as expected calls");
                free[j] = false;
                let c = &checks[i][j];
                if wanted.len() == 1 {
                    problems.extend(c.problems.iter().cloned());
                } else {
                    problems.push(Problem::Unmatched {
                        expected: i,
                        function: wanted[i].name.clone(),
                        closest: c.problems.clone(),
                    });
                }
                c
            }
        };
        arguments.extend(check.arguments.iter().cloned());
    }
    verdict(problems, names, arguments)
}

fn verdict(
    problems: Vec<Problem>,
    expected_functions: Vec<String>,
    arguments: Vec<ArgumentOutcome>,
) -> CaseResult {
    CaseResult {
        passed: problems.is_empty(),
        problems,
        expected_functions,
        arguments,
    }
}

/// One output call against one expected call.
struct CallCheck {
    problems: Vec<Problem>,
    arguments: Vec<ArgumentOutcome>,
}

fn check_call(f: &Function, call: &Call, want: &ExpectedCall) -> CallCheck {
    let function = want.name.clone();
    let mut problems = Vec::new();
    if call.name != want.name {
        problems.push(Problem::WrongFunction {
            expected: want.name.clone(),
            got: call.name.clone(),
        });
    } else if let Value::Object(args) = &call.arguments {
        for r in f.required() {
            if !args.contains_key(r) {
                problems.push(Problem::MissingRequired {
                    function: function.clone(),
                    argument: r.to_string(),
                });
            }
        }
        for (k, v) in args {
            let argument = k.clone();
            let function = function.clone();
            let Some(schema) = f.property(k) else {
                problems.push(Problem::UndefinedArgument { function, argument });
                continue;
            };
            let Some(acceptable) = want.acceptable(k) else {
                problems.push(Problem::UnexpectedArgument { function, argument });
                continue;
            };
            if !type_ok(schema, v) {
                problems.push(Problem::WrongType {
                    function,
                    argument,
                    expected: types(schema).join(" or "),
                    got: v.clone(),
                });
            } else if !value_ok(schema, v, acceptable) {
                problems.push(Problem::WrongValue {
                    function,
                    argument,
                    got: v.clone(),
                    acceptable: acceptable.to_vec(),
                });
            }
        }
        let required = f.required();
        for (k, acceptable) in &want.arguments {
            let optional_absent = !args.contains_key(k) && !required.contains(&k.as_str());
            let may_be_absent = acceptable
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("")));
            if optional_absent && !may_be_absent {
                problems.push(Problem::MissingOptional {
                    function: function.clone(),
                    argument: k.clone(),
                });
            }
        }
    } else {
        problems.push(Problem::ArgumentsNotObject {
            function: function.clone(),
        });
    }
    let whole_call_wrong = problems.iter().any(|p| {
        matches!(
            p,
            Problem::WrongFunction { .. } | Problem::ArgumentsNotObject { .. }
        )
    });
    let arguments = want
        .arguments
        .keys()
        .map(|a| ArgumentOutcome {
            function: function.clone(),
            argument: a.clone(),
            correct: !whole_call_wrong && !problems.iter().any(|p| p.argument() == Some(a)),
        })
        .collect();
    CallCheck {
        problems,
        arguments,
    }
}

/// For each expected call, the output call it is paired with (`None`: no output call satisfies
/// it), as a maximum matching over the pairs that pass (augmenting paths; cases hold a
/// handful of calls).
fn matching(checks: &[Vec<CallCheck>]) -> Vec<Option<usize>> {
    let n_calls = checks.first().map_or(0, Vec::len);
    let mut owner: Vec<Option<usize>> = vec![None; n_calls];
    fn augment(
        i: usize,
        checks: &[Vec<CallCheck>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for j in 0..owner.len() {
            if seen[j] || !checks[i][j].problems.is_empty() {
                continue;
            }
            seen[j] = true;
            if owner[j].is_none_or(|k| augment(k, checks, owner, seen)) {
                owner[j] = Some(i);
                return true;
            }
        }
        false
    }
    for i in 0..checks.len() {
        augment(i, checks, &mut owner, &mut vec![false; n_calls]);
    }
    (0..checks.len())
        .map(|i| owner.iter().position(|o| *o == Some(i)))
        .collect()
}
