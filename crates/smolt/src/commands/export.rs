//! `smolt export`: an adapter in the formats other engines load (llama.cpp's GGUF LoRA, a PEFT
//! folder, the base with the adapter merged, an Ollama model folder).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use smolt::gguf::{GgmlType, Gguf};
use smolt::hub::KnownModel;
use smolt::lora::{gguf_lora, merged_gguf, AdapterWeights, MergeTypes};
use smolt::model::ArchSpec;
use smolt::task::Task;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// llama.cpp's LoRA adapter file (`llama-cli --lora`, `llama-server --lora`, Ollama's ADAPTER).
    GgufLora,
    /// A PEFT folder (adapter_config.json + adapter_model.safetensors) for PEFT, vLLM, LoRAX.
    Peft,
    /// The base model with the adapter merged in: one GGUF any llama.cpp-based engine runs.
    MergedGguf,
    /// A folder with a Modelfile for `ollama create` and the GGUF LoRA (or, with --merge, the
    /// merged model).
    Ollama,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoraType {
    F32,
    F16,
    Bf16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl LoraType {
    fn ggml(self) -> GgmlType {
        match self {
            LoraType::F32 => GgmlType::F32,
            LoraType::F16 => GgmlType::F16,
            LoraType::Bf16 => GgmlType::BF16,
            LoraType::Q8_0 => GgmlType::Q8_0,
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = "\
The adapter can be a `smolt train` run directory, a PEFT LoRA folder trained elsewhere, or a
GGUF LoRA file; its base model is the run's (from its config.toml) unless --model says otherwise.
Every format reads back into smolt (`--adapter FILE-OR-DIR`, or `--model` for a merged GGUF).

Examples:
  smolt export runs/receipts --format gguf-lora --out receipts-lora.gguf
      llama-cli -m gemma-3-270m-q4_k_m.gguf --lora receipts-lora.gguf
  smolt export runs/receipts --format peft --out receipts-peft
      PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(\"google/gemma-3-270m\"), \"receipts-peft\")
  smolt export runs/receipts --format merged-gguf --type same --out receipts.gguf
      llama-cli -m receipts.gguf      smolt eval --model receipts.gguf ...
  smolt export runs/receipts --format ollama --out receipts-ollama
      cd receipts-ollama && ollama create receipts -f Modelfile && ollama run receipts")]
pub struct Args {
    /// The adapter: a run directory, a PEFT folder or a GGUF LoRA file.
    adapter: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: Format,
    /// Where: a file for gguf-lora and merged-gguf, a folder for peft and ollama.
    #[arg(short, long)]
    out: PathBuf,
    /// The base model the adapter was trained on (a .gguf file or a known name); default:
    /// the run's.
    #[arg(short, long)]
    model: Option<String>,
    /// Tensor type of a GGUF LoRA (q8_0 keeps rows that are not whole blocks in f16).
    #[arg(long, value_enum, default_value = "f32")]
    lora_type: LoraType,
    /// Storage of a merged model: `same` (each tensor keeps the base's type), Q4_K_M
    /// (llama.cpp's mix), Q8_0, F16, BF16 or F32.
    #[arg(long = "type", default_value = "same", value_parser = parse_merge_types)]
    merge_types: MergeTypes,
    /// With --format ollama: ship the merged model instead of base + adapter.
    #[arg(long)]
    merge: bool,
    /// The Hugging Face model a PEFT export names as its base (`base_model_name_or_path`);
    /// default: the known model's repository, else what the adapter records.
    #[arg(long)]
    base_model_name: Option<String>,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

fn parse_merge_types(s: &str) -> Result<MergeTypes, String> {
    s.parse()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; choose another --out or pass --force to replace it",
            args.out.display()
        );
    }
    let model_spec = base_model_of(&args)?;
    let base_path = super::resolve_model(&model_spec)?;
    let base = Gguf::open(&base_path)
        .with_context(|| format!("cannot read the base model {}", base_path.display()))?;
    let spec = ArchSpec::from_gguf(&base)
        .with_context(|| format!("cannot use {} as a base", base_path.display()))?;
    let weights = AdapterWeights::read(&args.adapter, &spec)
        .with_context(|| format!("cannot read the adapter {}", args.adapter.display()))?;
    let arch = spec.arch.name();
    let label = args.adapter.display().to_string();
    match args.format {
        Format::GgufLora => {
            gguf_lora::write(&weights, &args.out, arch, args.lora_type.ggml())?;
            eprintln!(
                "wrote {} ({} projections, {}): llama-cli -m {} --lora {}",
                args.out.display(),
                weights.pairs.len(),
                args.lora_type.ggml(),
                base_path.display(),
                args.out.display()
            );
        }
        Format::Peft => {
            let mut w = weights;
            w.base_model = hf_name(&args, &base_path, &w);
            w.write_peft(&args.out, &spec)?;
            eprintln!(
                "wrote {} (PEFT LoRA over `{}`, r = {}, {} projections)",
                args.out.display(),
                w.base_model,
                w.rank,
                w.pairs.len()
            );
        }
        Format::MergedGguf => {
            write_merged(&base, &weights, &spec, args.merge_types, &label, &args.out)?;
            eprintln!(
                "wrote {}: run it with `llama-cli -m {0}` or `smolt generate --model {0}`",
                args.out.display()
            );
        }
        Format::Ollama => {
            if args.out.exists() {
                std::fs::remove_dir_all(&args.out)
                    .with_context(|| format!("removing {}", args.out.display()))?;
            }
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            let (from, adapter) = if args.merge {
                let file = args.out.join("model.gguf");
                write_merged(&base, &weights, &spec, args.merge_types, &label, &file)?;
                ("./model.gguf".to_string(), None)
            } else {
                let file = args.out.join("adapter.gguf");
                gguf_lora::write(&weights, &file, arch, args.lora_type.ggml())?;
                let from = std::path::absolute(&base_path)?;
                (from.display().to_string(), Some("./adapter.gguf"))
            };
            let task = Task::of_run(&args.adapter).ok().flatten();
            let text = modelfile(&from, adapter, task.as_ref(), &base)?;
            smolt::lora::io::write_atomic(&args.out.join("Modelfile"), text.as_bytes())?;
            eprintln!(
                "wrote {}: cd {0} && ollama create <name> -f Modelfile",
                args.out.display()
            );
        }
    }
    Ok(())
}

/// --model, else the model the run trained on, else the default.
fn base_model_of(args: &Args) -> anyhow::Result<String> {
    if let Some(m) = &args.model {
        return Ok(m.clone());
    }
    if args.adapter.is_dir() {
        if let Some(task) = Task::of_run(&args.adapter)? {
            return Ok(task.model);
        }
    }
    bail!(
        "which base model was {} trained on? pass --model (a .gguf file or a known name)",
        args.adapter.display()
    )
}

/// The Hugging Face name a PEFT export records as its base.
fn hf_name(args: &Args, base_path: &Path, w: &AdapterWeights) -> String {
    if let Some(n) = &args.base_model_name {
        return n.clone();
    }
    let file = base_path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    if let Some(m) = KnownModel::ALL.into_iter().find(|m| m.file_name() == file) {
        return m.hf_repo().to_string();
    }
    eprintln!(
        "note: the PEFT config names `{}` as its base; pass --base-model-name owner/repo to \
         name the Hugging Face model instead",
        w.base_model
    );
    w.base_model.clone()
}

fn write_merged(
    base: &Gguf,
    w: &AdapterWeights,
    spec: &ArchSpec,
    types: MergeTypes,
    label: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let bar = super::count_bar(base.tensors().len(), "tensors merged")?;
    let (file, report) = merged_gguf(base, w, spec.n_layers(), types, label, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    file.write(out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "merged {} weights ({} quants clipped at the end of their range), requantized {}, \
         copied {} tensors as they were",
        report.merged, report.clipped, report.requantized, report.copied
    );
    Ok(())
}

/// Ollama's Modelfile: the base (or merged model), the adapter, and a TEMPLATE that wraps the
/// user's text in the task's prompt, as training did, so `ollama run` takes raw inputs.
fn modelfile(
    from: &str,
    adapter: Option<&str>,
    task: Option<&Task>,
    base: &Gguf,
) -> anyhow::Result<String> {
    let mut s = String::from("# Made by `smolt export --format ollama`.\n");
    s += &format!("FROM {from}\n");
    if let Some(a) = adapter {
        s += &format!("ADAPTER {a}\n");
    }
    match task {
        Some(t) => {
            s += &format!("TEMPLATE \"\"\"{}\"\"\"\n", ollama_template(&t.template)?);
        }
        None => {
            s += "# No task recorded with this adapter: Ollama uses the model's own chat template.\n";
        }
    }
    // smolt evaluates greedily; the answer ends with the end-of-generation token.
    s += "PARAMETER temperature 0\n";
    if base.get_str("general.architecture").ok() == Some("gemma3") {
        s += "PARAMETER stop \"<end_of_turn>\"\n";
    }
    Ok(s)
}

/// The task's prompt template as an Ollama (Go text/template) TEMPLATE body: `{input}` becomes
/// Ollama's prompt variable and the answer follows the template's end, as in training. A
/// literal `{{` would start a Go action, so it is written as the action `{{"{{"}}` that prints
/// it; a `"""` would end the Modelfile's quoted value early and is refused.
fn ollama_template(template: &str) -> anyhow::Result<String> {
    if template.contains("\"\"\"") {
        bail!(
            "the task's template contains \"\"\", which would end the Modelfile's TEMPLATE \
             early: export --format gguf-lora and write the Modelfile by hand"
        );
    }
    Ok(template
        .split("{input}")
        .map(|piece| piece.replace("{{", "{{\"{{\"}}"))
        .collect::<Vec<_>>()
        .join("{{ .Prompt }}"))
}

#[cfg(test)]
mod tests {
    use super::ollama_template;

    #[test]
    fn ollama_templates_keep_literal_braces_and_refuse_triple_quotes() {
        assert_eq!(
            ollama_template("Receipt:\n{input}\n\nJSON:").unwrap(),
            "Receipt:\n{{ .Prompt }}\n\nJSON:"
        );
        // A literal `{{` prints itself through a Go action; single braces and `}}` are text.
        assert_eq!(
            ollama_template("Fill {{\"a\": 1}} from {input} {x}").unwrap(),
            "Fill {{\"{{\"}}\"a\": 1}} from {{ .Prompt }} {x}"
        );
        let e = ollama_template("\"\"\"{input}").unwrap_err().to_string();
        assert!(e.contains("TEMPLATE"), "{e}");
    }
}
