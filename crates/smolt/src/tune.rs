//! `smolt tune`'s search: which training recipes to try, in what order, within a time budget,
//! and which one won. Training and scoring are the caller's (a closure), so the search itself
//! is checked without a model.
//!
//! The search is coordinate descent, one setting at a time in the order that matters most on
//! small-model fine-tunes: the peak learning rate first (at the first value of everything
//! else), then the number of passes at the best rate, then the LoRA rank, then the longest
//! example. Every candidate is scored by the task's own field metric on the validation split
//! — never by loss, which a model can lower while its answers get worse — and the best one
//! wins (ties: the cheaper one). Before each candidate, its cost is estimated from the ones
//! already run (seconds per pass, scaled by passes and length); one that would not finish
//! within the budget is skipped, and the table says so.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub lr: f64,
    pub epochs: u32,
    pub rank: usize,
    pub max_len: usize,
}

impl Recipe {
    /// A short folder-friendly name: `lr5e-4_e2_r16_len640`.
    pub fn slug(&self) -> String {
        format!(
            "lr{:e}_e{}_r{}_len{}",
            self.lr, self.epochs, self.rank, self.max_len
        )
    }
}

/// The values to try for each setting; the first of each is where the search starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub lrs: Vec<f64>,
    pub epochs: Vec<u32>,
    pub ranks: Vec<usize>,
    pub max_lens: Vec<usize>,
}

impl Space {
    /// Rejects an empty setting or a value that cannot train.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.lrs.is_empty()
            || self.epochs.is_empty()
            || self.ranks.is_empty()
            || self.max_lens.is_empty()
        {
            anyhow::bail!("every setting needs at least one value to try");
        }
        if let Some(lr) = self.lrs.iter().find(|&&lr| !(lr > 0.0 && lr < 1.0)) {
            anyhow::bail!("learning rate {lr} is outside (0, 1)");
        }
        if self.epochs.contains(&0) || self.ranks.contains(&0) || self.max_lens.contains(&0) {
            anyhow::bail!("passes, rank and max length must be at least 1");
        }
        Ok(())
    }

    fn start(&self) -> Recipe {
        Recipe {
            lr: self.lrs[0],
            epochs: self.epochs[0],
            rank: self.ranks[0],
            max_len: self.max_lens[0],
        }
    }
}

/// What one scored candidate gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Mean field score on the validation records (the task's metric).
    pub score: f64,
    pub valid_json: f64,
    /// Per-field normalised accuracy.
    pub fields: Vec<(String, f64)>,
    pub train_s: f64,
    pub eval_s: f64,
    /// The pass whose adapter scored best (every pass of a multi-pass candidate is scored:
    /// early stopping on the task's metric); `score` and `fields` are that pass's.
    #[serde(default)]
    pub best_pass: u32,
    /// Each pass's score, first pass first.
    #[serde(default)]
    pub pass_scores: Vec<f64>,
}

/// What became of one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Scored(Scored),
    /// Not run: its estimated cost did not fit in what was left of the budget.
    Skipped {
        estimate_s: f64,
        left_s: f64,
    },
    /// Training or scoring failed; the search went on without it.
    Failed {
        error: String,
    },
}

/// One candidate of the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// 1-based, in the order run.
    pub id: usize,
    /// Which setting this candidate varied.
    pub phase: String,
    pub recipe: Recipe,
    pub outcome: Outcome,
}

impl Trial {
    pub fn scored(&self) -> Option<&Scored> {
        match &self.outcome {
            Outcome::Scored(s) => Some(s),
            _ => None,
        }
    }
}

/// The whole search, as `tune.json` keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    pub budget_s: f64,
    pub elapsed_s: f64,
    pub trials: Vec<Trial>,
    /// The winning trial's id.
    pub best: Option<usize>,
}

impl Tuning {
    pub fn best_trial(&self) -> Option<&Trial> {
        self.best
            .and_then(|id| self.trials.iter().find(|t| t.id == id))
    }
}

/// Seconds a recipe should take, from the scored trials: training seconds per pass per token
/// of `max_len` (examples are cut there, so it bounds the work), plus the mean scoring time.
fn estimate(trials: &[Trial], r: &Recipe) -> Option<f64> {
    let scored: Vec<(&Recipe, &Scored)> = trials
        .iter()
        .filter_map(|t| t.scored().map(|s| (&t.recipe, s)))
        .collect();
    if scored.is_empty() {
        return None;
    }
    let n = scored.len() as f64;
    let per_unit = scored
        .iter()
        .map(|(r, s)| s.train_s / (r.epochs as f64 * r.max_len as f64))
        .sum::<f64>()
        / n;
    let eval = scored.iter().map(|(_, s)| s.eval_s).sum::<f64>() / n;
    Some(per_unit * r.epochs as f64 * r.max_len as f64 + eval)
}

/// Runs the search: `run(recipe, trial id)` trains and scores one candidate; `elapsed()` says
/// how many seconds have gone since the search began; `on_trial` sees each trial as it ends.
pub fn search(
    space: &Space,
    budget_s: f64,
    mut elapsed: impl FnMut() -> f64,
    mut run: impl FnMut(&Recipe, usize) -> anyhow::Result<Scored>,
    mut on_trial: impl FnMut(&Trial),
) -> Tuning {
    let mut trials: Vec<Trial> = Vec::new();
    let mut best = space.start();
    type Vary = fn(&Space, &Recipe) -> Vec<Recipe>;
    let phases: [(&str, Vary); 4] = [
        ("learning rate", |s, b| {
            s.lrs.iter().map(|&lr| Recipe { lr, ..b.clone() }).collect()
        }),
        ("passes", |s, b| {
            s.epochs
                .iter()
                .map(|&epochs| Recipe {
                    epochs,
                    ..b.clone()
                })
                .collect()
        }),
        ("rank", |s, b| {
            s.ranks
                .iter()
                .map(|&rank| Recipe { rank, ..b.clone() })
                .collect()
        }),
        ("max length", |s, b| {
            s.max_lens
                .iter()
                .map(|&max_len| Recipe {
                    max_len,
                    ..b.clone()
                })
                .collect()
        }),
    ];
    for (phase, vary) in phases {
        for recipe in vary(space, &best) {
            if trials.iter().any(|t| t.recipe == recipe) {
                continue;
            }
            let id = trials.len() + 1;
            let left = budget_s - elapsed();
            let outcome = match estimate(&trials, &recipe) {
                Some(est) if est > left => Outcome::Skipped {
                    estimate_s: est,
                    left_s: left.max(0.0),
                },
                _ if left <= 0.0 => Outcome::Skipped {
                    estimate_s: f64::NAN,
                    left_s: 0.0,
                },
                _ => match run(&recipe, id) {
                    Ok(s) => Outcome::Scored(s),
                    Err(e) => Outcome::Failed {
                        error: format!("{e:#}"),
                    },
                },
            };
            let trial = Trial {
                id,
                phase: phase.to_string(),
                recipe,
                outcome,
            };
            on_trial(&trial);
            let first_failed = trials.is_empty() && matches!(trial.outcome, Outcome::Failed { .. });
            trials.push(trial);
            if first_failed {
                // Nothing has trained yet: the data or the setup is at fault, and every other
                // candidate would fail the same way.
                return finish(budget_s, elapsed(), trials);
            }
        }
        if let Some(t) = winner(&trials) {
            best = t.recipe.clone();
        }
    }
    finish(budget_s, elapsed(), trials)
}

fn finish(budget_s: f64, elapsed_s: f64, trials: Vec<Trial>) -> Tuning {
    Tuning {
        budget_s,
        elapsed_s,
        best: winner(&trials).map(|t| t.id),
        trials,
    }
}

/// The highest score; among equals, the cheapest to train.
fn winner(trials: &[Trial]) -> Option<&Trial> {
    trials
        .iter()
        .filter(|t| t.scored().is_some())
        .max_by(|a, b| {
            let (sa, sb) = (a.scored().unwrap(), b.scored().unwrap());
            sa.score
                .total_cmp(&sb.score)
                .then(sb.train_s.total_cmp(&sa.train_s))
        })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// "76.8% → 83.4% → 86.6%": how a candidate's score moved pass by pass.
fn pass_curve(scores: &[f64]) -> String {
    scores
        .iter()
        .map(|&x| pct(x))
        .collect::<Vec<_>>()
        .join(" → ")
}

impl Tuning {
    /// Field names in the order the first scored trial lists them.
    fn field_names(&self) -> Vec<String> {
        self.trials
            .iter()
            .find_map(|t| t.scored())
            .map(|s| s.fields.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }

    /// One row per trial: what it tried, what it scored (after each pass, where it had several),
    /// what it cost.
    pub fn to_markdown(&self) -> String {
        let fields = self.field_names();
        let mut o = String::new();
        let _ = write!(
            o,
            "| # | varied | lr | passes | rank | max len | score | valid JSON |"
        );
        for f in &fields {
            let _ = write!(o, " {f} |");
        }
        o.push_str(" train | eval |\n|");
        for _ in 0..(10 + fields.len()) {
            o.push_str("---|");
        }
        o.push('\n');
        for t in &self.trials {
            let r = &t.recipe;
            let mark = if Some(t.id) == self.best {
                " **best**"
            } else {
                ""
            };
            let mut passes = match t.scored() {
                Some(s) if s.best_pass > 0 && s.best_pass < r.epochs => {
                    format!("{} (best after {})", r.epochs, s.best_pass)
                }
                _ => r.epochs.to_string(),
            };
            if let Some(s) = t.scored().filter(|s| s.pass_scores.len() > 1) {
                let _ = write!(passes, ": {}", pass_curve(&s.pass_scores));
            }
            let _ = write!(
                o,
                "| {}{mark} | {} | {:e} | {passes} | {} | {} |",
                t.id, t.phase, r.lr, r.rank, r.max_len
            );
            match &t.outcome {
                Outcome::Scored(s) => {
                    let _ = write!(o, " {} | {} |", pct(s.score), pct(s.valid_json));
                    for f in &fields {
                        let v = s.fields.iter().find(|(k, _)| k == f).map(|(_, v)| *v);
                        let _ = write!(o, " {} |", v.map(pct).unwrap_or_default());
                    }
                    let _ = writeln!(o, " {:.0} s | {:.0} s |", s.train_s, s.eval_s);
                }
                Outcome::Skipped { estimate_s, left_s } => {
                    let _ = write!(
                        o,
                        " skipped: needs ≈{estimate_s:.0} s, {left_s:.0} s left |"
                    );
                    for _ in 0..(fields.len() + 3) {
                        o.push_str(" |");
                    }
                    o.push('\n');
                }
                Outcome::Failed { error } => {
                    let _ = write!(
                        o,
                        " failed: {} |",
                        error.replace('|', "/").replace('\n', " ")
                    );
                    for _ in 0..(fields.len() + 3) {
                        o.push_str(" |");
                    }
                    o.push('\n');
                }
            }
        }
        o
    }

    /// Why the winner won, in words.
    pub fn explanation(&self) -> String {
        let Some(best) = self.best_trial() else {
            return "No candidate finished: nothing to choose.".into();
        };
        let s = best.scored().unwrap();
        let r = &best.recipe;
        let scored = self.trials.iter().filter(|t| t.scored().is_some()).count();
        let skipped = self
            .trials
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Skipped { .. }))
            .count();
        let runner_up = self
            .trials
            .iter()
            .filter(|t| t.id != best.id)
            .filter_map(|t| t.scored().map(|s| (t, s.score)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let stopped = if s.best_pass > 0 && s.best_pass < r.epochs {
            format!(", its adapter after pass {}", s.best_pass)
        } else {
            String::new()
        };
        let mut o = format!(
            "Chose trial {} (peak lr {:e}, {} pass{}, rank {}, max length {}{stopped}): mean \
             field score {} on the validation records, the best of {scored} scored candidates",
            best.id,
            r.lr,
            r.epochs,
            if r.epochs == 1 { "" } else { "es" },
            r.rank,
            r.max_len,
            pct(s.score)
        );
        if let Some((t, score)) = runner_up {
            let _ = write!(
                o,
                "; the runner-up, trial {} ({}), scored {}",
                t.id,
                t.recipe.slug(),
                pct(score)
            );
        }
        if s.pass_scores.len() > 1 {
            let _ = write!(
                o,
                "; scored after each pass: {}",
                pass_curve(&s.pass_scores)
            );
        }
        o.push('.');
        if skipped > 0 {
            let _ = write!(
                o,
                " {skipped} candidate{} did not fit in the budget ({:.0} of {:.0} s used).",
                if skipped == 1 { "" } else { "s" },
                self.elapsed_s,
                self.budget_s
            );
        }
        o
    }

    /// A self-contained page: the explanation, a bar per trial and the table.
    pub fn to_html(&self) -> String {
        let esc = smolt_eval::render::esc;
        let mut b = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>smolt tune</title>\
             <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}\
             table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;\
             text-align:right}th{background:#f4f4f4}.best{background:#e8f6e8}</style></head><body>\
             <h1>smolt tune</h1>",
        );
        let _ = write!(b, "<p>{}</p>", esc(&self.explanation()));
        let scored: Vec<(&Trial, f64)> = self
            .trials
            .iter()
            .filter_map(|t| t.scored().map(|s| (t, s.score)))
            .collect();
        if !scored.is_empty() {
            let (w, bar_h) = (560.0, 22.0);
            let h = bar_h * scored.len() as f64 + 10.0;
            let _ = write!(
                b,
                "<svg width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"score per trial\">",
                w + 260.0
            );
            for (i, (t, score)) in scored.iter().enumerate() {
                let y = 5.0 + i as f64 * bar_h;
                let fill = if Some(t.id) == self.best {
                    "#2a7"
                } else {
                    "#89a"
                };
                let _ = write!(
                    b,
                    "<text x=\"0\" y=\"{}\" font-size=\"12\">#{} {}</text>\
                     <rect x=\"200\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{fill}\"/>\
                     <text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
                    y + 15.0,
                    t.id,
                    esc(&t.recipe.slug()),
                    w * score.clamp(0.0, 1.0),
                    bar_h - 6.0,
                    205.0 + w * score.clamp(0.0, 1.0),
                    y + 15.0,
                    pct(*score)
                );
            }
            b.push_str("</svg>");
        }
        b.push_str("<table><tr><th>#</th><th>varied</th><th>lr</th><th>passes</th><th>rank</th><th>max len</th><th>score</th><th>valid JSON</th><th>train s</th><th>eval s</th></tr>");
        for t in &self.trials {
            let r = &t.recipe;
            let class = if Some(t.id) == self.best {
                " class=\"best\""
            } else {
                ""
            };
            let _ = write!(
                b,
                "<tr{class}><td>{}</td><td>{}</td><td>{:e}</td><td>{}</td><td>{}</td><td>{}</td>",
                t.id,
                esc(&t.phase),
                r.lr,
                r.epochs,
                r.rank,
                r.max_len
            );
            match &t.outcome {
                Outcome::Scored(s) => {
                    let _ = write!(
                        b,
                        "<td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td></tr>",
                        pct(s.score),
                        pct(s.valid_json),
                        s.train_s,
                        s.eval_s
                    );
                }
                Outcome::Skipped { estimate_s, .. } => {
                    let _ = write!(
                        b,
                        "<td colspan=\"4\">skipped (needs ≈{estimate_s:.0} s)</td></tr>"
                    );
                }
                Outcome::Failed { error } => {
                    let _ = write!(b, "<td colspan=\"4\">failed: {}</td></tr>", esc(error));
                }
            }
        }
        b.push_str("</table></body></html>\n");
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space {
            lrs: vec![5e-4, 1e-3, 2e-4],
            epochs: vec![1, 2],
            ranks: vec![16, 32],
            max_lens: vec![640],
        }
    }

    /// A made-up response surface: best at lr 1e-3, two passes, rank 16.
    fn surface(r: &Recipe) -> f64 {
        let lr = if r.lr == 1e-3 {
            0.8
        } else if r.lr == 5e-4 {
            0.7
        } else {
            0.5
        };
        lr + 0.1 * (r.epochs == 2) as u8 as f64 - 0.05 * (r.rank == 32) as u8 as f64
    }

    #[test]
    fn coordinate_descent_finds_the_best_recipe_and_varies_one_setting_at_a_time() {
        let mut clock = 0.0;
        let t = search(
            &space(),
            1e9,
            || 0.0,
            |r, _| {
                clock += 1.0;
                Ok(Scored {
                    score: surface(r),
                    valid_json: 1.0,
                    fields: vec![("total".into(), surface(r))],
                    train_s: 10.0 * r.epochs as f64,
                    eval_s: 1.0,
                    best_pass: r.epochs,
                    // Each pass adds 0.1 up to the candidate's score.
                    pass_scores: (1..=r.epochs)
                        .map(|p| surface(r) - 0.1 * (r.epochs - p) as f64)
                        .collect(),
                })
            },
            |_| {},
        );
        let best = t.best_trial().unwrap();
        assert_eq!(
            (best.recipe.lr, best.recipe.epochs, best.recipe.rank),
            (1e-3, 2, 16)
        );
        assert!(
            t.to_markdown().contains("| 2: 80.0% → 90.0% |"),
            "{}",
            t.to_markdown()
        );
        assert!(
            t.explanation()
                .contains("scored after each pass: 80.0% → 90.0%"),
            "{}",
            t.explanation()
        );
        // 3 rates, 1 more pass count, 1 more rank; the max length has one value, already run.
        assert_eq!(t.trials.len(), 5);
        assert_eq!(clock, 5.0);
        let phases: Vec<&str> = t.trials.iter().map(|t| t.phase.as_str()).collect();
        assert_eq!(
            phases,
            [
                "learning rate",
                "learning rate",
                "learning rate",
                "passes",
                "rank"
            ]
        );
        assert!(t.explanation().contains("trial 4"), "{}", t.explanation());
        assert!(
            t.to_markdown().contains("| 4 **best** |"),
            "{}",
            t.to_markdown()
        );
    }

    #[test]
    fn candidates_that_do_not_fit_the_budget_are_skipped_not_run() {
        let now = std::cell::Cell::new(0.0);
        let mut ran = Vec::new();
        let t = search(
            &space(),
            35.0,
            || now.get(),
            |r, id| {
                ran.push(id);
                // Each pass takes 10 s, scoring 1 s.
                let train_s = 10.0 * r.epochs as f64;
                now.set(now.get() + train_s + 1.0);
                Ok(Scored {
                    score: surface(r),
                    valid_json: 1.0,
                    fields: vec![],
                    train_s,
                    eval_s: 1.0,
                    best_pass: r.epochs,
                    pass_scores: vec![],
                })
            },
            |_| {},
        );
        // 3 single-pass rates take 33 s; two passes (≈21 s) and the rest do not fit.
        assert_eq!(ran, [1, 2, 3]);
        assert!(matches!(t.trials[3].outcome, Outcome::Skipped { .. }));
        assert!(
            t.explanation().contains("did not fit"),
            "{}",
            t.explanation()
        );
        assert_eq!(t.best_trial().unwrap().recipe.lr, 1e-3);
    }

    #[test]
    fn a_failed_candidate_is_reported_and_the_search_goes_on() {
        let t = search(
            &space(),
            1e9,
            || 0.0,
            |r, _| {
                if r.rank == 32 {
                    anyhow::bail!("out of memory");
                }
                Ok(Scored {
                    score: surface(r),
                    valid_json: 1.0,
                    fields: vec![],
                    train_s: 1.0,
                    eval_s: 1.0,
                    best_pass: r.epochs,
                    pass_scores: vec![],
                })
            },
            |_| {},
        );
        assert!(t
            .trials
            .iter()
            .any(|t| matches!(&t.outcome, Outcome::Failed { error } if error.contains("memory"))));
        assert_eq!(t.best_trial().unwrap().recipe.rank, 16);
        assert!(t.to_html().contains("failed: out of memory"));
    }

    #[test]
    fn a_first_candidate_that_fails_stops_the_search() {
        let mut runs = 0;
        let t = search(
            &space(),
            1e9,
            || 0.0,
            |_, _| {
                runs += 1;
                anyhow::bail!("train.jsonl:3: not JSON")
            },
            |_| {},
        );
        assert_eq!(runs, 1);
        assert_eq!(t.trials.len(), 1);
        assert!(t.best.is_none());
        assert!(t.explanation().contains("No candidate finished"));
    }

    #[test]
    fn bad_spaces_are_refused() {
        let mut s = space();
        s.lrs.clear();
        assert!(s.check().is_err());
        let mut s = space();
        s.lrs = vec![2.0];
        assert!(s.check().is_err());
        assert!(space().check().is_ok());
    }
}
