//! What a run leaves for people: `metrics.csv`, `loss.png`, `summary.json` and a one-screen
//! text summary.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use smolt_lora::io::write_atomic;

/// One row of `metrics.csv`: one optimiser step.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub step: u64,
    /// Fractional epochs consumed.
    pub epoch: f64,
    pub lr: f64,
    /// Mean loss per target token over the step's micro-batches.
    pub train_loss: f64,
    /// Mean validation loss per target token, on steps where validation ran.
    pub valid_loss: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens processed so far (prompt and answer).
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
}

/// The CSV header, fixed so that tools reading runs can rely on it.
pub const METRICS_HEADER: &str =
    "step,epoch,lr,train_loss,valid_loss,grad_norm,tokens,tokens_per_s,elapsed_s";

impl MetricRow {
    /// Losses and lr are written in Rust's shortest round-trip form, so two runs can be
    /// compared bit for bit from their CSVs.
    pub fn to_csv(&self) -> String {
        format!(
            "{},{:.4},{:?},{:?},{},{:?},{},{:.1},{:.3}",
            self.step,
            self.epoch,
            self.lr,
            self.train_loss,
            self.valid_loss
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            self.grad_norm,
            self.tokens,
            self.tokens_per_s,
            self.elapsed_s
        )
    }

    pub fn from_csv(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() != 9 {
            return None;
        }
        Some(MetricRow {
            step: f[0].parse().ok()?,
            epoch: f[1].parse().ok()?,
            lr: f[2].parse().ok()?,
            train_loss: f[3].parse().ok()?,
            valid_loss: if f[4].is_empty() {
                None
            } else {
                Some(f[4].parse().ok()?)
            },
            grad_norm: f[5].parse().ok()?,
            tokens: f[6].parse().ok()?,
            tokens_per_s: f[7].parse().ok()?,
            elapsed_s: f[8].parse().ok()?,
        })
    }
}

/// Reads `metrics.csv`, skipping the header and any torn last line.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .skip(1)
        .filter_map(MetricRow::from_csv)
        .collect())
}

/// Appends rows to `metrics.csv` as training goes, so a crash loses at most the rows since the
/// last flush and the file can be watched (`tail -f`) during a run.
pub struct MetricsWriter {
    file: fs::File,
}

impl MetricsWriter {
    /// Opens `path` for a run resuming after `keep_through_step` steps: rows after that step
    /// (written before a crash, then redone) are dropped so each step appears once.
    pub fn open(path: &Path, keep_through_step: u64) -> Result<Self> {
        let kept: Vec<MetricRow> = read_metrics(path)?
            .into_iter()
            .filter(|r| r.step <= keep_through_step)
            .collect();
        let mut text = String::from(METRICS_HEADER);
        text.push('\n');
        for r in &kept {
            text += &r.to_csv();
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsWriter { file })
    }

    pub fn push(&mut self, row: &MetricRow) -> Result<()> {
        writeln!(self.file, "{}", row.to_csv())?;
        self.file.flush()?;
        Ok(())
    }
}

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bundled font is known to parse; a failure would only lose the axis labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws train (every step) and validation (where measured) loss against the step.
pub fn plot_loss(rows: &[MetricRow], path: &Path) -> Result<()> {
    register_font();
    // Drawn under a temporary name and renamed, like every run file, so a crash never leaves
    // a torn PNG; the name keeps the .png extension because plotters picks the encoder by it.
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let train: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.train_loss.is_finite())
            .map(|r| (r.step as f64, r.train_loss))
            .collect();
        let valid: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.valid_loss.map(|v| (r.step as f64, v)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let all = train.iter().chain(&valid);
        let max_step = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
        let (lo, hi) = if lo.is_finite() {
            let pad = ((hi - lo) * 0.05).max(1e-3);
            ((lo - pad).max(0.0), hi + pad)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption("smolt: loss per target token", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_step, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            // With few steps, more labels than steps would repeat rounded values.
            .x_labels((max_step as usize).min(10) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("loss")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        chart
            .draw_series(LineSeries::new(train, blue.stroke_width(2)))
            .map_err(plot_err)?
            .label("train")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2))
            });
        if !valid.is_empty() {
            chart
                .draw_series(LineSeries::new(valid.clone(), orange.stroke_width(2)))
                .map_err(plot_err)?
                .label("validation")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2))
                });
            chart
                .draw_series(valid.iter().map(|&p| Circle::new(p, 3, orange.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing loss.png: {e:?}")
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// All planned steps done.
    Completed,
    /// Stopped early on request (Ctrl-C or a step limit); resumable.
    Interrupted,
    /// Stopped because the loss or gradient stopped being finite.
    NonFinite,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub steps: u64,
    pub total_steps: u64,
    pub epochs: f64,
    pub tokens: u64,
    pub target_tokens: u64,
    pub tokens_per_s: f64,
    pub peak_memory_bytes: Option<u64>,
    pub final_train_loss: Option<f64>,
    pub final_valid_loss: Option<f64>,
    pub wall_time_s: f64,
    pub train_examples: usize,
    pub valid_examples: usize,
    pub truncated_examples: usize,
    pub skipped_examples: usize,
    pub trainable_parameters: usize,
    /// The adapter written at the end, if any.
    pub adapter: Option<String>,
    /// The last checkpoint on disk, for resuming.
    pub last_checkpoint: Option<String>,
}

impl Summary {
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// The end-of-run screen.
    pub fn render(&self) -> String {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or("-".into());
        let mut s = String::new();
        let status = match self.outcome {
            Outcome::Completed => "completed",
            Outcome::Interrupted => "interrupted (resume with --resume)",
            Outcome::NonFinite => "STOPPED: loss became NaN/Inf",
        };
        s += &format!("training {status}\n");
        s += &format!(
            "  steps        {} / {}   ({:.2} epochs)\n",
            self.steps, self.total_steps, self.epochs
        );
        s += &format!(
            "  loss         train {}   validation {}\n",
            opt(self.final_train_loss),
            opt(self.final_valid_loss)
        );
        s += &format!(
            "  tokens       {} ({} trained on), {:.1} tokens/s\n",
            self.tokens, self.target_tokens, self.tokens_per_s
        );
        s += &format!(
            "  data         {} train / {} validation examples; {} truncated, {} skipped\n",
            self.train_examples,
            self.valid_examples,
            self.truncated_examples,
            self.skipped_examples
        );
        s += &format!(
            "  time         {}   peak memory {}\n",
            format_duration(self.wall_time_s),
            self.peak_memory_bytes
                .map(|b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
                .unwrap_or("-".into())
        );
        s += &format!("  parameters   {} trainable\n", self.trainable_parameters);
        if let Some(a) = &self.adapter {
            s += &format!("  adapter      {a}\n");
        }
        if let Some(c) = &self.last_checkpoint {
            s += &format!("  checkpoint   {c}\n");
        }
        s
    }
}

/// `1h02m03s` style.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{secs:.1}s")
    }
}

/// Peak resident memory of this process (VmHWM), where the OS reports it.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<MetricRow> {
        (1..=60)
            .map(|s| MetricRow {
                step: s,
                epoch: s as f64 / 20.0,
                lr: 1e-3,
                train_loss: 3.0 * (-(s as f64) / 20.0).exp() + 0.5 + 0.05 * ((s * 7) % 5) as f64,
                valid_loss: (s % 10 == 0).then(|| 3.2 * (-(s as f64) / 25.0).exp() + 0.6),
                grad_norm: 1.0,
                tokens: s * 1000,
                tokens_per_s: 100.0,
                elapsed_s: s as f64,
            })
            .collect()
    }

    #[test]
    fn csv_round_trip_is_exact() {
        for r in rows() {
            let back = MetricRow::from_csv(&r.to_csv()).unwrap();
            assert_eq!(back.train_loss.to_bits(), r.train_loss.to_bits());
            assert_eq!(back.valid_loss, r.valid_loss);
            assert_eq!(back.step, r.step);
        }
    }

    #[test]
    fn metrics_writer_drops_rows_past_the_resume_point() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        let mut w = MetricsWriter::open(&p, 0).unwrap();
        for r in rows().iter().take(10) {
            w.push(r).unwrap();
        }
        drop(w);
        let mut w = MetricsWriter::open(&p, 6).unwrap();
        w.push(&rows()[6]).unwrap();
        let back = read_metrics(&p).unwrap();
        assert_eq!(
            back.iter().map(|r| r.step).collect::<Vec<_>>(),
            (1..=7).collect::<Vec<_>>()
        );
    }

    #[test]
    fn loss_png_renders() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::env::var_os("SMOLT_KEEP_PLOT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| tmp.path().to_path_buf());
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("loss.png");
        plot_loss(&rows(), &p).unwrap();
        let bytes = fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5000, "a chart with text, not a blank image");
        // Also without validation points and with a single row.
        plot_loss(&rows()[..1], &dir.join("loss-one-step.png")).unwrap();
    }

    #[test]
    fn summary_renders_and_peak_memory_is_read() {
        let s = Summary {
            outcome: Outcome::Completed,
            steps: 10,
            total_steps: 10,
            epochs: 1.0,
            tokens: 1234,
            target_tokens: 300,
            tokens_per_s: 99.5,
            peak_memory_bytes: peak_memory_bytes(),
            final_train_loss: Some(0.5),
            final_valid_loss: None,
            wall_time_s: 3725.0,
            train_examples: 10,
            valid_examples: 0,
            truncated_examples: 1,
            skipped_examples: 2,
            trainable_parameters: 3_800_000,
            adapter: Some("runs/x".into()),
            last_checkpoint: None,
        };
        let text = s.render();
        assert!(
            text.contains("1h02m05s") && text.contains("0.5000"),
            "{text}"
        );
        assert!(text.lines().count() <= 24);
        if cfg!(target_os = "linux") {
            assert!(s.peak_memory_bytes.unwrap() > 0);
        }
    }
}
