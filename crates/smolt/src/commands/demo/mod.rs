//! `smolt demo`: the whole story on synthetic receipts — data, training, a few-shot baseline,
//! the fine-tuned model, and the comparison — in one command with visible progress; with
//! `--task tools` the same story for function calling ([`tools`]).

mod tools;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use smolt::constrain::ConstraintSpec;
use smolt::data::{Record, SynthConfig};
use smolt::eval::{EvalConfig, EvalReport};
use smolt::evaluate::{pick_shots, EvalRun};
use smolt::model::{Model, Precision};
use smolt::task::Task;
use smolt::tokenizer::Tokenizer;
use smolt::train::TrainConfig;

/// The fields the demo extracts: the receipt header a bookkeeping import needs. Line items
/// are left out by default to keep the demo within its time budget (answers of ~60 tokens
/// instead of ~250); `--fields` asks for any others, `items` included.
const DEMO_FIELDS: &[&str] = &[
    "retailer",
    "postal_code",
    "timestamp",
    "currency",
    "total",
    "payment_method",
    "card_last4",
];

/// The training period and the later, unseen one the test set comes from: new retailers,
/// products, new date formats and many more phone-wallet payments appear in it. Training
/// receipts come from these years in turn: three in five from the three before the test year
/// (phone payments only exist from 2017), the rest spread over the 32 years before those,
/// so that both digits of a two-digit year take many values ("09-09-20" must be read by
/// copying the digits: a model that has seen only a few years maps the two digits to one of
/// those it knows and prints 2008 or 2019 for it).
const RECENT_YEARS: [u16; 3] = [2019, 2018, 2017];
const OLDER_YEARS: std::ops::RangeInclusive<u16> = 1985..=2016;
const TEST_YEAR: u16 = 2020;

/// The year of training receipt `i`: any prefix (the few-shot examples come from the start)
/// mixes recent and older years, and every 32 older receipts cover each older year once.
fn train_year(i: usize) -> u16 {
    let (group, slot) = (i / 5, i % 5);
    if slot < 3 {
        RECENT_YEARS[(group + slot) % 3]
    } else {
        let k = 2 * group + slot - 3;
        let n = OLDER_YEARS.len();
        OLDER_YEARS.start() + ((k * 13) % n) as u16
    }
}

#[derive(clap::Args)]
#[command(after_help = "\
What it does, in order (every step shows a progress bar), for the receipts task:
  1. fetches the default model (once; cached afterwards),
  2. generates synthetic OCR'd receipts: train (1985-2019, mostly 2017-2019) and
     validation (2019), and a test set from 2020 with retailers and print formats
     the training set never shows,
  3. trains a LoRA adapter directly over the quantized model (two passes at a peak
     learning rate of 2e-3 where the CPU has bf16 hardware, AMX tiles or AVX-512 BF16,
     else one at 5e-4),
  4. evaluates the base model prompted with K solved examples (the few-shot baseline),
  5. evaluates the fine-tuned model on the same test receipts, with the same schema-constrained
     decoding, and prints both side by side.
Everything lands in --out: data/, train/ (adapter, loss.png, metrics.csv), few-shot/ and
fine-tuned/ (eval.json, report.html, predictions.jsonl: every answer next to its truth),
compare.html and demo.json. Running it again with the same settings reuses a finished training
run and resumes an interrupted one (other settings train again); --fresh starts over.

--task tools is the same story for function calling: requests with the calls that answer them
are made from a tool list (--tools FILE, OpenAI's `tools` array, or the built-in smart-home,
calendar and shop tools), with distractor tools and requests no tool fits; the base model
prompted with solved requests is compared with the fine-tuned one, every answer decoded under
its tools' constraint (calls valid by construction) and scored by the Berkeley Function
Calling Leaderboard's rules, per tool and per argument.

Examples:
  smolt demo                 # about 15 minutes on 2 cores with bf16 hardware
  smolt demo --quick         # a 3-minute smaller run: same steps, fewer receipts
  smolt demo --seed 1 --out runs/demo-1   # another draw of data and training
  smolt demo --fields retailer,total,items --train 600 --out runs/items
  smolt demo --task tools --out runs/tools-demo
  smolt demo --task tools --tools my_tools.json --train 800 --out runs/my-tools")]
pub struct Args {
    /// The job: `receipts` (OCR'd receipts to JSON) or `tools` (requests to function calls).
    #[arg(long, default_value = "receipts", value_parser = ["receipts", "tools"])]
    task: String,
    /// tools: the tool list (JSON: OpenAI's `tools` array); default: the built-in smart-home,
    /// calendar and shop tools.
    #[arg(long, value_name = "FILE")]
    tools: Option<PathBuf>,
    /// Base model: a .gguf file or `gemma-3-270m` (fetched on first use).
    #[arg(short, long, default_value = smolt::hub::DEFAULT_MODEL, env = "SMOLT_MODEL")]
    model: String,
    /// Folder for everything the demo writes.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// A smaller run (about 3 minutes): fewer training and test receipts.
    #[arg(long)]
    quick: bool,
    /// Training receipts (tools: requests).
    #[arg(long)]
    train: Option<usize>,
    /// Passes over the training receipts (each one adds the training time again). Default:
    /// 2 where the CPU trains on bf16 hardware (AMX tiles or AVX-512 BF16), 1 elsewhere
    /// (training there takes two to three times as long, and the demo keeps to about 20
    /// minutes); tools: 2 on every CPU (one pass scored 55%, two 90%).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    epochs: Option<u32>,
    /// Test receipts (from the later period; tools: requests) evaluated for both models.
    #[arg(long)]
    test: Option<usize>,
    /// Solved examples in the baseline's prompt.
    #[arg(long, default_value_t = 2)]
    few_shot: usize,
    /// Receipts: OCR noise rate of the generated text (probability a character is corrupted).
    #[arg(long, default_value_t = 0.01)]
    noise: f64,
    /// Receipts: fields to extract (comma-separated), from: retailer, address, postal_code, country,
    /// timestamp, currency, items, subtotal, discount, taxes, tax_included, total,
    /// payment_method, card_last4.
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Peak learning rate of the LoRA training. Default: 2e-3 for two passes, 5e-4 for one;
    /// tools: 5e-4 (2e-3 taught the model to add arguments nobody asked for).
    #[arg(long)]
    lr: Option<f64>,
    /// Another draw of the whole run: the generated receipts (train, validation and test)
    /// and the training's initialisation and order. 0 is the published demo; other seeds show
    /// how much the result moves from one draw to the next.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delete --out first instead of reusing or resuming what is there.
    #[arg(long)]
    fresh: bool,
}

/// Sizes of one demo run.
struct Plan {
    train: usize,
    valid: usize,
    test: usize,
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let plan = Plan {
        train: args.train.unwrap_or(if args.quick { 48 } else { 400 }),
        valid: if args.quick { 8 } else { 24 },
        test: args.test.unwrap_or(if args.quick { 16 } else { 60 }),
    };
    if plan.train == 0 || plan.test == 0 {
        anyhow::bail!("--train and --test must be at least 1");
    }
    Ok(plan)
}

/// Creates --out, emptied first with --fresh.
fn prepare_out(args: &Args) -> anyhow::Result<()> {
    if args.fresh && args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("cannot delete {}", args.out.display()))?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.task == "tools" {
        return tools::run(args);
    }
    if args.tools.is_some() {
        anyhow::bail!("--tools is for `smolt demo --task tools`");
    }
    let t0 = Instant::now();
    let plan = plan(&args)?;
    let fields: Vec<&str> = if args.fields.is_empty() {
        DEMO_FIELDS.to_vec()
    } else {
        args.fields.iter().map(|s| s.trim()).collect()
    };
    // Check the fields before anything slow happens.
    smolt::data::select_schema(&smolt::data::receipts_schema(), &fields)
        .map_err(|e| anyhow::anyhow!("--fields: {e}"))?;
    prepare_out(&args)?;

    stage(1, "model");
    let model_path = super::resolve_model(&args.model)?;
    eprintln!("  {}", model_path.display());

    stage(2, "data");
    let data = make_data(&args, &plan, &fields)?;
    eprintln!(
        "  {} train ({}-{}) + {} validation receipts, {} test receipts ({TEST_YEAR}); fields: {}",
        plan.train,
        OLDER_YEARS.start(),
        RECENT_YEARS[0],
        plan.valid,
        plan.test,
        fields.join(", ")
    );
    eprintln!("  written to {}", data.dir.display());

    stage(3, "training a LoRA adapter over the quantized model");
    let (epochs, lr) = recipe(&args);
    eprintln!(
        "  {epochs} pass{} over the training receipts, peak learning rate {lr}{}",
        if epochs == 1 { "" } else { "es" },
        if args.epochs.is_none() && epochs == 1 {
            " (one pass without bf16 hardware, to keep to about 20 minutes)"
        } else {
            ""
        }
    );
    let t_train = Instant::now();
    let run_dir = args.out.join("train");
    let task = demo_task(&data, &model_path);
    let summary = train((epochs, lr), args.seed, &plan, &task, &data.dir, &run_dir)?;
    let train_s = t_train.elapsed().as_secs_f64();

    let gguf = smolt::gguf::Gguf::open(&model_path)
        .with_context(|| format!("cannot open {}", model_path.display()))?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf).context("reading the tokenizer")?);
    let engine = smolt::evaluate::engine_for_task(Arc::clone(&tokenizer), &task)?;
    let constraint = engine.compile(&ConstraintSpec::JsonSchema(data.schema.clone()))?;
    let max_tokens = answer_budget(
        data.train
            .iter()
            .map(|r| serde_json::to_string(&r.output).unwrap_or_default()),
        &tokenizer,
    );

    stage(
        4,
        &format!("evaluating the base model, {}-shot", args.few_shot),
    );
    let t_base = Instant::now();
    let base_model = Model::load(&model_path, Precision::Fast)?;
    let shots = pick_shots(&data.train, args.few_shot, &task);
    let base = EvalRun {
        model: &base_model,
        tokenizer: &tokenizer,
        constraint: Some(&constraint),
        task: &task,
        shots,
        max_tokens,
        prompt_budget: base_model.spec.context_length.saturating_sub(max_tokens),
    };
    let label_base = format!("{} {}-shot", args.model, args.few_shot);
    let base_report = evaluate(&base, &data, &label_base, &args.out.join("few-shot"))?;
    drop(base_model);
    let base_s = t_base.elapsed().as_secs_f64();

    stage(5, "evaluating the fine-tuned model");
    let t_ft = Instant::now();
    let mut ft_model = Model::load(&model_path, Precision::Fast)?;
    smolt::lora::attach_adapter(&mut ft_model, &run_dir)
        .with_context(|| format!("cannot apply the adapter in {}", run_dir.display()))?;
    let ft = EvalRun {
        model: &ft_model,
        tokenizer: &tokenizer,
        constraint: Some(&constraint),
        task: &task,
        shots: Vec::new(),
        max_tokens,
        prompt_budget: ft_model.spec.context_length.saturating_sub(max_tokens),
    };
    let label_ft = format!("{} + LoRA ({} receipts)", args.model, plan.train);
    let ft_report = evaluate(&ft, &data, &label_ft, &args.out.join("fine-tuned"))?;
    let ft_s = t_ft.elapsed().as_secs_f64();

    let cmp = smolt::eval::compare(&base_report, &ft_report);
    let field_acc = |r: &EvalReport| {
        r.fields
            .iter()
            .map(|f| (f.key.clone(), json!(f.normalized_rate)))
            .collect::<serde_json::Map<_, _>>()
    };
    let numbers = json!({
        "fields": fields,
        "train_receipts": plan.train,
        "test_receipts": plan.test,
        "few_shot_mean_field_accuracy": base_report.mean_score,
        "fine_tuned_mean_field_accuracy": ft_report.mean_score,
        "few_shot_fields": field_acc(&base_report),
        "fine_tuned_fields": field_acc(&ft_report),
        "few_shot_valid_json": base_report.validity_rate,
        "fine_tuned_valid_json": ft_report.validity_rate,
    });
    Ending {
        args: &args,
        recipe: (epochs, lr),
        summary: &summary,
        seconds: [train_s, base_s, ft_s, t0.elapsed().as_secs_f64()],
    }
    .write(
        numbers,
        &cmp,
        &format!(
            "Receipts → JSON on {} test receipts from {TEST_YEAR} (a period the training data never shows)",
            plan.test
        ),
        &format!(
            "mean field accuracy: few-shot base {:.1}%  →  fine-tuned {:.1}%",
            100.0 * base_report.mean_score,
            100.0 * ft_report.mean_score
        ),
        &format!(
            "{} and {} for each model's errors, {} for the loss curve.",
            args.out.join("few-shot/report.html").display(),
            args.out.join("fine-tuned/report.html").display(),
            run_dir.join("loss.png").display()
        ),
    )
}

/// What both demos end with: compare.html, demo.json (the task's numbers, then the recipe and
/// times every demo has) and the side-by-side table with the headline on stdout.
struct Ending<'a> {
    args: &'a Args,
    recipe: (u32, f64),
    summary: &'a smolt::train::report::Summary,
    /// Training, baseline evaluation, fine-tuned evaluation, and the whole run.
    seconds: [f64; 4],
}

impl Ending<'_> {
    fn write(
        &self,
        mut numbers: Value,
        cmp: &smolt::eval::Comparison,
        title: &str,
        score: &str,
        reports: &str,
    ) -> anyhow::Result<()> {
        let out = &self.args.out;
        let compare_html = out.join("compare.html");
        std::fs::write(&compare_html, cmp.to_html())
            .with_context(|| format!("cannot write {}", compare_html.display()))?;
        let [train, base, ft, wall] = self.seconds;
        if let Some(map) = numbers.as_object_mut() {
            for (k, v) in [
                ("epochs", json!(self.recipe.0)),
                ("peak_lr", json!(self.recipe.1)),
                ("few_shot", json!(self.args.few_shot)),
                ("seed", json!(self.args.seed)),
                ("train_tokens_per_s", json!(self.summary.tokens_per_s)),
                ("final_valid_loss", json!(self.summary.final_valid_loss)),
                (
                    "seconds",
                    json!({"train": train, "few_shot_eval": base, "fine_tuned_eval": ft, "total": wall}),
                ),
            ] {
                map.insert(k.to_string(), v);
            }
        }
        smolt::lora::io::write_atomic(
            &out.join("demo.json"),
            serde_json::to_string_pretty(&numbers)?.as_bytes(),
        )?;
        println!();
        println!("{title}");
        print!("{}", cmp.to_table());
        println!();
        println!("{score}");
        println!(
            "time: {} total (training {}, baseline eval {}, fine-tuned eval {})",
            hms(wall),
            hms(train),
            hms(base),
            hms(ft)
        );
        println!(
            "open {} for the side-by-side report;",
            compare_html.display()
        );
        println!("{reports}");
        Ok(())
    }
}

/// Prints the header of step `n` of 5.
fn stage(n: usize, what: &str) {
    eprintln!("\n[{n}/5] {what}");
}

fn hms(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

struct DemoData {
    dir: PathBuf,
    train: Vec<Record>,
    test: Vec<Record>,
    schema: Value,
    eval_config: EvalConfig,
}

/// Generates the three sets (deterministic: same options, same files) and writes them with
/// the schema and the scoring config, so every later step can be rerun by hand.
fn make_data(args: &Args, plan: &Plan, fields: &[&str]) -> anyhow::Result<DemoData> {
    let schema = smolt::data::select_schema(&smolt::data::receipts_schema(), fields)
        .map_err(|e| anyhow::anyhow!("--fields: {e}"))?;
    let eval_json = smolt::data::select_eval_config(&smolt::data::receipts_eval_config(), fields);
    let eval_config: EvalConfig =
        serde_json::from_value(eval_json.clone()).context("the receipts eval config")?;
    let gen = |n: usize, stream: u64, year: u16| -> Vec<Record> {
        smolt::data::receipts(&SynthConfig {
            n,
            seed: data_seed(args.seed, stream),
            year,
            noise_rate: args.noise,
            ..Default::default()
        })
        .into_iter()
        .map(|r| Record {
            output: smolt::data::select_value(&r.output, fields),
            input: r.input,
        })
        .collect()
    };
    // Each year's receipts are one stream of the generator (seeded by the year), drawn in
    // the order train_year gives.
    let years: Vec<u16> = (0..plan.train).map(train_year).collect();
    let mut streams = std::collections::BTreeMap::new();
    for &y in &years {
        *streams.entry(y).or_insert(0usize) += 1;
    }
    let mut streams: std::collections::BTreeMap<u16, std::vec::IntoIter<Record>> = streams
        .into_iter()
        .map(|(y, n)| (y, gen(n, 10_000 + y as u64, y).into_iter()))
        .collect();
    let train: Vec<Record> = years
        .iter()
        .filter_map(|y| streams.get_mut(y).and_then(|s| s.next()))
        .collect();
    let valid = gen(plan.valid, 2, RECENT_YEARS[0]);
    let test = gen(plan.test, 3, TEST_YEAR);
    let dir = args.out.join("data");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    smolt::data::write_jsonl(&dir.join("train.jsonl"), &train)?;
    smolt::data::write_jsonl(&dir.join("valid.jsonl"), &valid)?;
    smolt::data::write_jsonl(&dir.join("test.jsonl"), &test)?;
    let write_json = |name: &str, v: &Value| -> anyhow::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))
    };
    write_json("schema.json", &schema)?;
    write_json("eval.json", &eval_json)?;
    Ok(DemoData {
        dir,
        train,
        test,
        schema,
        eval_config,
    })
}

/// The generator seed of one stream of receipts in the draw `seed`: seed 0 keeps the streams
/// of the published demo, and other draws move every stream to a seed no draw's stream shares.
fn data_seed(seed: u64, stream: u64) -> u64 {
    stream ^ (seed << 32)
}

/// Trains (or reuses / resumes) the adapter in `run_dir` with the passes and peak learning rate
/// of [`recipe`].
fn train(
    (epochs, lr): (u32, f64),
    seed: u64,
    plan: &Plan,
    task: &Task,
    data_dir: &Path,
    run_dir: &Path,
) -> anyhow::Result<smolt::train::report::Summary> {
    // About six receipts per step (batch_tokens 2048); the passes of `recipe`, a short warmup
    // and a cosine decay. The peak lr is above the library default because a demo run has
    // only 80 to 160 steps to learn in.
    let steps_estimate = plan.train.div_ceil(6) as u64 * epochs as u64;
    let cfg = TrainConfig {
        task: task.clone(),
        epochs,
        lr,
        seed,
        warmup_steps: (steps_estimate / 10).clamp(1, 10),
        eval_every: 0,
        checkpoint_every: 10,
        ..TrainConfig::default()
    };
    // A finished or interrupted run is reused only for the same training settings and the
    // same data bytes (another --train, --epochs, --lr, --noise or --fields makes another run).
    let key = run_key(&cfg, data_dir)?;
    let key_file = run_dir.join("demo_key.txt");
    if run_dir.exists() && std::fs::read_to_string(&key_file).ok().as_deref() != Some(&key) {
        eprintln!(
            "  {} holds a run with other settings or data: training again",
            run_dir.display()
        );
        std::fs::remove_dir_all(run_dir)
            .with_context(|| format!("cannot delete {}", run_dir.display()))?;
    }
    let summary_file = run_dir.join("summary.json");
    let adapter_file = run_dir.join(smolt::lora::ADAPTER_FILE);
    if adapter_file.is_file() && summary_file.is_file() {
        let text = std::fs::read_to_string(&summary_file)?;
        let s: smolt::train::report::Summary = serde_json::from_str(&text)
            .with_context(|| format!("cannot read {}", summary_file.display()))?;
        if s.outcome == smolt::train::report::Outcome::Completed {
            eprintln!(
                "  reusing the finished run in {} (pass --fresh to train again)",
                run_dir.display()
            );
            return Ok(s);
        }
    }
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    std::fs::write(&key_file, &key)
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let resume = run_dir.join("checkpoints").is_dir()
        && std::fs::read_dir(run_dir.join("checkpoints"))?
            .next()
            .is_some();
    if resume {
        eprintln!("  resuming the interrupted run in {}", run_dir.display());
    }
    let summary = smolt::train::gemma::train(cfg, run_dir, resume)?;
    if summary.outcome != smolt::train::report::Outcome::Completed {
        anyhow::bail!(
            "training stopped before the end ({:?}); run `smolt demo` again to resume it",
            summary.outcome
        );
    }
    Ok(summary)
}

/// The demo's task: the default template and answer layout over the files the demo wrote.
fn demo_task(data: &DemoData, model: &Path) -> Task {
    Task {
        model: model.display().to_string(),
        data: data.dir.join("train.jsonl"),
        valid: Some(data.dir.join("valid.jsonl")),
        schema: Some(data.dir.join("schema.json")),
        ..Task::default()
    }
}

/// Passes over the training set and the peak learning rate: `--epochs` / `--lr`, else two passes
/// where training runs on bf16 hardware and one elsewhere (a half to a third of the speed), so that
/// the demo stays near its 20-minute budget, with the learning rate measured best for that many
/// passes. Two passes at 2e-3 scored 94.5% and 94.4% mean field accuracy on 120 test receipts (two
/// training seeds), one or two passes at 5e-4 93.5%: the hour of a 12-hour clock and a two-digit
/// year are learnt better with the stronger recipe; one pass at 2e-3 is unmeasured on the demo, so
/// one pass keeps 5e-4.
fn recipe(args: &Args) -> (u32, f64) {
    let epochs = args
        .epochs
        .unwrap_or(if smolt::kernels::bf16::accelerated() {
            2
        } else {
            1
        });
    let lr = args.lr.unwrap_or(if epochs >= 2 { 2e-3 } else { 5e-4 });
    (epochs, lr)
}

/// SHA-256 of the training settings that change the numbers and of the demo's training and
/// validation files.
fn run_key(cfg: &TrainConfig, data_dir: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(cfg.training_hash().as_bytes());
    for f in ["train.jsonl", "valid.jsonl"] {
        let p = data_dir.join(f);
        h.update(std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?);
    }
    Ok(smolt_train::config::hex(&h.finalize()))
}

/// Room for the longest training answer plus slack: the grammar ends the output itself, so
/// the limit only guards against a model that rambles inside a string.
fn answer_budget(answers: impl Iterator<Item = String>, tok: &Tokenizer) -> usize {
    let longest = answers
        .map(|text| tok.encode(&text, false, false).len())
        .max()
        .unwrap_or(64);
    longest + longest / 2 + 16
}

fn evaluate(job: &EvalRun, data: &DemoData, label: &str, out: &Path) -> anyhow::Result<EvalReport> {
    let bar = super::count_bar(data.test.len(), "receipts")?;
    let mut sum = 0.0;
    let outcome = job.run(
        &data.test,
        data.eval_config.clone(),
        label,
        |done, score| {
            sum += score;
            bar.set_position(done as u64);
            bar.set_message(format!(
                "{:.1}% of fields so far",
                100.0 * sum / done as f64
            ));
        },
    )?;
    bar.finish_and_clear();
    outcome.write_dir(out)?;
    let report = outcome.report;
    eprintln!(
        "  mean field accuracy {:.1}%, valid JSON {:.0}%, record exact match {:.0}%  ({})",
        100.0 * report.mean_score,
        100.0 * report.validity_rate,
        100.0 * report.record_match_rate,
        out.join("report.html").display()
    );
    if outcome.truncated_outputs > 0 {
        eprintln!(
            "  {} outputs hit the {max} token limit unfinished and count as invalid",
            outcome.truncated_outputs,
            max = job.max_tokens
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_years_mix_recent_and_every_older_year() {
        let years: Vec<u16> = (0..320).map(train_year).collect();
        let recent = years.iter().filter(|y| RECENT_YEARS.contains(y)).count();
        assert_eq!(recent, 192, "three in five");
        // Every run of 32 older receipts covers each older year once.
        let older: Vec<u16> = years
            .iter()
            .copied()
            .filter(|y| !RECENT_YEARS.contains(y))
            .collect();
        for run in older.chunks(32) {
            let mut run = run.to_vec();
            run.sort();
            assert_eq!(run, OLDER_YEARS.collect::<Vec<_>>());
        }
        // A short prefix (the few-shot examples) already mixes both.
        let prefix = &years[..5];
        assert!(prefix.iter().any(|y| OLDER_YEARS.contains(y)));
        assert!(prefix.iter().any(|y| RECENT_YEARS.contains(y)));
        assert!(years.iter().all(|y| *y < TEST_YEAR));
    }

    #[test]
    fn seed_zero_is_the_published_draw_and_draws_do_not_share_streams() {
        for stream in [2, 3, 10_000 + 1985, 10_000 + 2019] {
            assert_eq!(data_seed(0, stream), stream);
        }
        let mut seen = std::collections::HashSet::new();
        for seed in 0..50 {
            for stream in [2, 3].into_iter().chain((1985..=2019).map(|y| 10_000 + y)) {
                assert!(
                    seen.insert(data_seed(seed, stream)),
                    "seed {seed} stream {stream}"
                );
            }
        }
    }

    #[test]
    fn the_recipe_pairs_the_learning_rate_with_the_passes() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            demo: Args,
        }
        let recipe_of = |extra: &[&str]| {
            let argv = std::iter::once("demo").chain(extra.iter().copied());
            recipe(&Cli::parse_from(argv).demo)
        };
        assert_eq!(recipe_of(&["--epochs", "1"]), (1, 5e-4));
        assert_eq!(recipe_of(&["--epochs", "2"]), (2, 2e-3));
        assert_eq!(recipe_of(&["--epochs", "3", "--lr", "1e-4"]), (3, 1e-4));
        // Unset: as many passes as the hardware affords within the budget.
        let passes = if smolt::kernels::bf16::accelerated() {
            2
        } else {
            1
        };
        assert_eq!(recipe_of(&[]).0, passes);
    }
}
