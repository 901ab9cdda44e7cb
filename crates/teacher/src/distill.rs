//! Distillation: raw inputs → `{input, output}` training records labelled by a teacher model.
//!
//! Each input is put into the task's prompt template and sent as one user message, with the
//! task's JSON Schema as `response_format` (`{"type": "json_schema", …, "strict": true}`).
//! Every answer is checked against the schema (the same [`AnswerSchema`] that checks training
//! data); an answer that is not JSON or violates the schema is asked again with the next seed
//! (and at least `retry_temperature`), up to `max_retries` times, then the sample is dropped and counted. With `samples` > 1 each
//! input is asked that many times (each with its own seed) and the report gives the share of
//! inputs whose valid samples agree, per field; the record keeps the first valid sample.
//!
//! Requests go through the [`Cache`] first, so a rerun with the same settings sends nothing and
//! a killed run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};
use smolt_task::{AnswerSchema, Task};

use crate::cache::{key_of, Cache};
use crate::client::{Client, Completion, Failure, TransportStats};

/// How to ask.
#[derive(Clone, Debug)]
pub struct DistillConfig {
    /// The `model` field of every request.
    pub model: String,
    /// Answers asked per input (each with its own seed); 2 or more measures agreement.
    pub samples: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Re-asks of an input whose answer is not valid, before the sample is dropped.
    pub max_retries: u32,
    pub temperature: f64,
    /// The least temperature of a re-ask after an invalid answer: at temperature 0 a
    /// deterministic teacher would give the same invalid answer again.
    pub retry_temperature: f64,
    /// `max_tokens` of each request (`None`: the endpoint's default).
    pub max_tokens: Option<u32>,
    /// The first sample's first try uses this seed; each sample and each re-ask its own.
    pub seed: u64,
}

/// The teacher: the endpoint and the cache in front of it.
pub struct Teacher {
    pub client: Client,
    pub cache: Cache,
}

/// One raw input, with the line it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// 1-based line number in the inputs file.
    pub line: usize,
    pub text: String,
}

/// Reads an inputs file: one JSON string or `{"input": string, …}` object per line (other
/// keys, such as an `output` a synthetic set carries, are ignored). Every bad line is reported
/// at once, with its number.
pub fn read_inputs(path: &Path) -> anyhow::Result<Vec<Input>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(Value::String(s)) => out.push(Input {
                line: i + 1,
                text: s,
            }),
            Ok(Value::Object(o)) => match o.get("input") {
                Some(Value::String(s)) => out.push(Input {
                    line: i + 1,
                    text: s.clone(),
                }),
                _ => errors.push(format!("{at}: no \"input\" string")),
            },
            Ok(_) => errors.push(format!("{at}: expected {{\"input\": string}} or a string")),
            Err(e) => errors.push(format!("{at}: not valid JSON ({e})")),
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(20);
        anyhow::bail!("{n} bad line(s):\n  {}", errors.join("\n  "));
    }
    if out.is_empty() {
        anyhow::bail!("{} holds no inputs", path.display());
    }
    Ok(out)
}

/// The request for one try of one sample of a prompt.
pub fn request_body(
    prompt: &str,
    schema: &Value,
    cfg: &DistillConfig,
    sample: usize,
    attempt: u32,
) -> Value {
    let mut body = json!({
        "model": cfg.model,
        "messages": [{"role": "user", "content": prompt}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": true}
        },
        "temperature": if attempt == 0 {
            cfg.temperature
        } else {
            cfg.temperature.max(cfg.retry_temperature)
        },
        "seed": cfg.seed + 1000 * sample as u64 + u64::from(attempt),
    });
    if let Some(n) = cfg.max_tokens {
        body["max_tokens"] = json!(n);
    }
    body
}

/// Where a run stands, after each finished sample.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Samples finished, of `total` (inputs × samples).
    pub done: usize,
    pub total: usize,
    /// Finished samples with a valid answer.
    pub valid: usize,
    /// Finished samples dropped.
    pub dropped: usize,
}

/// Token counts from the responses' `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

impl Tokens {
    fn add(&mut self, c: &Completion) {
        self.prompt += c.prompt_tokens;
        self.completion += c.completion_tokens;
    }
}

/// How often the valid samples of one input agree on a field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldAgreement {
    pub field: String,
    /// Share of compared inputs whose samples all give the same value (numbers by value).
    pub agree: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// Inputs with two or more valid samples.
    pub compared: usize,
    /// Share of those whose samples agree on every field.
    pub all_fields: f64,
    pub fields: Vec<FieldAgreement>,
}

/// An input that got no valid answer, and the last reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dropped {
    pub line: usize,
    pub reason: String,
}

/// What a run cost and gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistillReport {
    pub teacher: String,
    pub model: String,
    pub inputs: usize,
    pub samples: usize,
    /// Inputs written with a valid answer.
    pub labelled: usize,
    /// Inputs with no valid answer in any sample.
    pub dropped: usize,
    /// Samples with a valid answer, and without one after every re-ask.
    pub valid_samples: usize,
    pub dropped_samples: usize,
    /// Re-asks after an answer that was not JSON or violated the schema.
    pub retried: usize,
    /// Answers received from the teacher in this run, and answers read from the cache.
    pub answers_received: usize,
    pub answers_cached: usize,
    /// Tokens of the answers received in this run (what this run cost) …
    pub tokens: Tokens,
    /// … and of the answers read from the cache (what earlier runs paid).
    pub tokens_cached: Tokens,
    pub transport: TransportStats,
    pub wall_s: f64,
    pub agreement: Option<Agreement>,
    pub dropped_inputs: Vec<Dropped>,
}

impl DistillReport {
    /// The table `smolt distill` prints.
    pub fn to_table(&self) -> String {
        let t = &self.transport;
        let mut s = String::new();
        let mut row = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
        row("teacher", format!("{} ({})", self.teacher, self.model));
        row(
            "inputs",
            format!("{} × {} sample(s)", self.inputs, self.samples),
        );
        row(
            "labelled / dropped",
            format!(
                "{} / {} ({:.1}% labelled)",
                self.labelled,
                self.dropped,
                100.0 * self.labelled as f64 / self.inputs.max(1) as f64
            ),
        );
        row(
            "samples valid / dropped",
            format!("{} / {}", self.valid_samples, self.dropped_samples),
        );
        row("invalid answers re-asked", self.retried.to_string());
        row(
            "answers received / cached",
            format!("{} / {}", self.answers_received, self.answers_cached),
        );
        row(
            "HTTP requests",
            format!(
                "{} ({} timeouts, {} × 429, {} × 5xx, {} dropped connections, {} bad bodies, {} refused)",
                t.requests,
                t.timeouts,
                t.rate_limited,
                t.server_errors,
                t.connection_errors,
                t.bad_responses,
                t.refused
            ),
        );
        row(
            "tokens in / out",
            format!(
                "{} / {} (cached: {} / {})",
                self.tokens.prompt,
                self.tokens.completion,
                self.tokens_cached.prompt,
                self.tokens_cached.completion
            ),
        );
        row(
            "wall time",
            format!(
                "{:.1} s ({:.2} s per received answer)",
                self.wall_s,
                self.wall_s / self.answers_received.max(1) as f64
            ),
        );
        if let Some(a) = &self.agreement {
            row(
                "samples agree (all fields)",
                format!("{:.1}% of {} inputs", 100.0 * a.all_fields, a.compared),
            );
            for f in &a.fields {
                row(
                    &format!("  {}", f.field),
                    format!("{:.1}%", 100.0 * f.agree),
                );
            }
        }
        for d in self.dropped_inputs.iter().take(5) {
            s.push_str(&format!("dropped line {}: {}\n", d.line, d.reason));
        }
        if self.dropped_inputs.len() > 5 {
            s.push_str(&format!(
                "… and {} more dropped (all in the JSON report)\n",
                self.dropped_inputs.len() - 5
            ));
        }
        s
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_atomic(path, text.as_bytes())
    }
}

/// A labelled record.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    pub input: String,
    pub output: Value,
}

pub struct Outcome {
    pub labelled: Vec<Labelled>,
    pub report: DistillReport,
}

impl Outcome {
    /// Writes the training file, `{"input", "output"}` per line in input order, whole or not
    /// at all.
    pub fn write_labelled(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = String::new();
        for r in &self.labelled {
            text.push_str(&json!({"input": r.input, "output": r.output}).to_string());
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// One sample of one input, finished.
#[derive(Default)]
struct SampleResult {
    answer: Option<Value>,
    /// Why the last try was not valid.
    reason: String,
    retried: usize,
    received: usize,
    cached: usize,
    tokens: Tokens,
    tokens_cached: Tokens,
    transport: TransportStats,
}

/// Why an answer is not a valid one, or its JSON.
fn check_answer(c: &Completion, schema: &AnswerSchema) -> Result<Value, String> {
    let Some(text) = &c.content else {
        return Err(match &c.refusal {
            Some(r) => format!("the teacher refused: {r}"),
            None => "the answer has no content".to_string(),
        });
    };
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
        let cut = if c.finish_reason.as_deref() == Some("length") {
            " — cut off by the token limit"
        } else {
            ""
        };
        format!("the answer is not JSON ({e}){cut}")
    })?;
    let problems = schema.check(Some(&v));
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(problems.join("; "))
    }
}

fn ask_sample(
    teacher: &Teacher,
    prompt: &str,
    schema_json: &Value,
    schema: &AnswerSchema,
    cfg: &DistillConfig,
    sample: usize,
) -> Result<SampleResult, String> {
    let mut r = SampleResult::default();
    for attempt in 0..=cfg.max_retries {
        if attempt > 0 {
            r.retried += 1;
        }
        let body = request_body(prompt, schema_json, cfg, sample, attempt);
        let key = key_of(&body);
        // A cached line that is not a completion (edited by hand) is asked again.
        let cached = teacher
            .cache
            .get(&key)
            .and_then(|v| Completion::parse(&v).ok());
        let completion = match cached {
            Some(c) => {
                r.cached += 1;
                r.tokens_cached.add(&c);
                c
            }
            None => match teacher.client.post(&body, &mut r.transport) {
                Ok(v) => {
                    teacher.cache.put(&key, &v).map_err(|e| format!("{e:#}"))?;
                    let c = Completion::parse(&v).expect("the client checks completions");
                    r.received += 1;
                    r.tokens.add(&c);
                    c
                }
                Err(Failure::Fatal(m)) => return Err(m),
                Err(Failure::GaveUp(m)) => {
                    r.reason = m;
                    return Ok(r);
                }
            },
        };
        match check_answer(&completion, schema) {
            Ok(v) => {
                r.answer = Some(v);
                return Ok(r);
            }
            Err(why) => r.reason = why,
        }
    }
    r.reason = format!("{} (after {} tries)", r.reason, cfg.max_retries + 1);
    Ok(r)
}

/// The fields agreement is measured on: the schema's properties, else the answers' keys.
fn agreement(schema: &Value, per_input: &[Vec<&Value>]) -> Option<Agreement> {
    let compared: Vec<&Vec<&Value>> = per_input.iter().filter(|s| s.len() >= 2).collect();
    if compared.is_empty() {
        return None;
    }
    let mut fields: Vec<String> = match schema.get("properties").and_then(Value::as_object) {
        Some(p) => p.keys().cloned().collect(),
        None => Vec::new(),
    };
    if fields.is_empty() {
        for s in &compared {
            for a in s.iter() {
                for k in a.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !fields.contains(k) {
                        fields.push(k.clone());
                    }
                }
            }
        }
    }
    let same = |s: &[&Value], f: Option<&str>| {
        let pick = |a: &Value| match f {
            Some(k) => a.get(k).cloned().unwrap_or(Value::Null),
            None => a.clone(),
        };
        let first = pick(s[0]);
        s[1..]
            .iter()
            .all(|a| smolt_eval::normalize::json_equal(&first, &pick(a)))
    };
    let n = compared.len() as f64;
    let share = |f: Option<&str>| compared.iter().filter(|s| same(s, f)).count() as f64 / n;
    Some(Agreement {
        compared: compared.len(),
        all_fields: share(None),
        fields: fields
            .iter()
            .map(|f| FieldAgreement {
                field: f.clone(),
                agree: share(Some(f)),
            })
            .collect(),
    })
}

/// Labels `inputs` with the teacher. Stops early (with an error) only when every request
/// would fail alike: a wrong key, URL or model, or a cache that cannot be written.
pub fn distill(
    teacher: &Teacher,
    task: &Task,
    inputs: &[Input],
    cfg: &DistillConfig,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<Outcome> {
    let schema_path = task
        .schema
        .as_deref()
        .context("the task names no schema: distillation asks for answers in the task's schema (set `schema` in the task file)")?;
    let schema_json = smolt_task::schema::read_schema(schema_path)?;
    let schema = AnswerSchema::from_value(schema_path, &schema_json)?;
    if cfg.samples == 0 || cfg.concurrency == 0 {
        anyhow::bail!("samples and concurrency must be at least 1");
    }
    let start = Instant::now();
    let total = inputs.len() * cfg.samples;
    let prompts: Vec<String> = inputs.iter().map(|i| task.prompt(&i.text)).collect();
    let results: Mutex<Vec<Option<SampleResult>>> = Mutex::new((0..total).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let (done, valid, dropped) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let stop = AtomicBool::new(false);
    let fatal: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency.min(total) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= total {
                        break;
                    }
                    let (i, sample) = (j / cfg.samples, j % cfg.samples);
                    match ask_sample(teacher, &prompts[i], &schema_json, &schema, cfg, sample) {
                        Ok(r) => {
                            let ok = r.answer.is_some();
                            results.lock().unwrap_or_else(|p| p.into_inner())[j] = Some(r);
                            let counter = if ok { &valid } else { &dropped };
                            counter.fetch_add(1, Ordering::Relaxed);
                            progress(Progress {
                                done: done.fetch_add(1, Ordering::Relaxed) + 1,
                                total,
                                valid: valid.load(Ordering::Relaxed),
                                dropped: dropped.load(Ordering::Relaxed),
                            });
                        }
                        Err(m) => {
                            stop.store(true, Ordering::Relaxed);
                            fatal
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(m);
                        }
                    }
                }
            });
        }
    });
    if let Some(m) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        anyhow::bail!("{m} (answers received so far are kept in the cache)");
    }
    let results: Vec<SampleResult> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every sample ran"))
        .collect();

    let mut report = DistillReport {
        teacher: teacher.client.endpoint().to_string(),
        model: cfg.model.clone(),
        inputs: inputs.len(),
        samples: cfg.samples,
        labelled: 0,
        dropped: 0,
        valid_samples: 0,
        dropped_samples: 0,
        retried: 0,
        answers_received: 0,
        answers_cached: 0,
        tokens: Tokens::default(),
        tokens_cached: Tokens::default(),
        transport: TransportStats::default(),
        wall_s: 0.0,
        agreement: None,
        dropped_inputs: Vec::new(),
    };
    let mut labelled = Vec::new();
    let mut valid_per_input = Vec::new();
    for (input, samples) in inputs.iter().zip(results.chunks(cfg.samples)) {
        for r in samples {
            report.retried += r.retried;
            report.answers_received += r.received;
            report.answers_cached += r.cached;
            report.tokens.prompt += r.tokens.prompt;
            report.tokens.completion += r.tokens.completion;
            report.tokens_cached.prompt += r.tokens_cached.prompt;
            report.tokens_cached.completion += r.tokens_cached.completion;
            report.transport.add(&r.transport);
        }
        let answers: Vec<&Value> = samples.iter().filter_map(|r| r.answer.as_ref()).collect();
        report.valid_samples += answers.len();
        report.dropped_samples += samples.len() - answers.len();
        match answers.first() {
            Some(a) => labelled.push(Labelled {
                input: input.text.clone(),
                output: (*a).clone(),
            }),
            None => report.dropped_inputs.push(Dropped {
                line: input.line,
                reason: samples.last().map(|r| r.reason.clone()).unwrap_or_default(),
            }),
        }
        valid_per_input.push(answers);
    }
    report.labelled = labelled.len();
    report.dropped = report.dropped_inputs.len();
    report.agreement = agreement(&schema_json, &valid_per_input);
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(Outcome { labelled, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_strings_or_input_objects_and_bad_lines_are_all_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raw.jsonl");
        std::fs::write(&p, "\"a\"\n\n{\"input\": \"b\", \"output\": {}}\n").unwrap();
        let got = read_inputs(&p).unwrap();
        assert_eq!(
            got,
            [
                Input {
                    line: 1,
                    text: "a".into()
                },
                Input {
                    line: 3,
                    text: "b".into()
                }
            ]
        );
        std::fs::write(&p, "{\"prompt\": \"x\"}\n3\n{oops\n").unwrap();
        let e = read_inputs(&p).unwrap_err().to_string();
        assert!(e.starts_with("3 bad line(s)"), "{e}");
        assert!(
            e.contains("raw.jsonl:1: no \"input\"")
                && e.contains("raw.jsonl:2: expected")
                && e.contains("raw.jsonl:3: not valid JSON"),
            "{e}"
        );
        std::fs::write(&p, "\n").unwrap();
        assert!(read_inputs(&p)
            .unwrap_err()
            .to_string()
            .contains("no inputs"));
    }

    #[test]
    fn agreement_is_per_field_over_inputs_with_two_valid_samples() {
        let schema = json!({"properties": {"a": {}, "b": {}}});
        let (x, y, z) = (
            json!({"a": 1, "b": "x"}),
            json!({"a": 1.0, "b": "y"}),
            json!({"a": 2, "b": "x"}),
        );
        let per_input = vec![vec![&x, &y], vec![&x, &x], vec![&z]];
        let a = agreement(&schema, &per_input).unwrap();
        assert_eq!(a.compared, 2);
        assert_eq!(a.all_fields, 0.5);
        assert_eq!(a.fields[0].agree, 1.0, "numbers compare by value");
        assert_eq!(a.fields[1].agree, 0.5);
        assert_eq!(agreement(&schema, &[vec![&x]]), None);
    }

    #[test]
    fn each_sample_and_retry_has_its_own_seed() {
        let cfg = DistillConfig {
            model: "m".into(),
            samples: 2,
            concurrency: 1,
            max_retries: 2,
            temperature: 0.0,
            retry_temperature: 0.5,
            max_tokens: Some(9),
            seed: 5,
        };
        let s = json!({"type": "object"});
        let b = request_body("p", &s, &cfg, 1, 2);
        assert_eq!(b["seed"], 1007);
        assert_eq!(b["temperature"], 0.5);
        assert_eq!(request_body("p", &s, &cfg, 1, 0)["temperature"], 0.0);
        assert_eq!(b["max_tokens"], 9);
        assert_eq!(b["response_format"]["json_schema"]["schema"], s);
        assert_eq!(b["messages"][0]["content"], "p");
        assert_ne!(
            key_of(&request_body("p", &s, &cfg, 0, 1)),
            key_of(&request_body("p", &s, &cfg, 1, 0))
        );
    }
}
