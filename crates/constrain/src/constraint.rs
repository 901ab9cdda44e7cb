//! Compiling a constraint once, then tracking it token by token for each sequence.

use std::path::Path;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use smolt_tokenizer::Tokenizer;

use crate::copy::{copy_fields, Substrings};
use crate::env::{end_tokens, SmoltTokEnv, SPECIAL_MARKER};
use crate::error::{ConstrainError, Result};
use crate::layout::JsonLayout;
use crate::meta_schema;
use crate::ramble::{CopyRule, GuardCounts, NumberCaps, RambleGuard};
use crate::tools::ToolCallSpec;

/// What the output must match, as the user wrote it (before compilation).
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintSpec {
    /// A JSON Schema (`--schema file.json`).
    JsonSchema(Value),
    /// Any JSON value (`--json`).
    AnyJson,
    /// A regular expression (Rust `regex` syntax) that the whole output must match.
    Regex(String),
    /// A Lark grammar in llguidance's dialect (`--grammar file.lark`); `start` is the root.
    Lark(String),
    /// A text answer or calls to tools, as a request's tools and tool choice allow
    /// (see [`crate::tools`]).
    ToolCalls(ToolCallSpec),
}

impl ConstraintSpec {
    /// Reads a JSON Schema file.
    pub fn json_schema_file(path: impl AsRef<Path>) -> Result<ConstraintSpec> {
        let path = path.as_ref();
        let text = read(path)?;
        Self::json_schema_str(&text).map_err(|e| match e {
            ConstrainError::Json { source, .. } => ConstrainError::Json {
                what: format!("schema {}", path.display()),
                source,
            },
            e => e,
        })
    }

    pub fn json_schema_str(text: &str) -> Result<ConstraintSpec> {
        serde_json::from_str(text)
            .map(ConstraintSpec::JsonSchema)
            .map_err(|source| ConstrainError::Json {
                what: "the schema".into(),
                source,
            })
    }

    /// Reads a Lark grammar file.
    pub fn lark_file(path: impl AsRef<Path>) -> Result<ConstraintSpec> {
        read(path.as_ref()).map(ConstraintSpec::Lark)
    }

    /// How errors name this constraint.
    fn what(&self) -> &'static str {
        match self {
            ConstraintSpec::JsonSchema(_) => "the JSON schema",
            ConstraintSpec::AnyJson => "the JSON constraint",
            ConstraintSpec::Regex(_) => "the regex",
            ConstraintSpec::Lark(_) => "the grammar",
            ConstraintSpec::ToolCalls(_) => "the tool list",
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ConstrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Per-process constraint machinery for one vocabulary: the token trie and llguidance's
/// parser factory with its precomputed token slices.
///
/// Building it costs ≈0.7 s on Gemma's 262k-token vocabulary (DESIGN.md), so make one per
/// process (or per served model) and share it: it is `Send + Sync`, and every
/// [`ConstraintEngine::compile`] and [`Constraint::start`] afterwards is sub-millisecond.
pub struct ConstraintEngine {
    env: Arc<SmoltTokEnv>,
    factory: ParserFactory,
    end_tokens: Vec<u32>,
    json_layout: JsonLayout,
}

impl ConstraintEngine {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Result<Arc<ConstraintEngine>> {
        Self::with_json_layout(tokenizer, JsonLayout::default())
    }

    pub fn with_json_layout(
        tokenizer: Arc<Tokenizer>,
        json_layout: JsonLayout,
    ) -> Result<Arc<ConstraintEngine>> {
        let end_tokens = end_tokens(&tokenizer);
        let env = Arc::new(SmoltTokEnv::new(tokenizer)?);
        let tok_env: TokEnv = env.clone();
        let mut factory = ParserFactory::new_simple(&tok_env)
            .map_err(|e| ConstrainError::Engine(e.to_string()))?;
        // Warnings reach the user through `Constraint::warnings`, not stray stderr lines, and
        // errors say what is wrong without a dump of the parser's internal state.
        factory.quiet();
        factory.limits_mut().verbose_errors = false;
        Ok(Arc::new(ConstraintEngine {
            env,
            factory,
            end_tokens,
            json_layout,
        }))
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        self.env.tokenizer()
    }

    /// The llguidance tokenizer environment (for tests and tools that need the trie).
    pub fn tok_env(&self) -> &Arc<SmoltTokEnv> {
        &self.env
    }

    /// The layout JSON is generated in, where a schema does not set its own (what
    /// [`crate::ToolCallSpec::render`] needs to write answers this engine accepts).
    pub fn json_layout(&self) -> &JsonLayout {
        &self.json_layout
    }

    /// Tokens that end generation; a mask allows them only where the output is complete.
    pub fn end_tokens(&self) -> &[u32] {
        &self.end_tokens
    }

    pub fn vocab_size(&self) -> usize {
        self.env.tok_trie().vocab_size()
    }

    /// Checks and compiles `spec`. Everything that can be known before generating is checked
    /// here, so a bad schema fails the command up front instead of mid-generation:
    /// meta-schema validity, keywords llguidance cannot enforce, contradictions, syntax, and
    /// a grammar whose language is empty.
    pub fn compile(self: &Arc<Self>, spec: &ConstraintSpec) -> Result<Constraint> {
        let what = spec.what();
        if let ConstraintSpec::JsonSchema(schema) = spec {
            meta_schema::check(schema).map_err(|v| ConstrainError::InvalidSchema {
                what: what.into(),
                pointer: v.pointer,
                message: v.message,
            })?;
        }
        let parser = self
            .factory
            .create_parser(self.grammar(spec))
            .map_err(|e| match spec {
                ConstraintSpec::ToolCalls(tools) => self.rejected_tool(tools, &e.to_string()),
                _ => rejected(spec, &e.to_string()),
            })?;
        if let ConstraintSpec::Lark(g) = spec {
            // After llguidance's own checks, so that syntax errors get its messages.
            if let Some(dead) = crate::lark_check::unproductive_rules(g) {
                if dead.iter().any(|r| r == "start") {
                    return Err(ConstrainError::AcceptsNothing {
                        what: what.into(),
                        detail: format!(
                            "rule `start` can never finish: every alternative of {} \
                             needs another expansion of itself (add a base case such \
                             as an alternative without the recursion)",
                            dead.iter()
                                .map(|r| format!("`{r}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
        }
        let mut prototype = Matcher::new(Ok(parser));
        if let Some(e) = prototype.get_error() {
            return Err(rejected(spec, &e));
        }
        let warnings = prototype.grammar_warnings();
        // A grammar with an empty language still compiles; its first mask is empty and the
        // start is not accepting. Checking here turns a silent dead end into an error. The
        // probe is a clone so that `start` hands out a parser that has computed nothing.
        let mut probe = prototype.clone();
        let first = probe
            .compute_mask()
            .map_err(|e| ConstrainError::AcceptsNothing {
                what: what.into(),
                detail: format!(
                    "llguidance finds no way to start it ({})",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            })?;
        let accepting = probe.is_accepting().unwrap_or(false);
        if first.is_zero() && !accepting {
            return Err(ConstrainError::AcceptsNothing {
                what: what.into(),
                detail: "no token is allowed at the start and the empty output is not \
                         accepted (look for a rule that can never finish, or alternatives \
                         that exclude each other)"
                    .into(),
            });
        }
        // The guard reads JSON lexically; user grammars and tool calls (text around JSON)
        // are left as written.
        let guard = match spec {
            ConstraintSpec::JsonSchema(schema) => Some(NumberCaps::for_schema(schema)),
            ConstraintSpec::AnyJson => Some(NumberCaps::DEFAULT),
            _ => None,
        };
        let copy_fields = match spec {
            ConstraintSpec::JsonSchema(schema) => copy_fields(schema),
            _ => Vec::new(),
        };
        Ok(Constraint {
            engine: self.clone(),
            prototype,
            warnings,
            guard,
            copy_fields,
        })
    }

    fn grammar(&self, spec: &ConstraintSpec) -> TopLevelGrammar {
        match spec {
            ConstraintSpec::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(self.with_layout(schema.clone()))
            }
            ConstraintSpec::AnyJson => {
                TopLevelGrammar::from_json_schema(self.with_layout(serde_json::json!({})))
            }
            ConstraintSpec::Regex(rx) => TopLevelGrammar::from_regex(rx),
            ConstraintSpec::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            ConstraintSpec::ToolCalls(t) => TopLevelGrammar::from_lark(t.lark(&self.json_layout)),
        }
    }

    /// A schema as llguidance gets it: formats bounded ([`crate::formats`]), in the layout.
    fn with_layout(&self, schema: Value) -> Value {
        self.json_layout.apply_to(crate::formats::bounded(schema))
    }

    /// llguidance's error for the whole tool grammar does not say which function's schema it
    /// could not honour; compiling each alone finds it.
    fn rejected_tool(&self, spec: &ToolCallSpec, message: &str) -> ConstrainError {
        for tool in spec.tools().tools() {
            let alone = ConstraintSpec::JsonSchema(tool.parameters.clone());
            if let Err(e) = self.factory.create_parser(self.grammar(&alone)) {
                let mut e = rejected(&alone, &e.to_string());
                if let ConstrainError::Rejected { what, .. } = &mut e {
                    *what = format!("the parameters of tool `{}`", tool.name);
                }
                return e;
            }
        }
        rejected(&ConstraintSpec::ToolCalls(spec.clone()), message)
    }
}

fn rejected(spec: &ConstraintSpec, message: &str) -> ConstrainError {
    let hint = match spec {
        ConstraintSpec::JsonSchema(_) if message.contains("Unimplemented keys") => {
            "\nhint: llguidance enforces a subset of JSON Schema \
             (https://github.com/guidance-ai/llguidance/blob/main/docs/json_schema.md); \
             remove the keyword or move it under a key llguidance ignores, such as \
             \"description\""
        }
        ConstraintSpec::JsonSchema(_) if message.contains("Unsatisfiable") => {
            "\nhint: no JSON value satisfies this part of the schema; check bounds \
             (minimum/maximum, minLength/maxLength, minItems/maxItems) and `type` \
             intersections"
        }
        ConstraintSpec::Lark(_) => {
            "\nhint: grammar syntax: https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md"
        }
        _ => "",
    };
    ConstrainError::Rejected {
        what: spec.what().into(),
        message: message.trim_end().to_string(),
        hint: hint.into(),
    }
}

/// A compiled, validated constraint; start one [`ConstraintState`] per generated sequence.
pub struct Constraint {
    engine: Arc<ConstraintEngine>,
    prototype: Matcher,
    warnings: Vec<String>,
    /// The ramble guard's number caps, for JSON constraints ([`crate::ramble`]).
    guard: Option<NumberCaps>,
    /// Properties whose string values copy the prompt ([`crate::copy`]).
    copy_fields: Vec<String>,
}

impl Constraint {
    /// llguidance's remarks on the grammar (e.g. unused rules); worth showing, not fatal.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn engine(&self) -> &Arc<ConstraintEngine> {
        &self.engine
    }

    /// The schema's copy fields ([`crate::copy`]), sorted; empty for other constraints.
    pub fn copy_fields(&self) -> &[String] {
        &self.copy_fields
    }

    /// A fresh state for an answer to `prompt` (its token ids): as [`start`](Self::start),
    /// and the schema's copy fields, if any, keep to spans of the prompt's text. Building
    /// the prompt's substring automaton is linear in its length (well under a millisecond
    /// for a few thousand tokens).
    pub fn start_copying(&self, prompt: &[u32]) -> ConstraintState {
        let mut state = self.start();
        if self.copy_fields.is_empty() {
            return state;
        }
        let trie = self.engine.env.tok_trie();
        let text: Vec<u8> = prompt
            .iter()
            .map(|&t| trie.token(t))
            .filter(|b| b.first() != Some(&SPECIAL_MARKER))
            .flatten()
            .copied()
            .collect();
        state.guard = state.guard.map(|g| {
            g.with_copy(CopyRule {
                fields: self.copy_fields.clone(),
                text: Substrings::new(&text),
            })
        });
        state
    }

    /// A fresh state at the start of the output. Cloning the compiled parser shares its
    /// lexer tables, so this costs microseconds.
    pub fn start(&self) -> ConstraintState {
        let trie = self.engine.env.tok_trie();
        let mut end_set = trie.alloc_token_set();
        for &t in &self.engine.end_tokens {
            end_set.allow_token(t);
        }
        ConstraintState {
            matcher: self.prototype.clone(),
            mask: TokenMask {
                bits: trie.alloc_token_set(),
            },
            mask_fresh: false,
            end_tokens: self.engine.end_tokens.clone(),
            end_set,
            ended: false,
            guard: self.guard.map(RambleGuard::new),
            env: self.engine.env.clone(),
        }
    }
}

/// The set of tokens allowed next. A bitset over the vocabulary (bit `i % 32` of word
/// `i / 32` is token `i`), as llguidance computes it.
#[derive(Clone, Debug)]
pub struct TokenMask {
    bits: SimpleVob,
}

impl TokenMask {
    pub fn is_allowed(&self, id: u32) -> bool {
        (id as usize) < self.bits.len() && self.bits.is_allowed(id)
    }

    /// The raw bitset words, for callers that apply masks in bulk (e.g. on a GPU).
    pub fn as_words(&self) -> &[u32] {
        self.bits.as_slice()
    }

    pub fn num_allowed(&self) -> usize {
        self.bits.num_set()
    }

    /// Allowed ids in increasing order.
    pub fn allowed(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for (w, &word) in self.as_words().iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let b = word.trailing_zeros();
                v.push(w as u32 * 32 + b);
                word &= word - 1;
            }
        }
        v
    }

    /// Sets every disallowed logit to `-inf`, including any beyond the tokenizer's vocabulary
    /// (a model's head may be padded), so that any sampler picks an allowed token.
    pub fn apply(&self, logits: &mut [f32]) {
        let words = self.as_words();
        for (w, chunk) in logits.chunks_mut(32).enumerate() {
            let word = words.get(w).copied().unwrap_or(0);
            if word == u32::MAX {
                continue;
            }
            for (b, l) in chunk.iter_mut().enumerate() {
                if word >> b & 1 == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// The allowed token with the highest logit (lowest id on a tie, like greedy decoding
    /// elsewhere in smolt), without touching `logits`. `None` if nothing is allowed.
    pub fn argmax(&self, logits: &[f32]) -> Option<u32> {
        let mut best: Option<(u32, f32)> = None;
        for (w, &word) in self.as_words().iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let id = w as u32 * 32 + word.trailing_zeros();
                word &= word - 1;
                let Some(&l) = logits.get(id as usize) else {
                    return best.map(|b| b.0);
                };
                match best {
                    Some((_, bl)) if l <= bl => {}
                    _ => best = Some((id, l)),
                }
            }
        }
        best.map(|b| b.0)
    }
}

/// One sequence's progress through a [`Constraint`].
///
/// The loop is: [`mask`](Self::mask) → sample an allowed token → [`commit`](Self::commit),
/// until [`is_finished`](Self::is_finished). After a commit, [`forced_tokens`](Self::forced_tokens)
/// lists tokens the grammar leaves no choice about; commit them with
/// [`commit_forced`](Self::commit_forced) and feed them to the model in one batch.
pub struct ConstraintState {
    matcher: Matcher,
    mask: TokenMask,
    mask_fresh: bool,
    end_tokens: Vec<u32>,
    /// The mask once finished: the end tokens only.
    end_set: SimpleVob,
    /// An end token was committed.
    ended: bool,
    guard: Option<RambleGuard>,
    env: Arc<SmoltTokEnv>,
}

impl ConstraintState {
    /// Tokens allowed next. End tokens are in it only where the output is complete; once
    /// the grammar is finished it holds only the end tokens. Cached until the next commit.
    pub fn mask(&mut self) -> Result<&TokenMask> {
        if !self.mask_fresh {
            // Asking a stopped matcher for a mask is an error in llguidance (DESIGN.md):
            // after a JSON object's closing `}` only ending is left.
            self.mask.bits = if self.is_finished() {
                self.end_set.clone()
            } else {
                let mut bits = self.matcher.compute_mask().map_err(engine)?;
                if let Some(g) = &mut self.guard {
                    g.narrow(&mut bits, self.env.tok_trie());
                }
                bits
            };
            self.mask_fresh = true;
        }
        Ok(&self.mask)
    }

    /// Advances past `token`, which must be allowed by the current mask. An end token ends
    /// the sequence (allowed only where the output is complete).
    pub fn commit(&mut self, token: u32) -> Result<()> {
        self.mask_fresh = false;
        if self.end_tokens.contains(&token) {
            if !self.is_finished() && !self.is_accepting() {
                return Err(ConstrainError::Engine(format!(
                    "end token {token} committed where the output is incomplete"
                )));
            }
            self.ended = true;
            return Ok(());
        }
        if self.is_finished() {
            return Err(ConstrainError::Engine(format!(
                "token {token} committed after the constraint finished"
            )));
        }
        self.matcher.consume_token(token).map_err(engine)?;
        self.follow(&[token]);
        Ok(())
    }

    /// Lets the guard follow committed tokens.
    fn follow(&mut self, tokens: &[u32]) {
        if let Some(g) = &mut self.guard {
            for &t in tokens {
                g.push(self.env.tok_trie().token(t));
            }
        }
    }

    /// How often the ramble guard narrowed the choice in this sequence ([`crate::ramble`]).
    pub fn guard_counts(&self) -> GuardCounts {
        self.guard
            .as_ref()
            .map(RambleGuard::counts)
            .unwrap_or_default()
    }

    /// Tokens the grammar forces next, in canonical tokenization: the text has no other legal
    /// continuation *and* no longer token could cover it differently. Does not commit them.
    pub fn forced_tokens(&mut self) -> Vec<u32> {
        if self.is_finished() {
            return Vec::new();
        }
        self.matcher.compute_ff_tokens()
    }

    /// Commits tokens from [`forced_tokens`](Self::forced_tokens) (or any allowed sequence).
    pub fn commit_forced(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.mask_fresh = false;
        self.matcher.consume_tokens(tokens).map_err(engine)?;
        self.follow(tokens);
        Ok(())
    }

    /// How many of `tokens`, from the first, could be committed in turn; commits nothing.
    pub fn valid_prefix(&mut self, tokens: &[u32]) -> usize {
        if self.is_finished() {
            return 0;
        }
        self.matcher.validate_tokens(tokens).unwrap_or(0)
    }

    /// Takes back the last `n` committed tokens (none of them an end token): the drafts a
    /// speculative step committed to get their masks and the model then rejected.
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.mask_fresh = false;
        self.matcher.rollback(n).map_err(engine)?;
        if let Some(g) = &mut self.guard {
            g.rollback(n);
        }
        Ok(())
    }

    /// Bytes the grammar forces next even where no single token is forced (e.g. `", "` that
    /// `"`, `",` and `", "` tokens could all start); diagnostic.
    pub fn forced_bytes(&mut self) -> Vec<u8> {
        if self.is_finished() {
            return Vec::new();
        }
        self.matcher.compute_ff_bytes()
    }

    /// Whether the output so far is a complete match (ending here would be valid).
    pub fn is_accepting(&mut self) -> bool {
        self.ended || self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether nothing more may be generated: the grammar reached its end (a JSON value's
    /// closing bracket) or an end token was committed.
    pub fn is_finished(&self) -> bool {
        self.ended || (self.matcher.is_stopped() && !self.matcher.is_error())
    }

    /// llguidance's error, if the matcher broke (it then allows nothing).
    pub fn error(&self) -> Option<String> {
        self.matcher.get_error()
    }

    /// The end tokens (`<eos>`, `<end_of_turn>`).
    pub fn end_tokens(&self) -> &[u32] {
        &self.end_tokens
    }
}

fn engine(e: anyhow::Error) -> ConstrainError {
    ConstrainError::Engine(e.to_string())
}
