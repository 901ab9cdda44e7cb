//! Human-readable summaries of a GGUF file, for `smolt inspect` and for error reports.
//!
//! Formatting lives here rather than in the CLI so that every tool that shows a model
//! (inspect, the training log header, bug reports) describes it the same way.

use std::fmt::Write as _;

use crate::reader::Gguf;
use crate::value::Value;
use crate::GgmlType;

/// How much of one GGML type a file holds; the per-type totals are what tells a user which
/// quantization mix a "Q4_K_M" file really is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeTotal {
    pub ty: GgmlType,
    pub n_tensors: usize,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TypeTotal {
    /// Storage cost per weight, the figure quantization formats are compared by.
    pub fn bits_per_weight(&self) -> f64 {
        if self.n_elements == 0 {
            0.0
        } else {
            self.n_bytes as f64 * 8.0 / self.n_elements as f64
        }
    }
}

impl Gguf {
    /// Total number of weights over all tensors. Saturates rather than overflowing: the
    /// reader bounds each tensor by the file size, so only a contrived file could come close.
    pub fn n_parameters(&self) -> u64 {
        self.tensors()
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_elements()))
    }

    /// Totals per tensor type, largest share of the file first.
    pub fn type_totals(&self) -> Vec<TypeTotal> {
        let mut totals: Vec<TypeTotal> = Vec::new();
        for t in self.tensors() {
            let slot = match totals.iter().position(|x| x.ty == t.ty) {
                Some(i) => &mut totals[i],
                None => {
                    totals.push(TypeTotal {
                        ty: t.ty,
                        n_tensors: 0,
                        n_elements: 0,
                        n_bytes: 0,
                    });
                    totals.last_mut().expect("just pushed")
                }
            };
            slot.n_tensors += 1;
            slot.n_elements = slot.n_elements.saturating_add(t.n_elements());
            slot.n_bytes = slot.n_bytes.saturating_add(t.n_bytes);
        }
        totals.sort_by(|a, b| b.n_bytes.cmp(&a.n_bytes).then(a.ty.id().cmp(&b.ty.id())));
        totals
    }

    /// One line per metadata key: `key  type  value`, with long arrays and strings elided so
    /// that a 262,144-token vocabulary does not flood the terminal.
    pub fn metadata_summary(&self) -> String {
        let width = self
            .metadata()
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (key, value) in self.metadata() {
            let _ = writeln!(out, "{key:<width$}  {:<16}  {value}", type_label(value));
        }
        out
    }

    /// The tensor table (name, type, shape in GGML order, bytes), then totals per type and the
    /// parameter count.
    pub fn tensor_table(&self) -> String {
        let tensors = self.tensors();
        let name_w = tensors
            .iter()
            .map(|t| t.name.chars().count())
            .chain(std::iter::once(4))
            .max()
            .unwrap_or(4);
        let shapes: Vec<String> = tensors.iter().map(|t| format!("{:?}", t.dims)).collect();
        let shape_w = shapes
            .iter()
            .map(|s| s.len())
            .chain(std::iter::once(11))
            .max()
            .unwrap_or(11);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<5}  {:<shape_w$}  {:>12}",
            "name", "type", "shape (ne0…)", "bytes"
        );
        for (t, shape) in tensors.iter().zip(&shapes) {
            let _ = writeln!(
                out,
                "{:<name_w$}  {:<5}  {:<shape_w$}  {:>12}",
                t.name,
                t.ty.name(),
                shape,
                t.n_bytes
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<5}  {:>7}  {:>14}  {:>12}  {:>10}  {:>6}",
            "type", "tensors", "parameters", "bytes", "size", "bpw"
        );
        let mut total_bytes = 0u64;
        for tt in self.type_totals() {
            total_bytes = total_bytes.saturating_add(tt.n_bytes);
            let _ = writeln!(
                out,
                "{:<5}  {:>7}  {:>14}  {:>12}  {:>10}  {:>6.2}",
                tt.ty.name(),
                tt.n_tensors,
                tt.n_elements,
                tt.n_bytes,
                human_bytes(tt.n_bytes),
                tt.bits_per_weight()
            );
        }
        let _ = writeln!(
            out,
            "{:<5}  {:>7}  {:>14}  {:>12}  {:>10}",
            "total",
            tensors.len(),
            self.n_parameters(),
            total_bytes,
            human_bytes(total_bytes)
        );
        let _ = writeln!(
            out,
            "{} parameters ({})",
            self.n_parameters(),
            human_count(self.n_parameters())
        );
        out
    }

    /// One line saying whether the file carries a chat template, with its size and first
    /// line: `chat template: 1,531 chars, 53 lines: {{ bos_token }}`.
    pub fn chat_template_line(&self) -> String {
        match self.chat_template() {
            Ok(None) => format!("chat template: none (no {})", Self::CHAT_TEMPLATE_KEY),
            Err(e) => format!("chat template: unusable ({e})"),
            Ok(Some(t)) => {
                let first = t
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("");
                let shown: String = first.chars().take(60).collect();
                let more = if shown.len() < first.len() { "…" } else { "" };
                format!(
                    "chat template: {} chars, {} lines, from {}: {shown}{more}",
                    t.chars().count(),
                    t.lines().count(),
                    Self::CHAT_TEMPLATE_KEY
                )
            }
        }
    }

    /// Everything `smolt inspect` shows: a header line, the metadata, the tensor table.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if let Some(p) = self.path() {
            let _ = writeln!(out, "{}", p.display());
        }
        let _ = writeln!(
            out,
            "GGUF v{}, {} ({} bytes), alignment {}, {} metadata keys, {} tensors, data at byte {}",
            self.version,
            human_bytes(self.file_len()),
            self.file_len(),
            self.alignment,
            self.metadata().len(),
            self.tensors().len(),
            self.data_offset()
        );
        let _ = writeln!(out, "{}", self.chat_template_line());
        let _ = writeln!(out);
        out.push_str(&self.metadata_summary());
        let _ = writeln!(out);
        out.push_str(&self.tensor_table());
        out
    }
}

fn type_label(v: &Value) -> String {
    match v {
        Value::Array(ty, items) => format!("[{:?}; {}]", ty, items.len()),
        _ => format!("{:?}", v.value_type()),
    }
}

/// Binary units, as file managers and `ls -h` show sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

/// Parameter counts the way model names state them (270M, 1.1B).
pub fn human_count(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2}B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}K", x / 1e3)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgufWriter;

    #[test]
    fn summary_lists_keys_tensors_and_totals() {
        let mut w = GgufWriter::new();
        w.set("general.architecture", Value::String("tiny".into()));
        w.set(
            "tokenizer.ggml.tokens",
            Value::Array(
                crate::ValueType::String,
                (0..100).map(|i| Value::String(format!("t{i}"))).collect(),
            ),
        );
        w.add_f32("a.weight", &[4, 2], &[0.0; 8]).unwrap();
        w.add_tensor("b.weight", &[32, 2], GgmlType::Q8_0, vec![0; 68])
            .unwrap();
        let g = Gguf::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(g.n_parameters(), 8 + 64);
        let totals = g.type_totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].ty, GgmlType::Q8_0);
        assert_eq!(totals[0].n_bytes, 68);
        assert!((totals[0].bits_per_weight() - 8.5).abs() < 1e-9);
        let s = g.summary();
        assert!(s.contains("general.architecture"), "{s}");
        assert!(s.contains("[String; 100]"), "{s}");
        assert!(s.contains("… 100 String items"), "{s}");
        assert!(!s.contains("t99"), "long arrays must be elided:\n{s}");
        assert!(s.contains("b.weight  Q8_0   [32, 2]"), "{s}");
        assert!(s.contains("72 parameters"), "{s}");
        assert!(
            s.contains("chat template: none (no tokenizer.chat_template)"),
            "{s}"
        );
    }

    #[test]
    fn chat_template_is_read_and_summarised() {
        let mut w = GgufWriter::new();
        let src = "\n{%- for m in messages -%}{{ '<|im_start|>' + m.role + '\\n' + m.content }}\n{%- endfor -%}\n";
        w.set(Gguf::CHAT_TEMPLATE_KEY, Value::String(src.into()));
        let g = Gguf::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(g.chat_template().unwrap(), Some(src));
        let line = g.chat_template_line();
        assert_eq!(
            line,
            "chat template: 90 chars, 3 lines, from tokenizer.chat_template: \
             {%- for m in messages -%}{{ '<|im_start|>' + m.role + '\\n' +…"
        );
        assert!(g.summary().contains(&line));
        // A key of the wrong type is reported, not taken for "no template".
        let mut w = GgufWriter::new();
        w.set(Gguf::CHAT_TEMPLATE_KEY, Value::U32(1));
        let g = Gguf::from_bytes(w.to_bytes()).unwrap();
        assert!(g.chat_template().is_err());
        assert!(
            g.chat_template_line().contains("unusable"),
            "{}",
            g.chat_template_line()
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(253_113_024), "241.4 MiB");
        assert_eq!(human_count(268_098_176), "268.1M");
    }
}
