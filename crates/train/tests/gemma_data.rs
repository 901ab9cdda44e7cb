//! The data pipeline with Gemma 3's real tokenizer on real SROIE receipts: the 40 receipt
//! texts and answers that the tokenizer fixture carries (tests never read `shared/`), and the
//! real model fetched through smolt-hub as the binary fetches it.

use std::io::Write;
use std::path::PathBuf;

use smolt_gguf::Gguf;
use smolt_task::{ModelTemplate, Task};
use smolt_tokenizer::Tokenizer;
use smolt_train::dataset::load_dataset;
use smolt_train::TextEncoder;

/// A JSONL file of `{"input", "output"}` records built from the tokenizer fixture's paired
/// `sroie_input` / `sroie_output_json` cases.
fn sroie_jsonl(dir: &std::path::Path) -> PathBuf {
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tokenizer/tests/fixtures/tokenizer_gemma3.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fx).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let texts = |src: &str| -> Vec<String> {
        cases
            .iter()
            .filter(|c| c["source"] == src)
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect()
    };
    let (inputs, outputs) = (texts("sroie_input"), texts("sroie_output_json"));
    assert_eq!(inputs.len(), 40);
    assert_eq!(outputs.len(), 40);
    let path = dir.join("sroie40.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (input, output) in inputs.iter().zip(&outputs) {
        let output: serde_json::Value = serde_json::from_str(output).unwrap();
        let rec = serde_json::json!({ "input": input, "output": output });
        writeln!(f, "{rec}").unwrap();
    }
    path
}

#[test]
fn sroie_receipts_tokenize_with_answer_only_loss() {
    let model = smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("this test needs Gemma 3 270M: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let data = sroie_jsonl(dir.path());
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let cfg = Task::default();
    let ds = load_dataset(&data, &cfg, &tok, None).unwrap();
    assert_eq!(ds.stats.records, 40);
    assert_eq!(ds.examples.len() + ds.stats.skipped, 40);
    assert!(!ds.examples.is_empty());
    let bos = tok.bos_id().unwrap();
    let eos = TextEncoder::eos_id(&tok);
    for ex in &ds.examples {
        assert!(ex.len() <= cfg.max_len);
        assert_eq!(ex.ids[0], bos);
        assert_eq!(*ex.ids.last().unwrap(), eos);
        let first_target = ex.loss_mask.iter().position(|&m| m).unwrap();
        assert!(ex.loss_mask[first_target..].iter().all(|&m| m));
        // The answer decodes back to compact JSON.
        let answer = tok.decode(&ex.ids[first_target..ex.len() - 1], true);
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(v.get("company").is_some(), "{answer}");
    }
    eprintln!("{}", ds.describe(cfg.max_len));
}

/// Gemma 3's real tokenizer with Gemma 3's official chat template, as a GGUF converted from
/// the instruction-tuned model carries it (the default model's file has none).
struct WithGemma3Template<'a>(&'a Tokenizer);

impl TextEncoder for WithGemma3Template<'_> {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        TextEncoder::encode(self.0, text, add_bos)
    }
    fn eos_id(&self) -> u32 {
        TextEncoder::eos_id(self.0)
    }
    fn model_chat_template(&self) -> Option<ModelTemplate> {
        Some(ModelTemplate {
            source: include_str!("../../task/tests/fixtures/gemma3_chat_template.jinja").into(),
            bos_token: "<bos>".into(),
            eos_token: "<eos>".into(),
        })
    }
}

#[test]
fn chat_data_gets_one_bos_and_the_same_ids_from_the_official_template_and_the_builtin() {
    let model = smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("this test needs Gemma 3 270M: {e}"));
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    assert_eq!(
        tok.chat_template(),
        None,
        "the default model has no chat template"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chat.jsonl");
    let line = serde_json::json!({"messages": [
        {"role": "system", "content": "Extract the total as JSON."},
        {"role": "user", "content": "STARBUCKS\nLatte 4.50\nTOTAL 4.50"},
        {"role": "assistant", "content": "{\"total\":4.5}"},
        {"role": "user", "content": "Same for: TOTAL 7.00"},
        {"role": "assistant", "content": "{\"total\":7.0}"}
    ]});
    std::fs::write(&data, format!("{line}\n")).unwrap();
    let cfg = Task::default();
    let official = load_dataset(&data, &cfg, &WithGemma3Template(&tok), None).unwrap();
    let builtin = load_dataset(&data, &cfg, &tok, None).unwrap();
    let (a, b) = (&official.examples[0], &builtin.examples[0]);
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.loss_mask, b.loss_mask);
    let bos = tok.bos_id().unwrap();
    assert_eq!(a.ids[0], bos);
    assert_eq!(
        a.ids.iter().filter(|&&id| id == bos).count(),
        1,
        "one BOS only"
    );
    let start = tok.id_of("<start_of_turn>").unwrap();
    assert_eq!(a.ids[1], start);
    // The loss is on the last answer, its end-of-turn marker and EOS.
    let first = a.loss_mask.iter().position(|&m| m).unwrap();
    assert_eq!(
        tok.decode(&a.ids[first..], false),
        "{\"total\":7.0}<end_of_turn><eos>"
    );
    assert_eq!(
        tok.decode(&a.ids[..first], false),
        "<bos><start_of_turn>user\nExtract the total as JSON.\n\nSTARBUCKS\nLatte 4.50\nTOTAL 4.50\
         <end_of_turn>\n<start_of_turn>model\n{\"total\":4.5}<end_of_turn>\n<start_of_turn>user\n\
         Same for: TOTAL 7.00<end_of_turn>\n<start_of_turn>model\n"
    );
}
