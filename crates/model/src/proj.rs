//! The projections of a decoder block, named once: configs, adapters and the block itself all
//! say [`Proj`].

use std::fmt;
use std::str::FromStr;

/// One of the seven projections of a decoder block ([`crate::Block::proj`]). The order is Hugging
/// Face's (`q, k, v, o` in `self_attn`, then `gate, up, down` in `mlp`), which PEFT keeps for
/// LoRA tensors (smolt-lora calls these its targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// Position in [`Proj::ALL`], used to index per-projection arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The short name used in configs (`q`, `gate`, …).
    pub fn short(self) -> &'static str {
        match self {
            Proj::Q => "q",
            Proj::K => "k",
            Proj::V => "v",
            Proj::O => "o",
            Proj::Gate => "gate",
            Proj::Up => "up",
            Proj::Down => "down",
        }
    }

    /// The Hugging Face module path inside a decoder layer (`self_attn.q_proj`), as PEFT and
    /// vLLM name adapter tensors.
    pub fn hf_module(self) -> &'static str {
        match self {
            Proj::Q => "self_attn.q_proj",
            Proj::K => "self_attn.k_proj",
            Proj::V => "self_attn.v_proj",
            Proj::O => "self_attn.o_proj",
            Proj::Gate => "mlp.gate_proj",
            Proj::Up => "mlp.up_proj",
            Proj::Down => "mlp.down_proj",
        }
    }
}

impl Proj {
    /// The tensor's name inside a GGUF block (`blk.N.<name>.weight`), as llama.cpp names it;
    /// GGUF LoRA adapters append `.lora_a` / `.lora_b` to the full name.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Proj::Q => "attn_q",
            Proj::K => "attn_k",
            Proj::V => "attn_v",
            Proj::O => "attn_output",
            Proj::Gate => "ffn_gate",
            Proj::Up => "ffn_up",
            Proj::Down => "ffn_down",
        }
    }

    /// `blk.{layer}.<gguf_name>.weight`: the base weight this projection multiplies by.
    pub fn gguf_weight(self, layer: usize) -> String {
        format!("blk.{layer}.{}.weight", self.gguf_name())
    }
}

impl fmt::Display for Proj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

impl FromStr for Proj {
    type Err = String;

    /// Accepts the short name (`q`) and the HF module name (`q_proj`).
    fn from_str(s: &str) -> Result<Proj, String> {
        Proj::ALL
            .into_iter()
            .find(|t| s == t.short() || s == format!("{}_proj", t.short()))
            .ok_or_else(|| format!("unknown projection `{s}` (known: q, k, v, o, gate, up, down)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Proj::ALL {
            assert_eq!(p.short().parse::<Proj>().unwrap(), p);
            assert_eq!(format!("{}_proj", p.short()).parse::<Proj>().unwrap(), p);
            assert_eq!(Proj::ALL[p.index()], p);
            assert!(p.hf_module().ends_with(&format!("{}_proj", p.short())));
        }
        assert!("qkv".parse::<Proj>().is_err());
    }
}
