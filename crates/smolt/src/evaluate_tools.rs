//! Running a model over function-calling records and scoring its calls as the Berkeley
//! Function Calling Leaderboard does: the loop behind `smolt eval` on a tool task.
//!
//! Each record is asked exactly as training taught it (its prompt comes from the task layer,
//! [`smolt_task::tools`]) and answered under the constraint built from its own tools, the one
//! the server uses for `tools`: every call names a listed tool and its arguments match that
//! tool's schema. The answer is read back with the same spec and checked by
//! [`smolt_eval::tool_calls`].

use std::time::Instant;

use smolt_constrain::{ConstraintEngine, ConstraintSpec, ToolCall, ToolCallSpec, ToolOutput};
use smolt_eval::tool_calls::{
    Answer, Call, Expected, ExpectedCall, Function, ToolCallReport, ToolEvaluator, ToolSample,
};
use smolt_eval::Timing;
use smolt_model::Model;
use smolt_task::tools::{ToolAnswer, ToolRecord};
use smolt_task::{prompt, ChatFormat, Message, Role, TextExample};
use smolt_tokenizer::Tokenizer;

/// How to ask the model about each tool record.
pub struct ToolEvalRun<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    /// Lays calls out as the task's answers are (its `json_style`).
    pub engine: &'a std::sync::Arc<ConstraintEngine>,
    /// The chat format the records were rendered with: it decides the call syntax.
    pub chat: &'a ChatFormat,
    /// Solved examples shown before each request as earlier turns of the conversation (the
    /// few-shot baseline); empty for a fine-tuned model. See [`ToolEvalRun::shots_for`].
    pub shots: Vec<ToolRecord>,
    /// Most answer tokens per record.
    pub max_tokens: usize,
    /// Longest prompt in tokens; longer ones are cut in the middle as training cuts them.
    pub prompt_budget: usize,
}

/// What a run produced.
pub struct ToolEvalOutcome {
    pub report: ToolCallReport,
    pub evaluator: ToolEvaluator,
    /// Outputs that hit `max_tokens` unfinished (they count as malformed).
    pub truncated_outputs: usize,
    /// Prompts that had to be cut to fit `prompt_budget`.
    pub cut_prompts: usize,
}

impl ToolEvalOutcome {
    /// `eval.json`, `report.html`, `report.txt` and `predictions.jsonl` into `dir`.
    pub fn write_dir(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let fail = || format!("cannot write the report to {}", dir.display());
        self.report.write_dir(dir).with_context(fail)?;
        self.evaluator
            .write_predictions(&dir.join("predictions.jsonl"))
            .with_context(fail)
    }
}

/// Every tool example in `path` whose answer the decoding constraint could not produce
/// ([`smolt_task::check::unreachable_tool_answers`]); empty for other files. What `smolt data
/// check` reports and `smolt train` refuses.
pub fn unreachable_answers(
    path: &std::path::Path,
    task: &smolt_task::Task,
    tok: &std::sync::Arc<Tokenizer>,
) -> anyhow::Result<Vec<smolt_task::DataError>> {
    if !smolt_task::record::is_tool_file(path) {
        return Ok(Vec::new());
    }
    let (_, examples) = smolt_task::read_jsonl(path, task, tok.as_ref())?;
    let chat = task.chat_format(tok.as_ref())?;
    let engine = crate::evaluate::engine_for_task(std::sync::Arc::clone(tok), task)?;
    Ok(smolt_task::check::unreachable_tool_answers(
        &examples, &engine, &chat,
    ))
}

/// `k` solved examples for the few-shot baseline: per kind of answer (each tool, and no
/// call) the shortest request among the first `8k` records, until `k` are taken, so the
/// shots show different tools; in file order.
pub fn pick_tool_shots(pool: &[TextExample], k: usize) -> Vec<ToolRecord> {
    let window = &pool[..pool.len().min(8 * k)];
    let kind = |r: &ToolRecord| match &r.answer {
        Some(ToolAnswer::Calls(c)) => c.first().map_or(String::new(), |c| c.name.clone()),
        _ => String::new(),
    };
    let mut idx: Vec<usize> = (0..window.len())
        .filter(|&i| window[i].tools.is_some())
        .collect();
    idx.sort_by_key(|&i| (window[i].tools.as_ref().map_or(0, |r| r.request().len()), i));
    let mut kinds = std::collections::HashSet::new();
    let mut chosen: Vec<usize> = Vec::new();
    for &i in &idx {
        if chosen.len() < k && kinds.insert(kind(window[i].tools.as_ref().expect("filtered"))) {
            chosen.push(i);
        }
    }
    for &i in &idx {
        if chosen.len() < k && !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen
        .into_iter()
        .filter_map(|i| window[i].tools.clone())
        .collect()
}

/// The functions a record offers, as the scorer reads them.
pub fn functions(spec: &ToolCallSpec) -> Vec<Function> {
    spec.tools()
        .tools()
        .iter()
        .map(|t| Function {
            name: t.name.clone(),
            parameters: t.parameters.clone(),
        })
        .collect()
}

/// What the record says the model should do.
pub fn expected(record: &ToolRecord) -> Expected {
    match &record.answer {
        Some(ToolAnswer::Calls(calls)) => Expected::Calls(
            calls
                .iter()
                .map(|c| ExpectedCall::exact(&Call::new(c.name.clone(), c.arguments.clone())))
                .collect(),
        ),
        Some(ToolAnswer::Text(_)) | None => Expected::NoCall,
    }
}

/// An output read back with the spec the constraint was built from.
pub fn read_answer(spec: &ToolCallSpec, output: &str) -> Answer {
    match spec.parse(output) {
        Ok(ToolOutput::Text(t)) => Answer::Text(t),
        Ok(ToolOutput::Calls(calls)) => Answer::Calls(calls.into_iter().map(to_call).collect()),
        Err(e) => Answer::Malformed(e.to_string()),
    }
}

fn to_call(c: ToolCall) -> Call {
    Call::new(c.name, c.arguments)
}

impl ToolEvalRun<'_> {
    /// The solved examples for `record`, as conversation turns: those of [`Self::shots`]
    /// whose calls use only tools the record lists (a shot calling a tool the prompt does not
    /// offer would teach the wrong thing), in order; a shot without a call always fits.
    pub fn shots_for(&self, record: &ToolRecord) -> Vec<Message> {
        let mut out = Vec::new();
        for shot in &self.shots {
            let Some(answer) = &shot.answer else { continue };
            let reply = match answer {
                ToolAnswer::Calls(calls) => {
                    if calls
                        .iter()
                        .any(|c| record.spec.tools().get(&c.name).is_none())
                    {
                        continue;
                    }
                    let calls = calls
                        .iter()
                        .map(|c| {
                            serde_json::json!({"type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}})
                        })
                        .collect();
                    Message::calls("", calls)
                }
                ToolAnswer::Text(t) => Message::new(Role::Assistant, t.clone()),
            };
            out.extend(shot.context.iter().cloned());
            out.push(reply);
        }
        out
    }

    /// Generates an answer for every tool example (from [`smolt_task::read_jsonl`]) and scores
    /// it. `progress(done, passed_so_far)` is called after each.
    pub fn run(
        &self,
        examples: &[TextExample],
        label: &str,
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<ToolEvalOutcome> {
        let mut evaluator = ToolEvaluator::new();
        let (mut truncated_outputs, mut cut_prompts, mut passed) = (0, 0, 0);
        for (i, ex) in examples.iter().enumerate() {
            let Some(record) = &ex.tools else {
                anyhow::bail!("{}: not a tool record", ex.source);
            };
            let spec = self.chat.tool_spec(&record.spec);
            let text = if self.shots.is_empty() {
                ex.prompt.clone()
            } else {
                let mut context = self.shots_for(record);
                context.extend(record.context.iter().cloned());
                self.chat
                    .prompt_with_tools(&context, Some(&spec))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ex.source))?
            };
            let (ids, cut) = prompt::encode_prompt(self.tokenizer, &text, self.prompt_budget);
            cut_prompts += cut as usize;
            let constraint = if spec.allows_calls() {
                Some(
                    self.engine
                        .compile(&ConstraintSpec::ToolCalls(spec.clone()))
                        .map_err(|e| {
                            anyhow::anyhow!("{}: the tools do not compile: {e}", ex.source)
                        })?,
                )
            } else {
                None
            };
            let opts = smolt_decode::GenerateOptions {
                max_new_tokens: self.max_tokens,
                ..Default::default()
            };
            let start = Instant::now();
            let out = smolt_decode::answer(self.model, &ids, constraint.as_ref(), &opts)?;
            let secs = start.elapsed().as_secs_f64();
            let text = self.tokenizer.decode(&out.ids, true);
            let mut answer = read_answer(&spec, &text);
            // A text answer cut short is still an answer without a call; a call cut short is
            // no call at all.
            if out.ending == smolt_decode::Ending::Truncated {
                truncated_outputs += 1;
                if !matches!(answer, Answer::Text(_)) {
                    answer = Answer::Malformed(format!(
                        "cut off by the token limit ({} tokens) unfinished",
                        self.max_tokens
                    ));
                }
            }
            let functions = functions(&spec);
            let r = evaluator.add(ToolSample {
                functions: &functions,
                answer,
                expected: expected(record),
                request: record.request(),
                output: &text,
                source: Some(ex.source.to_string()),
                timing: Some(Timing {
                    latency_s: secs,
                    tokens: out.ids.len(),
                }),
            });
            passed += r.passed as usize;
            progress(i + 1, passed);
        }
        Ok(ToolEvalOutcome {
            report: evaluator.finish(label),
            evaluator,
            truncated_outputs,
            cut_prompts,
        })
    }
}
