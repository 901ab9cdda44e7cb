//! The constrained decode loop against a scripted logits source: completion, truncation, end
//! tokens and forced-token batching, without running the model.

mod common;

use smolt_constrain::ConstraintSpec;
use smolt_decode::{
    chosen_prob, generate_constrained, greedy, Finish, GenerateLimits, LogitsSource,
};

/// Prefers tokens in the order given (earlier = higher logit), everything else lower, and
/// records each batch it is fed.
struct Scripted {
    vocab: usize,
    prefs: Vec<u32>,
    fed: Vec<Vec<u32>>,
}

impl LogitsSource for Scripted {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.fed.push(tokens.to_vec());
        let mut l = vec![0.0f32; self.vocab];
        for (i, &t) in self.prefs.iter().enumerate() {
            l[t as usize] = 100.0 - i as f32;
        }
        Ok(l)
    }
}

fn scripted(prefs: &[&str]) -> Scripted {
    let tok = common::tokenizer();
    let prefs = prefs
        .iter()
        .map(|p| tok.id_of(p).unwrap_or_else(|| panic!("no piece {p}")))
        .collect();
    Scripted {
        vocab: tok.vocab_size(),
        prefs,
        fed: Vec::new(),
    }
}

fn run(
    spec: ConstraintSpec,
    src: &mut Scripted,
    limits: GenerateLimits,
) -> smolt_decode::ConstrainedOutput {
    let c = common::engine().compile(&spec).unwrap();
    let mut st = c.start();
    generate_constrained(src, &[2], &mut st, limits, greedy).unwrap()
}

#[test]
fn an_unfinished_object_at_the_limit_is_truncated() {
    let spec = ConstraintSpec::JsonSchema(serde_json::json!({
        "type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]
    }));
    let mut src = scripted(&["a"]);
    let out = run(spec, &mut src, GenerateLimits::new(12));
    assert_eq!(out.finish, Finish::Truncated);
    assert!(!out.finish.is_complete());
    assert_eq!(out.ids.len(), 12);
    let text = common::tokenizer().decode(&out.ids, false);
    assert!(text.starts_with("{\"s\": \"aaa"), "{text}");
}

#[test]
fn end_token_only_where_complete() {
    // The source wants to stop at once; the grammar needs at least one `a` first.
    let mut src = scripted(&["<eos>", "a"]);
    let out = run(
        ConstraintSpec::Regex("a{1,5}".into()),
        &mut src,
        GenerateLimits::new(10),
    );
    assert_eq!(out.finish, Finish::EndToken(1));
    assert_eq!(common::tokenizer().decode(&out.ids, false), "a");

    let mut src = scripted(&["<end_of_turn>", "a"]);
    let out = run(
        ConstraintSpec::Regex("a{2,5}".into()),
        &mut src,
        GenerateLimits::new(10),
    );
    assert_eq!(out.finish, Finish::EndToken(106));
    assert_eq!(common::tokenizer().decode(&out.ids, false), "aa");
}

#[test]
fn limit_where_complete_is_still_valid() {
    let mut src = scripted(&["a"]);
    let out = run(
        ConstraintSpec::Regex("a+".into()),
        &mut src,
        GenerateLimits::new(4),
    );
    assert_eq!(out.finish, Finish::LimitAccepting);
    assert!(out.finish.is_complete());
}

#[test]
fn grammar_end_needs_no_end_token() {
    let mut src = scripted(&["no", "yes"]);
    let out = run(
        ConstraintSpec::Lark("start: \"yes\" | \"no\"\n".into()),
        &mut src,
        GenerateLimits::new(10),
    );
    assert_eq!(out.finish, Finish::GrammarEnd);
    assert_eq!(common::tokenizer().decode(&out.ids, false), "no");
}

#[test]
fn forced_tokens_ride_in_one_batch_and_change_nothing() {
    let spec = ConstraintSpec::Regex("The answer is (yes|no)\\. Because [a-z]{1,3}\\.".into());
    let tok = common::tokenizer();
    let mut batched = scripted(&["▁no", "no", "a"]);
    let out = run(spec.clone(), &mut batched, GenerateLimits::new(40));
    let text = tok.decode(&out.ids, false);
    assert!(text.starts_with("The answer is no. Because "), "{text}");
    assert!(out.finish.is_complete());
    // The prompt and the forced prefix go in the first pass.
    assert!(batched.fed[0].len() > 2, "{:?}", batched.fed[0]);
    assert_eq!(batched.fed[0][0], 2);
    assert!(out.stats.forced_tokens > 0 && out.stats.passes_saved == out.stats.forced_tokens);
    assert_eq!(out.stats.forward_passes, batched.fed.len());

    let mut single = scripted(&["▁no", "no", "a"]);
    let limits = GenerateLimits {
        batch_forced: false,
        ..GenerateLimits::new(40)
    };
    let out1 = run(spec, &mut single, limits);
    assert_eq!(out1.ids, out.ids, "batching must not change greedy output");
    // One probability per token; forced tokens have none, batched or not.
    assert_eq!(out.probs.len(), out.ids.len());
    assert!(out.probs.iter().filter(|p| p.is_none()).count() >= out.stats.forced_tokens);
    assert!(out.probs.iter().flatten().all(|&p| p > 0.0 && p <= 1.0));
    assert_eq!(out1.probs, out.probs);
    assert!(single.fed.iter().skip(1).all(|b| b.len() == 1));
    assert_eq!(
        out1.stats.forward_passes,
        out.stats.forward_passes + out.stats.passes_saved
    );
}

/// A toy model whose next token depends on everything fed so far, and which mostly copies:
/// after token `t` it prefers what followed the previous `t` in its history — except where a
/// hash of the history says otherwise, so that some n-gram drafts are wrong. It can verify
/// drafts and discard fed tokens, like the real model's KV cache.
struct Copier {
    vocab: usize,
    history: Vec<u32>,
    passes: usize,
    /// History length whose logits are verify position 0.
    verify_from: usize,
}

impl Copier {
    fn logits_after(&self, n: usize) -> Vec<f32> {
        let h = &self.history[..n];
        let mut x = h.iter().fold(0xcbf2_9ce4_8422_2325u64, |a, &t| {
            (a ^ t as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut l: Vec<f32> = (0..self.vocab)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 1000) as f32 / 20.0
            })
            .collect();
        if let Some((&last, before)) = h.split_last() {
            if let Some(p) = before.iter().rposition(|&t| t == last) {
                if x % 5 != 0 {
                    l[before.get(p + 1).copied().unwrap_or(last) as usize] = 100.0;
                }
            }
        }
        l
    }
}

impl LogitsSource for Copier {
    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        self.passes += 1;
        self.history.extend_from_slice(tokens);
        Ok(self.logits_after(self.history.len()))
    }
    fn feed_for_verify(&mut self, tokens: &[u32], n: usize) -> anyhow::Result<bool> {
        self.passes += 1;
        self.history.extend_from_slice(tokens);
        self.verify_from = self.history.len() + 1 - n;
        Ok(true)
    }
    fn verify_logits(
        &mut self,
        i: usize,
        allowed: &smolt_constrain::TokenMask,
    ) -> anyhow::Result<Vec<f32>> {
        let mut l = self.logits_after(self.verify_from + i);
        allowed.apply(&mut l);
        Ok(l)
    }
    fn discard(&mut self, n: usize) -> anyhow::Result<()> {
        self.history.truncate(self.history.len() - n);
        Ok(())
    }
}

/// Speculative decoding changes how many passes it takes, never what greedy produces: the
/// same ids, the same finish, and a model state that saw exactly prompt + output.
#[test]
fn speculation_keeps_greedy_output_and_saves_passes() {
    let tok = common::tokenizer();
    let eng = common::engine();
    let specs = [
        ConstraintSpec::JsonSchema(serde_json::json!({
            "type": "object", "additionalProperties": false, "required": ["shop", "city", "total"],
            "properties": {"shop": {"type": "string", "maxLength": 40},
                           "city": {"type": "string", "maxLength": 30},
                           "total": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"}}
        })),
        ConstraintSpec::Regex("(Golden|Dragon|Restaurant|Kuala|Lumpur| ){1,12}".into()),
        ConstraintSpec::AnyJson,
    ];
    let prompts = [
        "Receipt: Golden Dragon Restaurant, 12 Jalan Ampang, Kuala Lumpur. TOTAL 45.90\n\
         JSON: {\"shop\": \"Golden Dragon Restaurant\", \"city\": \"Kuala Lumpur\", \"total\": \"45.90\"}\n\
         Receipt: Golden Dragon Restaurant, Kuala Lumpur. TOTAL 12.00\nJSON: ",
        "Golden Dragon Restaurant Kuala Lumpur Golden Dragon",
        "{\"a\": [1, 2, 3], \"b\": {\"a\": [1, 2, 3]}} {\"a\": [1, 2",
    ];
    let (mut saved, mut drafted, mut rejected_some) = (0, 0, false);
    for (spec, prompt) in specs.iter().zip(prompts) {
        let c = eng.compile(spec).unwrap();
        let ids = tok.encode(prompt, true, false);
        for max in [7, 30, 60] {
            let run = |k: usize| {
                let mut src = Copier {
                    vocab: tok.vocab_size(),
                    history: Vec::new(),
                    passes: 0,
                    verify_from: 0,
                };
                let limits = GenerateLimits::new(max).with_speculation(k);
                let out =
                    generate_constrained(&mut src, &ids, &mut c.start(), limits, greedy).unwrap();
                (out, src)
            };
            let (plain, _) = run(0);
            let (spec_out, src) = run(6);
            assert_eq!(spec_out.ids, plain.ids, "{prompt:?} max {max}");
            assert_eq!(spec_out.finish, plain.finish, "{prompt:?} max {max}");
            assert_eq!(spec_out.probs.len(), spec_out.ids.len());
            assert_eq!(spec_out.probs, plain.probs, "{prompt:?} max {max}");
            assert_eq!(plain.stats.drafted, 0);
            // The model saw the prompt and the output, nothing else: no rejected draft is
            // left in its state (the output's tail is not fed when nothing needs its logits:
            // the last token, or the forced tokens that end the grammar).
            let all: Vec<u32> = ids.iter().chain(&spec_out.ids).copied().collect();
            assert!(
                all.starts_with(&src.history) && src.history.len() > ids.len(),
                "{prompt:?} max {max}: fed {:?}, output {:?}",
                &src.history[ids.len().min(src.history.len())..],
                spec_out.ids
            );
            assert_eq!(src.passes, spec_out.stats.forward_passes);
            // Each accepted draft saves a pass, but for one where a draft run ends just before
            // forced tokens (plain decoding feeds those with the token before them).
            let (sp, pp) = (spec_out.stats.forward_passes, plain.stats.forward_passes);
            assert!(
                sp <= pp && sp + spec_out.stats.drafts_accepted >= pp,
                "{sp} passes with {} drafts accepted, {pp} without",
                spec_out.stats.drafts_accepted
            );
            saved += pp - sp;
            drafted += spec_out.stats.drafted;
            rejected_some |= spec_out.stats.drafts_accepted < spec_out.stats.drafted;
        }
    }
    assert!(saved >= 10, "only {saved} passes saved, {drafted} drafts");
    assert!(
        rejected_some,
        "no draft was ever rejected: the test misses that path"
    );
}

/// Prefers `cycle[i % n]` at the i-th forward pass: a model stuck in a loop.
struct Cycle {
    vocab: usize,
    cycle: Vec<u32>,
    step: usize,
}

impl LogitsSource for Cycle {
    fn forward(&mut self, _tokens: &[u32]) -> anyhow::Result<Vec<f32>> {
        let mut l = vec![0.0f32; self.vocab];
        l[self.cycle[self.step % self.cycle.len()] as usize] = 100.0;
        self.step += 1;
        Ok(l)
    }
}

fn number_schema(extra: serde_json::Value) -> ConstraintSpec {
    let mut n = serde_json::json!({"type": "number"});
    n.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ConstraintSpec::JsonSchema(serde_json::json!({
        "type": "object", "properties": {"total": n}, "required": ["total"],
        "additionalProperties": false
    }))
}

/// A model that would write "7777…" forever gets a valid answer with 16 integral digits, as
/// llama.cpp's schema grammars bound numbers, and the stop is counted.
#[test]
fn an_unbounded_number_stops_at_sixteen_digits() {
    // Wants "7" always, and "}" once no more "7" is allowed.
    let mut src = scripted(&["7", "}"]);
    let out = run(
        number_schema(serde_json::json!({})),
        &mut src,
        GenerateLimits::new(60),
    );
    let text = common::tokenizer().decode(&out.ids, false);
    assert!(out.finish.is_complete(), "{:?}: {text}", out.finish);
    let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
    assert_eq!(v["total"].to_string(), "7".repeat(16), "{text}");
    assert_eq!(out.stats.guard.numbers_capped, 1);

    // "0.0000…": the fractional part stops at 16 digits too.
    let mut src = scripted(&["0", ".", "}"]);
    let out = run(
        number_schema(serde_json::json!({})),
        &mut src,
        GenerateLimits::new(60),
    );
    let text = common::tokenizer().decode(&out.ids, false);
    assert!(out.finish.is_complete(), "{text}");
    assert_eq!(text, format!("{{\"total\": 0.{}}}", "0".repeat(16)));
}

/// The schema's own limits win: bounds of 10^17..10^18 let 18 digits through.
#[test]
fn a_schema_bound_beyond_the_cap_lifts_it() {
    let mut src = scripted(&["7"]);
    let spec =
        number_schema(serde_json::json!({"type": "integer", "minimum": 1e17, "maximum": 1e18}));
    let out = run(spec, &mut src, GenerateLimits::new(60));
    let text = common::tokenizer().decode(&out.ids, false);
    assert!(out.finish.is_complete(), "{text}");
    assert_eq!(text, format!("{{\"total\": {}}}", "7".repeat(18)));
    assert_eq!(out.stats.guard.numbers_capped, 0);
}

/// A string value that loops is closed after four repeats instead of running to the limit.
#[test]
fn a_looping_string_is_closed() {
    let tok = common::tokenizer();
    let id = |p: &str| tok.id_of(p).unwrap_or_else(|| panic!("no piece {p}"));
    let mut src = Cycle {
        vocab: tok.vocab_size(),
        cycle: vec![id("▁the"), id("▁cat")],
        step: 0,
    };
    let spec = ConstraintSpec::JsonSchema(serde_json::json!({
        "type": "object", "properties": {"address": {"type": "string"}}, "required": ["address"],
        "additionalProperties": false
    }));
    let c = common::engine().compile(&spec).unwrap();
    let mut st = c.start();
    let out =
        generate_constrained(&mut src, &[2], &mut st, GenerateLimits::new(200), greedy).unwrap();
    let text = tok.decode(&out.ids, false);
    assert!(out.finish.is_complete(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
    assert_eq!(v["address"], " the cat".repeat(4).as_str(), "{text}");
    assert_eq!(out.stats.guard.loops_stopped, 1);
    assert!(
        out.ids.len() < 20,
        "stopped early: {} tokens",
        out.ids.len()
    );
}

/// A list that repeats one item is closed after a few repeats instead of running to the limit
/// (a receipt may list one article several times, so it takes more than a string loop).
#[test]
fn a_looping_list_is_closed() {
    let item = serde_json::json!({
        "type": "object", "properties": {"name": {"const": "TEA"}}, "required": ["name"],
        "additionalProperties": false
    });
    let spec = ConstraintSpec::JsonSchema(serde_json::json!({
        "type": "object", "properties": {"items": {"type": "array", "items": item}},
        "required": ["items"], "additionalProperties": false
    }));
    let mut src = scripted(&["{", ",", "▁{", "}"]);
    let out = run(spec, &mut src, GenerateLimits::new(300));
    let text = common::tokenizer().decode(&out.ids, false);
    assert!(out.finish.is_complete(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
    let n = v["items"].as_array().unwrap().len();
    assert_eq!(n, smolt_constrain::ramble::ITEM_REPEATS + 1, "{text}");
    assert_eq!(out.stats.guard.loops_stopped, 1);
}

#[test]
fn the_chosen_probability_is_over_the_allowed_tokens_only() {
    let ninf = f32::NEG_INFINITY;
    let p = chosen_prob(&[0.0, ninf, (3.0f32).ln(), ninf], 2).unwrap();
    assert!((p - 0.75).abs() < 1e-6, "{p}");
    assert!((chosen_prob(&[0.0, 0.0, 0.0, 0.0], 1).unwrap() - 0.25).abs() < 1e-6);
    // One allowed token: the grammar chose, not the model.
    assert_eq!(chosen_prob(&[ninf, 5.0, ninf], 1), None);
    assert_eq!(chosen_prob(&[0.0, 1.0], 7), None);
}

/// At a real vocabulary's size (Gemma's 262,144 logits, half masked, a length that leaves a
/// tail after the 16-lane sums), the vectorised softmax gives the f64 reference's probability
/// to 1e-5 relative, for a likely and an unlikely token.
#[test]
fn the_chosen_probability_matches_an_f64_softmax_at_vocabulary_size() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let logits: Vec<f32> = (0..262_147)
        .map(|i| {
            if i % 2 == 1 {
                f32::NEG_INFINITY
            } else {
                rng.gen_range(-30.0f32..12.0)
            }
        })
        .collect();
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| f64::from(l - max).exp())
        .sum();
    let top = logits.iter().position(|&l| l == max).unwrap();
    for token in [top, 262_146] {
        let want = f64::from(logits[token] - max).exp() / sum;
        let got = f64::from(chosen_prob(&logits, token as u32).unwrap());
        assert!(
            (got - want).abs() <= 1e-5 * want,
            "token {token}: {got} vs {want}"
        );
    }
}

/// A copy field keeps to the prompt's text: a model that would write "LLLL…" into an address
/// copies what "HELLO WORLD" has ("LL") and closes, while the same model fills a field that
/// is not a copy until the loop guard stops it. Only the marked field is held, and only for
/// a state started with the prompt.
#[test]
fn a_copy_field_keeps_to_the_prompt() {
    let tok = common::tokenizer();
    let spec = ConstraintSpec::JsonSchema(serde_json::json!({
        "type": "object",
        "properties": {
            "note": {"type": "string"},
            "address": {"type": "string", "x-smolt-copy": true}
        },
        "required": ["note", "address"], "additionalProperties": false
    }));
    let c = common::engine().compile(&spec).unwrap();
    assert_eq!(c.copy_fields(), ["address"]);
    let prompt = tok.encode("Deliver to HELLO WORLD\n", true, false);
    let answer = |copying: bool| {
        let mut src = scripted(&["L", "\""]);
        let mut st = if copying {
            c.start_copying(&prompt)
        } else {
            c.start()
        };
        let out =
            generate_constrained(&mut src, &prompt, &mut st, GenerateLimits::new(200), greedy)
                .unwrap();
        let text = tok.decode(&out.ids, false);
        assert!(out.finish.is_complete(), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
        (v, out.stats.guard)
    };
    let (v, guard) = answer(true);
    assert_eq!(v["address"], "LL", "{v}");
    assert!(v["note"].as_str().unwrap().len() >= 32, "{v}");
    assert_eq!((guard.copies_held, guard.loops_stopped), (1, 1));
    let (v, guard) = answer(false);
    assert!(v["address"].as_str().unwrap().len() >= 32, "{v}");
    assert_eq!((guard.copies_held, guard.loops_stopped), (0, 2));
}
