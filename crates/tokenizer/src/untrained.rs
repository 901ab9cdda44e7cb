//! Added tokens a model never learned: text that stays text.
//!
//! A vocabulary can list tokens its weights were never trained on. Qwen2.5-Coder-0.5B-Instruct
//! declares `<tool_call>` and `</tool_call>` as user-defined tokens, which llama.cpp (and Hugging
//! Face) match in any text, but their rows of the output head and of the token table are byte for
//! byte those of the `[PAD…]` filler tokens: the model can neither read them nor choose them over
//! each other or the 271 fillers. A prompt that holds one shows the model noise, and a fine-tune
//! that must write one learns to push its hidden state toward the fillers' shared direction,
//! where rare junk tokens (`станавлива`) win. What the model did learn is the same text spelled
//! with ordinary pieces (`<`, `tool`, `_call`, `>`), so that is what smolt reads and writes.

use smolt_gguf::Gguf;

use crate::TokenType;

/// The user-defined tokens whose row in the output head (the token table when the head is tied)
/// is byte-identical to the row of an unused (filler) token: rows nobody trained. Empty when the
/// file has no tensors (a vocabulary-only GGUF), no unused tokens, or a head whose rows cannot be
/// told apart by bytes.
pub(crate) fn untrained_added_tokens(gguf: &Gguf, types: &[TokenType]) -> Vec<u32> {
    let fillers: Vec<usize> = (0..types.len())
        .filter(|&i| types[i] == TokenType::Unused)
        .collect();
    if fillers.is_empty() || !types.contains(&TokenType::UserDefined) {
        return Vec::new();
    }
    let Some(info) = gguf
        .tensor_info("output.weight")
        .or_else(|| gguf.tensor_info("token_embd.weight"))
    else {
        return Vec::new();
    };
    // ggml order: dims[0] is the row length, dims[1] the number of rows (the vocabulary).
    let rows = info.dims.get(1).copied().unwrap_or(0) as usize;
    let data = gguf.tensor_data(info);
    if rows == 0 || rows < types.len() || !data.len().is_multiple_of(rows) {
        return Vec::new();
    }
    let row_bytes = data.len() / rows;
    let row = |i: usize| &data[i * row_bytes..(i + 1) * row_bytes];
    let filler_rows: std::collections::HashSet<&[u8]> = fillers.iter().map(|&i| row(i)).collect();
    (0..types.len())
        .filter(|&i| types[i] == TokenType::UserDefined && filler_rows.contains(row(i)))
        .map(|i| i as u32)
        .collect()
}
