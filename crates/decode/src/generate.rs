//! The generation loop: prefill the prompt in one pass, then one token per forward.

use crate::sampler::{Sampler, SamplingParams};
use smolt_model::{KvCache, Logits, Model, Result, SpecialTokens};

/// What to generate and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// At most this many new tokens (stop tokens excluded).
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Stop at the model's end-of-generation tokens (`<eos>`, and `<end_of_turn>` for Gemma:
    /// `model.special.end_of_generation`). Off for fixed-length runs such as reference checks.
    pub stop_at_end_of_generation: bool,
    /// More ids that end generation (e.g. a newline for one-line answers).
    pub stop_tokens: Vec<u32>,
    /// Greedy constrained answers ([`crate::answer`]) check up to this many draft tokens per
    /// forward pass, proposed by n-gram lookup in the prompt (0: one token per pass).
    pub draft_tokens: usize,
}

/// Draft tokens per speculative step: as many as a step of one token can carry while the
/// pass stays below [`Model::SAME_BITS_BELOW`](smolt_model::Model::SAME_BITS_BELOW) rows,
/// where each row gets a one-token pass's bits, so drafting changes the time, never the
/// answer. The one-row kernels read each weight once for up to four rows, so such a pass
/// costs little more than one token's: on a 2-core Xeon a SROIE receipt with a fine-tuned
/// adapter took 2.82 → 2.28 s for the whole process (38 passes instead of 72). With room for
/// 6 drafts (one-row kernels up to 7 rows) it took 2.16 s and gave the same 100 answers on
/// 100 receipts as plain decoding, but prompts of 4 to 7 tokens then got other bits alone
/// than in a served batch; see `ONE_ROW_BELOW` in smolt-quant.
pub const DEFAULT_DRAFT_TOKENS: usize = smolt_model::Model::SAME_BITS_BELOW - 2;

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 256,
            sampling: SamplingParams::default(),
            stop_at_end_of_generation: true,
            stop_tokens: Vec::new(),
            draft_tokens: DEFAULT_DRAFT_TOKENS,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced this stop token (it is not in [`Generation::ids`]).
    StopToken(u32),
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The callback asked to stop.
    Callback,
    /// The KV cache reached the model's context length.
    ContextFull,
}

/// The new tokens and why they ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// New token ids, without the prompt and without the stop token.
    pub ids: Vec<u32>,
    pub stop: StopReason,
}

/// Generates a continuation of `prompt` (token ids, BOS included if the model wants one) in a
/// fresh KV cache. `on_token` sees each new token as soon as it is chosen (for streaming) and
/// returns `false` to stop early; stop tokens are not passed to it.
///
/// ```no_run
/// use smolt_decode::{generate, GenerateOptions};
/// use smolt_model::{Model, Precision};
/// let model = Model::load("gemma-3-270m-q4_k_m.gguf", Precision::Fast)?;
/// let opts = GenerateOptions { max_new_tokens: 32, ..Default::default() };
/// let out = generate(&model, &[2, 818, 5279, 529, 7001, 563], &opts, |id| {
///     print!("{id} ");
///     true
/// })?;
/// println!("\n{} tokens, stopped by {:?}", out.ids.len(), out.stop);
/// # Ok::<(), smolt_model::ModelError>(())
/// ```
pub fn generate(
    model: &Model,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: impl FnMut(u32) -> bool,
) -> Result<Generation> {
    let mut cache = model.new_cache();
    generate_in(model, &mut cache, prompt, opts, on_token)
}

/// [`generate`] continuing from `cache`: `prompt` holds only the tokens after those already
/// cached (a chat's next turn, or a shared system prompt prefilled once). On return the cache
/// holds every token that was fed: the prompt and each returned id except the last one, which
/// is only fed when a later token was needed, i.e. it is in the cache exactly when generation
/// ended at a stop token (the stop token itself is never fed). Feed what is missing with the
/// next turn's tokens.
pub fn generate_in(
    model: &Model,
    cache: &mut KvCache,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: impl FnMut(u32) -> bool,
) -> Result<Generation> {
    if opts.max_new_tokens == 0 {
        model.forward(prompt, cache, Logits::None)?;
        return Ok(Generation {
            ids: Vec::new(),
            stop: StopReason::MaxTokens,
        });
    }
    let fed = cache.len();
    let context = Context {
        fed,
        length: model.spec.context_length,
        special: &model.special,
    };
    generate_with(
        |tokens| model.forward(tokens, cache, Logits::Last),
        context,
        prompt,
        opts,
        on_token,
    )
}

/// Where a sequence stands in its model: positions already fed before the prompt, the model's
/// context length, and its end-of-generation tokens.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub fed: usize,
    pub length: usize,
    pub special: &'a SpecialTokens,
}

/// The loop of [`generate_in`] over any way of running the model: `feed` takes the tokens to
/// append (the prompt first, then each chosen token) and returns the logits of the last one.
/// The server's batch engine runs many sequences' `feed` calls in one forward pass.
/// `opts.max_new_tokens == 0` feeds nothing.
pub fn generate_with<E>(
    mut feed: impl FnMut(&[u32]) -> std::result::Result<Vec<f32>, E>,
    context: Context,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> std::result::Result<Generation, E> {
    let mut sampler = Sampler::new(opts.sampling.clone());
    let is_stop = |id: u32| {
        opts.stop_tokens.contains(&id)
            || (opts.stop_at_end_of_generation && context.special.is_end_of_generation(id))
    };
    let mut ids = Vec::new();
    if opts.max_new_tokens == 0 {
        return Ok(Generation {
            ids,
            stop: StopReason::MaxTokens,
        });
    }
    // Batched prefill: the whole prompt in one pass, logits for its last position only.
    let mut logits = feed(prompt)?;
    let mut fed = context.fed + prompt.len();
    loop {
        let id = sampler.sample(&logits);
        if is_stop(id) {
            return Ok(Generation {
                ids,
                stop: StopReason::StopToken(id),
            });
        }
        ids.push(id);
        if !on_token(id) {
            return Ok(Generation {
                ids,
                stop: StopReason::Callback,
            });
        }
        if ids.len() >= opts.max_new_tokens {
            return Ok(Generation {
                ids,
                stop: StopReason::MaxTokens,
            });
        }
        if fed >= context.length {
            return Ok(Generation {
                ids,
                stop: StopReason::ContextFull,
            });
        }
        logits = feed(&[id])?;
        fed += 1;
    }
}
