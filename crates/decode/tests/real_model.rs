//! `generate` on the real Gemma 3 270M file, end to end through the public API. The model comes
//! from `smolt_hub::model_for_tests` (SMOLT_MODEL, else fetched and cached as the binary does);
//! without it these tests fail, never skip.

use smolt_decode::{generate, GenerateOptions, StopReason};
use smolt_model::{Model, Precision};
use std::path::PathBuf;

fn model_path() -> PathBuf {
    smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("these tests need Gemma 3 270M Q4_K_M: {e}"))
}

/// The model (fast path), its tokenizer and a constraint engine over that tokenizer.
fn real_setup() -> (
    Model,
    std::sync::Arc<smolt_tokenizer::Tokenizer>,
    std::sync::Arc<smolt_constrain::ConstraintEngine>,
) {
    let model = Model::load(model_path(), Precision::Fast).unwrap();
    let tok = std::sync::Arc::new(smolt_tokenizer::Tokenizer::from_gguf(model.gguf()).unwrap());
    let engine = smolt_constrain::ConstraintEngine::new(tok.clone()).unwrap();
    (model, tok, engine)
}

#[test]
fn greedy_fast_continues_like_llama_cpp_and_knows_gemmas_stop_tokens() {
    let model = Model::load(model_path(), Precision::Fast).unwrap();
    // <eos> and <end_of_turn>, found by text in the vocabulary.
    assert_eq!(model.special.end_of_generation, vec![1, 106]);
    assert_eq!(model.special.bos, Some(2));
    // "The capital of France is": llama.cpp (Q4_K_M, greedy) continues " the capital of the
    // country" (greedy_gemma3.json, prompt a); its first near-tie is at step 4, so the first
    // four tokens must match.
    let prompt = [2, 818, 5279, 529, 7001, 563];
    let opts = GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let mut streamed = Vec::new();
    let out = generate(&model, &prompt, &opts, |id| {
        streamed.push(id);
        true
    })
    .unwrap();
    assert_eq!(out.ids, [506, 5279, 529, 506]);
    assert_eq!(out.stop, StopReason::MaxTokens);
    assert_eq!(streamed, out.ids);
}

/// The full head, always: what `ModelLogits` computes without the grammar-aware shortcut.
struct FullHead<'a>(smolt_decode::ModelLogits<'a>);

impl smolt_decode::LogitsSource for FullHead<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.0.forward(tokens)
    }
}

/// The shortcut, counting the steps whose mask is small enough to take it.
struct Counting<'a> {
    inner: smolt_decode::ModelLogits<'a>,
    small: usize,
}

impl smolt_decode::LogitsSource for Counting<'_> {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.inner.forward(tokens)
    }
    fn forward_masked(
        &mut self,
        tokens: &[u32],
        allowed: &smolt_constrain::TokenMask,
    ) -> anyhow::Result<Vec<f32>> {
        self.small += (allowed.num_allowed() * 8 <= self.inner.model.spec.vocab_size) as usize;
        self.inner.forward_masked(tokens, allowed)
    }
}

/// Scoring only the allowed head rows must not change a single output token: greedy
/// constrained generation gives the same ids with and without the shortcut, on schemas whose
/// masks are small (numbers, enums, patterns) and large (free strings).
#[test]
fn grammar_aware_head_gives_the_same_constrained_output() {
    use smolt_constrain::ConstraintSpec;
    use smolt_decode::{generate_constrained, greedy};
    let (model, tok, engine) = real_setup();
    let schema = serde_json::json!({
        "type": "object", "additionalProperties": false,
        "required": ["shop", "date", "total", "paid", "items"],
        "properties": {
            "shop": {"type": "string", "maxLength": 30},
            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "total": {"type": "number"},
            "paid": {"enum": ["cash", "card", "mobile"]},
            "items": {"type": "integer", "minimum": 0, "maximum": 99}
        }
    });
    let c = engine.compile(&ConstraintSpec::JsonSchema(schema)).unwrap();
    let prompts = [
        "Receipt:\nCORNER CAFE\n03/04/2024\n2 items\nTOTAL 5.70 CASH\n\nJSON:",
        "Extract as JSON.\n\nHARDWARE DEPOT 2024-05-17 Amount due $10.78 VISA\n\nJSON:",
    ];
    let mut small = 0;
    for p in prompts {
        let ids = tok.encode(p, true, true);
        let limits = smolt_decode::GenerateLimits::new(80);
        let mut fast = Counting {
            inner: smolt_decode::ModelLogits::new(&model),
            small: 0,
        };
        let a = generate_constrained(&mut fast, &ids, &mut c.start(), limits, greedy).unwrap();
        let mut full = FullHead(smolt_decode::ModelLogits::new(&model));
        let b = generate_constrained(&mut full, &ids, &mut c.start(), limits, greedy).unwrap();
        assert_eq!(
            a.ids,
            b.ids,
            "{p}: {:?} vs {:?}",
            tok.decode(&a.ids, true),
            tok.decode(&b.ids, true)
        );
        assert_eq!(a.finish, b.finish);
        small += fast.small;
    }
    // The shortcut was really taken (dates, numbers, the enum).
    assert!(small >= 6, "only {small} steps had small masks");
}

/// `answer` is what eval and `generate --prompts` call: constrained answers that end inside a
/// value are reported as truncated, finished ones as complete and valid; free ones stop at the
/// limit.
#[test]
fn answer_reports_how_each_answer_ended() {
    use smolt_constrain::ConstraintSpec;
    use smolt_decode::{answer, Ending, GenerateOptions};
    let (model, tok, engine) = real_setup();
    let schema = serde_json::json!({
        "type": "object", "additionalProperties": false, "required": ["total"],
        "properties": {"total": {"type": "number"}}
    });
    let c = engine.compile(&ConstraintSpec::JsonSchema(schema)).unwrap();
    let ids = tok.encode("Receipt:\nTOTAL 5.70 CASH\n\nJSON:", true, true);
    let opts = |n| GenerateOptions {
        max_new_tokens: n,
        ..Default::default()
    };

    let done = answer(&model, &ids, Some(&c), &opts(40)).unwrap();
    assert_eq!(done.ending, Ending::Complete);
    let v: serde_json::Value = serde_json::from_str(&tok.decode(&done.ids, true)).unwrap();
    assert!(v["total"].is_number(), "{v}");
    let stats = done.stats.expect("a constrained answer has counters");
    assert!(stats.forward_passes > 0 && stats.forward_passes <= done.ids.len());

    let cut = answer(&model, &ids, Some(&c), &opts(2)).unwrap();
    assert_eq!(
        cut.ending,
        Ending::Truncated,
        "{:?}",
        tok.decode(&cut.ids, true)
    );

    let free = answer(&model, &ids, None, &opts(3)).unwrap();
    assert!(free.stats.is_none());
    assert!(
        free.ending == Ending::Limit && free.ids.len() == 3 || free.ending == Ending::Complete,
        "{:?} after {} tokens",
        free.ending,
        free.ids.len()
    );
}

/// N-gram drafts checked in one pass save forward passes on extraction (the answer copies
/// the input), and change nothing else: a drafted pass stays below `Model::SAME_BITS_BELOW`
/// rows (the drafts asked for are capped), where every row's arithmetic is a one-token
/// pass's, so the ids and the probabilities of the picks equal the plain loop's bit for bit.
/// That the loop keeps greedy's choices is also checked with a scripted model
/// (`tests/constrained.rs`).
#[test]
fn drafts_save_passes_and_keep_the_answer() {
    use smolt_constrain::ConstraintSpec;
    use smolt_decode::{answer, Ending, GenerateOptions};
    let (model, tok, engine) = real_setup();
    let schema = serde_json::json!({
        "type": "object", "additionalProperties": false,
        "required": ["company", "address", "total"],
        "properties": {
            "company": {"type": "string", "maxLength": 60},
            "address": {"type": "string", "maxLength": 120},
            "total": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"}
        }
    });
    let c = engine.compile(&ConstraintSpec::JsonSchema(schema)).unwrap();
    let prompt = "Extract the receipt as JSON.\n\nGOLDEN DRAGON RESTAURANT SDN BHD\n\
                  NO 12, JALAN AMPANG, 50450 KUALA LUMPUR\nNASI LEMAK 2 x 6.50 13.00\n\
                  TEH TARIK 2.80\nTOTAL 15.80\nCASH 20.00\n\nJSON: ";
    let ids = tok.encode(prompt, true, true);
    let opts = |drafts| GenerateOptions {
        max_new_tokens: 80,
        draft_tokens: drafts,
        ..Default::default()
    };
    let plain = answer(&model, &ids, Some(&c), &opts(0)).unwrap();
    let fast = answer(&model, &ids, Some(&c), &opts(6)).unwrap();
    for drafted in [&fast, &answer(&model, &ids, Some(&c), &opts(10)).unwrap()] {
        assert_eq!(drafted.ids, plain.ids);
        let bits = |a: &smolt_decode::Answer| -> Vec<Option<u32>> {
            a.probs.iter().map(|p| p.map(f32::to_bits)).collect()
        };
        assert_eq!(bits(drafted), bits(&plain));
    }
    let text = tok.decode(&fast.ids, true);
    assert_eq!(fast.ending, Ending::Complete);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["company"], "GOLDEN DRAGON RESTAURANT SDN BHD", "{text}");
    assert_eq!(v["total"], "15.80", "{text}");
    assert!(v["address"].as_str().unwrap().contains("50450"), "{text}");
    let (p, f) = (plain.stats.unwrap(), fast.stats.unwrap());
    assert_eq!(p.drafted, 0);
    assert!(
        f.drafts_accepted >= 5 && f.forward_passes + 5 <= p.forward_passes,
        "{text}: {} of {} drafts accepted, {} passes vs {}",
        f.drafts_accepted,
        f.drafted,
        f.forward_passes,
        p.forward_passes
    );
}
