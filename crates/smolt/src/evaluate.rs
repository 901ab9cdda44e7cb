//! Running a model over labelled records and scoring its answers field by field: the loop
//! behind `smolt eval` and `smolt demo`.
//!
//! Prompts come from the task ([`smolt_task::Task`]), the same code training uses, so a
//! fine-tuned model is asked exactly what it was taught with and a few-shot baseline differs
//! only by its solved examples.

use std::time::Instant;

use smolt_constrain::Constraint;
use smolt_data::Record;
use smolt_eval::{EvalConfig, EvalReport, Evaluator, Sample};
use smolt_model::Model;
use smolt_task::{prompt, Task};
use smolt_tokenizer::Tokenizer;

/// How to ask the model about each record.
pub struct EvalRun<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    /// Decoding constraint (the answer's JSON Schema); `None` decodes freely.
    pub constraint: Option<&'a Constraint>,
    /// The task: its template renders each record's input.
    pub task: &'a Task,
    /// Solved examples put before each query: (input, answer text). Empty for a fine-tuned
    /// model; K of them for the few-shot baseline.
    pub shots: Vec<(String, String)>,
    /// Most answer tokens per record.
    pub max_tokens: usize,
    /// Longest prompt in tokens; longer ones are cut in the middle as training cuts them.
    pub prompt_budget: usize,
}

/// What a run produced besides the report.
pub struct EvalOutcome {
    pub report: EvalReport,
    /// Outputs that hit `max_tokens` unfinished (they count as invalid in the report).
    pub truncated_outputs: usize,
    /// Prompts that had to be cut to fit `prompt_budget`.
    pub cut_prompts: usize,
    /// Every record's comparison, in input order.
    pub records: Vec<smolt_eval::RecordResult>,
    /// Per record, each top-level field's confidence (the lowest probability of a token the
    /// model chose freely in its value: [`smolt_decode::confidence`]); empty when decoding
    /// was not constrained.
    pub confidence: Vec<Vec<(String, f32)>>,
}

impl EvalOutcome {
    /// `eval.json`, `report.html`, `report.txt` and `predictions.jsonl` (every answer next to
    /// its truth) into `dir`.
    pub fn write_dir(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let fail = || format!("cannot write the report to {}", dir.display());
        self.report.write_dir(dir).with_context(fail)?;
        let path = dir.join("predictions.jsonl");
        smolt_eval::write_predictions(&path, &self.records).with_context(fail)?;
        if self.confidence.iter().any(|c| !c.is_empty()) {
            add_confidence(&path, &self.confidence).with_context(fail)?;
        }
        Ok(())
    }
}

/// Adds each record's `"confidence": {field: p}` to its line of predictions.jsonl. Done here,
/// not by the eval crate: confidence comes from decoding, which evaluation knows nothing of.
fn add_confidence(path: &std::path::Path, confidence: &[Vec<(String, f32)>]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len());
    for (line, conf) in text.lines().zip(confidence) {
        let mut v: serde_json::Value = serde_json::from_str(line)?;
        let fields: serde_json::Map<String, serde_json::Value> = conf
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    serde_json::json!((f64::from(*p) * 1e4).round() / 1e4),
                )
            })
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("confidence".into(), fields.into());
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

impl EvalRun<'_> {
    /// The exact token ids the model is given for `input`.
    pub fn prompt_ids(&self, input: &str) -> (Vec<u32>, bool) {
        let shots: Vec<(&str, &str)> = self
            .shots
            .iter()
            .map(|(i, a)| (i.as_str(), a.as_str()))
            .collect();
        let text = self.task.few_shot_prompt(&shots, input);
        prompt::encode_prompt(self.tokenizer, &text, self.prompt_budget)
    }

    /// Generates an answer for every record and scores it. `progress(done, last_score)` is
    /// called after each record.
    pub fn run(
        &self,
        records: &[Record],
        config: EvalConfig,
        label: &str,
        mut progress: impl FnMut(usize, f64),
    ) -> anyhow::Result<EvalOutcome> {
        let mut evaluator = Evaluator::new(config);
        let (mut truncated_outputs, mut cut_prompts) = (0, 0);
        let mut confidence = Vec::with_capacity(records.len());
        let shared = self.shared_prefix()?;
        for (i, rec) in records.iter().enumerate() {
            let (ids, cut) = self.prompt_ids(&rec.input);
            cut_prompts += cut as usize;
            let start = Instant::now();
            let out = self.generate(&ids, shared.as_ref())?;
            let secs = start.elapsed().as_secs_f64();
            truncated_outputs += (out.ending == smolt_decode::Ending::Truncated) as usize;
            let text = self.tokenizer.decode(&out.ids, true);
            let guard = out.stats.as_ref().map(|s| s.guard).unwrap_or_default();
            let bytes: Vec<Vec<u8>> = out
                .ids
                .iter()
                .map(|&id| self.tokenizer.token_bytes(id))
                .collect();
            confidence.push(smolt_decode::field_confidence(&bytes, &out.probs));
            let r = evaluator.add(
                Sample::new(&text, &rec.output)
                    .input(&rec.input)
                    .timing(secs, out.ids.len())
                    .decoding(smolt_eval::Decoding {
                        truncated: out.ending == smolt_decode::Ending::Truncated,
                        numbers_capped: guard.numbers_capped,
                        loops_stopped: guard.loops_stopped,
                        copies_held: guard.copies_held,
                    }),
            );
            progress(i + 1, r.score);
        }
        let records = evaluator.records().to_vec();
        let mut report = evaluator.finish(label);
        if confidence.iter().any(|c| !c.is_empty()) {
            report.calibration = Some(smolt_eval::calibration::calibrate(&records, &confidence));
        }
        Ok(EvalOutcome {
            report,
            records,
            confidence,
            truncated_outputs,
            cut_prompts,
        })
    }

    /// The solved examples' part of the prompt run through the model once: every few-shot
    /// prompt starts with the same tokens, so each record copies this cache instead of
    /// recomputing them (they are most of a few-shot prompt). `None` without shots.
    fn shared_prefix(&self) -> anyhow::Result<Option<SharedPrefix>> {
        if self.shots.is_empty() {
            return Ok(None);
        }
        let (ids, _) = self.prompt_ids("");
        let mut cache = self.model.new_cache();
        self.model
            .forward(&ids, &mut cache, smolt_model::Logits::None)?;
        Ok(Some(SharedPrefix { ids, cache }))
    }

    /// Greedy, under the constraint when there is one; from the shared prefix's cache when the
    /// prompt starts with it (as far as the tokens agree — the record's text can merge with the
    /// last tokens of the prefix — in whole `PREFIX_ALIGN` blocks).
    fn generate(
        &self,
        prompt: &[u32],
        shared: Option<&SharedPrefix>,
    ) -> anyhow::Result<smolt_decode::Answer> {
        let opts = smolt_decode::GenerateOptions {
            max_new_tokens: self.max_tokens,
            ..Default::default()
        };
        let (cache, start) = match shared {
            Some(p) => {
                let same = reuse_len(prompt, &p.ids);
                let mut cache = p.cache.clone();
                cache.truncate(same);
                (cache, same)
            }
            None => (self.model.new_cache(), 0),
        };
        smolt_decode::answer_in(self.model, cache, &prompt[start..], self.constraint, &opts)
    }
}

/// Token ids every prompt of a run starts with, and the model's cache after them.
struct SharedPrefix {
    ids: Vec<u32>,
    cache: smolt_model::KvCache,
}

/// How many leading elements `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many leading positions of `prompt` can come from the cache of `prefix`: the tokens
/// both share, cut to whole `PREFIX_ALIGN` blocks with at least `PREFIX_MIN_FEED` left to
/// feed, so that the answer is the one the whole prompt gives, bit for bit.
fn reuse_len(prompt: &[u32], prefix: &[u32]) -> usize {
    common_prefix(prompt, prefix).min(prompt.len().saturating_sub(smolt_model::PREFIX_MIN_FEED))
        / smolt_model::PREFIX_ALIGN
        * smolt_model::PREFIX_ALIGN
}

/// A constraint engine whose JSON output is laid out as the task's answers are.
pub fn engine_for_task(
    tokenizer: std::sync::Arc<Tokenizer>,
    task: &Task,
) -> anyhow::Result<std::sync::Arc<smolt_constrain::ConstraintEngine>> {
    Ok(smolt_constrain::ConstraintEngine::with_json_layout(
        tokenizer,
        task.json_layout(),
    )?)
}

/// `k` solved examples for a few-shot prompt, as (input, answer text): the shortest inputs
/// among the first `4k` records, in file order. Short shots keep the prompt (and so the
/// baseline's prefill time) small; drawing from a window rather than the whole file keeps the
/// choice stable when the file grows.
pub fn pick_shots(records: &[Record], k: usize, task: &Task) -> Vec<(String, String)> {
    let window = &records[..records.len().min(4 * k)];
    let mut idx: Vec<usize> = (0..window.len()).collect();
    idx.sort_by_key(|&i| (window[i].input.len(), i));
    idx.truncate(k);
    idx.sort_unstable();
    idx.into_iter()
        .map(|i| (window[i].input.clone(), task.answer_text(&window[i].output)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn confidence_joins_each_prediction_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.jsonl");
        std::fs::write(&p, "{\"index\":0,\"raw\":\"x\"}\n{\"index\":1}\n").unwrap();
        let conf = vec![
            vec![("total".to_string(), 0.123456f32), ("a".to_string(), 1.0)],
            vec![],
        ];
        add_confidence(&p, &conf).unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["raw"], "x");
        assert_eq!(lines[0]["confidence"], json!({"total": 0.1235, "a": 1.0}));
        assert_eq!(lines[1]["confidence"], json!({}));
    }

    fn rec(input: &str, total: f64) -> Record {
        Record {
            input: input.into(),
            output: json!({"total": total}),
        }
    }

    #[test]
    fn shots_are_the_shortest_of_a_window_in_file_order() {
        let recs = vec![
            rec("long long long", 1.0),
            rec("mid mid", 2.0),
            rec("s", 3.0),
            rec("ss", 4.0),
            rec("x", 5.0), // outside the window of 4 for k = 1... but inside for k = 2
        ];
        let one = pick_shots(&recs, 1, &Task::default());
        assert_eq!(one, vec![("s".to_string(), "{\"total\":3.0}".to_string())]);
        let two = pick_shots(&recs, 2, &Task::default());
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].0, "s");
        assert_eq!(two[1].0, "x");
        assert!(pick_shots(&recs, 0, &Task::default()).is_empty());
        assert_eq!(pick_shots(&recs[..1], 3, &Task::default()).len(), 1);
    }

    /// A few-shot answer computed from the shared prefix's cache equals the one computed from
    /// the whole prompt, on the real model, free and under a schema.
    #[test]
    fn shared_prefix_gives_the_same_answers() {
        let path = smolt_hub::model_for_tests().expect("this test needs Gemma 3 270M");
        let model = Model::load(&path, smolt_model::Precision::Fast).unwrap();
        let tok = std::sync::Arc::new(Tokenizer::from_gguf(model.gguf()).unwrap());
        let synth = smolt_data::receipts(&smolt_data::SynthConfig {
            n: 3,
            seed: 5,
            ..Default::default()
        });
        let fields = ["retailer", "total"];
        let recs: Vec<Record> = synth
            .into_iter()
            .map(|r| Record {
                output: smolt_data::select_value(&r.output, &fields),
                input: r.input,
            })
            .collect();
        let schema = smolt_data::select_schema(&smolt_data::receipts_schema(), &fields).unwrap();
        let task = Task::default();
        let engine = engine_for_task(tok.clone(), &task).unwrap();
        let constraint = engine
            .compile(&smolt_constrain::ConstraintSpec::JsonSchema(schema))
            .unwrap();
        for c in [None, Some(&constraint)] {
            let run = EvalRun {
                model: &model,
                tokenizer: &tok,
                constraint: c,
                task: &task,
                shots: pick_shots(&recs[..2], 2, &task),
                max_tokens: 16,
                prompt_budget: 2048,
            };
            let shared = run.shared_prefix().unwrap().expect("shots give a prefix");
            for r in &recs[2..3] {
                let (ids, _) = run.prompt_ids(&r.input);
                assert!(common_prefix(&ids, &shared.ids) > ids.len() / 2);
                // The last position's logits both ways, from the reused part of the cache as
                // `generate` cuts it: bit for bit the same.
                let full = model
                    .forward(&ids, &mut model.new_cache(), smolt_model::Logits::Last)
                    .unwrap();
                let same = reuse_len(&ids, &shared.ids);
                assert!(same >= smolt_model::PREFIX_ALIGN);
                let mut cache = shared.cache.clone();
                cache.truncate(same);
                let part = model
                    .forward(&ids[same..], &mut cache, smolt_model::Logits::Last)
                    .unwrap();
                assert!(full
                    .iter()
                    .zip(&part)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
                let whole = run.generate(&ids, None).unwrap();
                let reused = run.generate(&ids, Some(&shared)).unwrap();
                assert!(!whole.ids.is_empty());
                assert_eq!(whole.ids, reused.ids, "constrained: {}", c.is_some());
                assert_eq!(whole.ending, reused.ending);
            }
        }
    }
}
