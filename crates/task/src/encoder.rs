//! Text → token ids, as the task layer needs it: a small trait so that rendering, data checks
//! and training's data pipeline are tested with a byte-level toy encoder and do not care which
//! tokenizer backs them.

use crate::chat::ModelTemplate;

/// Text → token ids for one model.
pub trait TextEncoder {
    /// Encodes `text`, with a leading BOS if `add_bos`. Control tokens written in the text (for
    /// example `<start_of_turn>` in a chat rendering) must become their control ids.
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32>;
    /// The id appended after each answer so the model learns to stop.
    fn eos_id(&self) -> u32;
    /// The model's own chat template, if it ships one, for rendering `{"messages"}` records.
    fn model_chat_template(&self) -> Option<ModelTemplate> {
        None
    }
}

/// The real tokenizer. Special-token text is parsed (`parse_special`), because prompts rendered
/// from chat templates spell control tokens such as `<start_of_turn>` in text.
impl TextEncoder for smolt_tokenizer::Tokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        smolt_tokenizer::Tokenizer::encode(self, text, add_bos, true)
    }
    fn eos_id(&self) -> u32 {
        // Every GGUF vocabulary smolt supports has an EOS; a chat-only one ends turns instead.
        smolt_tokenizer::Tokenizer::eos_id(self)
            .or_else(|| self.end_of_turn_id())
            .expect("the vocabulary has neither an EOS nor an end-of-turn token")
    }
    fn model_chat_template(&self) -> Option<ModelTemplate> {
        let text = |id: Option<u32>| {
            id.map(|id| self.token_piece(id).to_string())
                .unwrap_or_default()
        };
        self.chat_template().map(|source| ModelTemplate {
            source: source.to_string(),
            bos_token: text(self.bos_id()),
            eos_token: text(smolt_tokenizer::Tokenizer::eos_id(self)),
        })
    }
}

/// A byte-level encoder for tests and toy examples: one token per byte (id = byte + 3),
/// BOS = 1, EOS = 2, and `<end_of_turn>` = 0 so chat rendering can be checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByteEncoder;

impl TextEncoder for ByteEncoder {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() + 1);
        if add_bos {
            out.push(1);
        }
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("<end_of_turn>") {
                out.push(0);
                rest = r;
            } else {
                let c = rest.chars().next().expect("non-empty");
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(|b| b as u32 + 3));
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }
    fn eos_id(&self) -> u32 {
        2
    }
}
