//! `smolt data`: make and split datasets.

use std::path::PathBuf;

use anyhow::Context;
use smolt::data::{SplitSpec, SynthConfig};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand)]
enum DataCommand {
    /// Generate a synthetic dataset (OCR-like text in, truth JSON out).
    Synth(SynthArgs),
    /// Split a JSONL file into train / valid / test, at random or ordered by a field.
    Split(SplitArgs),
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    smolt data synth receipts --n 1000 --seed 7 --year 2019 --out data/2019\n  \
    smolt data synth receipts --n 200 --seed 8 --year 2020 --noise 0.02 --out data/2020")]
struct SynthArgs {
    /// What to generate (only `receipts` for now).
    #[arg(value_parser = ["receipts"])]
    kind: String,
    /// Number of records.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Same seed and options give identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The period: retailers, formats, layouts, prices and tax rates of that year.
    #[arg(long, default_value_t = 2019)]
    year: u16,
    /// OCR noise: probability that a printed character is corrupted (0 gives clean text).
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// Countries to draw from (us, ca, gb, de, au, my); default all.
    #[arg(long, value_delimiter = ',')]
    countries: Vec<String>,
    /// Output folder: receives receipts.jsonl and schema.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    smolt data split receipts.jsonl --valid 0.1 --test 0.1 --out splits/\n  \
    smolt data split receipts.jsonl --by timestamp --test-from 2020 --out splits/")]
struct SplitArgs {
    /// The JSONL file to split.
    file: PathBuf,
    /// Fraction for validation (random split).
    #[arg(long, default_value_t = 0.1)]
    valid: f64,
    /// Fraction for test (random split).
    #[arg(long, default_value_t = 0.1)]
    test: f64,
    /// Seed of the random split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Split in order of this field instead (a JSON pointer such as /output/date, or a field of `output`).
    #[arg(long, requires = "test_from")]
    by: Option<String>,
    /// With --by: records whose field is at or after this value go to test (e.g. 2020).
    #[arg(long, requires = "by")]
    test_from: Option<String>,
    /// Output folder: receives train.jsonl, valid.jsonl and test.jsonl.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Synth(a) => synth(a),
        DataCommand::Split(a) => split(a),
    }
}

fn synth(a: SynthArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&a.noise) {
        anyhow::bail!("--noise must be between 0 and 1");
    }
    let countries = a
        .countries
        .iter()
        .map(|c| {
            smolt::data::Country::parse(c)
                .with_context(|| format!("unknown country `{c}` (use us, ca, gb, de, au or my)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = SynthConfig {
        n: a.n,
        seed: a.seed,
        year: a.year,
        noise_rate: a.noise,
        countries,
        ..SynthConfig::default()
    };
    let records = smolt::data::receipts(&cfg);
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let data = a.out.join("receipts.jsonl");
    smolt::data::write_jsonl(&data, &records)?;
    let schema = a.out.join("schema.json");
    std::fs::write(
        &schema,
        serde_json::to_string_pretty(&smolt::data::receipts_schema())?,
    )
    .with_context(|| format!("cannot write {}", schema.display()))?;
    eprintln!(
        "wrote {} receipts ({}) to {} and their schema to {}",
        records.len(),
        a.year,
        data.display(),
        schema.display()
    );
    Ok(())
}

fn split(a: SplitArgs) -> anyhow::Result<()> {
    let records = smolt::data::read_jsonl(&a.file)?;
    let spec = match (a.by, a.test_from) {
        (Some(key), Some(from)) => SplitSpec::Ordered {
            key,
            boundaries: vec![from],
        },
        _ => SplitSpec::Random {
            valid_frac: a.valid,
            test_frac: a.test,
            seed: a.seed,
        },
    };
    let splits = smolt::data::split(records, &spec)?;
    splits.write(&a.out)?;
    eprintln!("{} → {}", splits.summary(), a.out.display());
    Ok(())
}
