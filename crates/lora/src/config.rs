//! What a LoRA adapter is made of: which projections it targets, its rank and its scale.

use std::fmt;
use std::str::FromStr;

/// A projection of the decoder block that an adapter can sit beside. The order is PEFT's
/// (`q, k, v, o` in `self_attn`, then `gate, up, down` in `mlp`), which is also the order of
/// the tensors in [`crate::LoraAdapter::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// Position in [`Target::ALL`], used to index per-target arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The short name used in configs (`q`, `gate`, …).
    pub fn short(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// The HF module path inside a decoder layer, as PEFT names it.
    pub fn peft_module(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

impl FromStr for Target {
    type Err = String;

    /// Accepts the short name (`q`) and the HF module name (`q_proj`).
    fn from_str(s: &str) -> Result<Target, String> {
        Target::ALL
            .into_iter()
            .find(|t| s == t.short() || s == format!("{}_proj", t.short()))
            .ok_or_else(|| format!("unknown LoRA target `{s}` (known: q, k, v, o, gate, up, down)"))
    }
}

/// The shape of an adapter. `scale` multiplies the adapter's output: `y = W·x + scale·B·(A·x)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// rsLoRA: scale by `alpha/√r` so that the update's magnitude does not shrink as r grows.
    pub rslora: bool,
    /// Probability of zeroing an element of the adapter's input (never the base's), as PEFT.
    pub dropout: f64,
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    /// PEFT-style defaults as smolt's training config uses them: r = 16, alpha = 32, every
    /// projection targeted.
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            rslora: false,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
        }
    }
}

impl LoraConfig {
    /// `alpha/r`, or `alpha/√r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    pub fn targets(&self, t: Target) -> bool {
        self.targets.contains(&t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_plain_and_rslora() {
        let mut c = LoraConfig {
            rank: 16,
            alpha: 32.0,
            ..Default::default()
        };
        assert_eq!(c.scale(), 2.0);
        c.rslora = true;
        assert_eq!(c.scale(), 8.0);
    }

    #[test]
    fn target_names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.short().parse::<Target>().unwrap(), t);
            assert_eq!(format!("{}_proj", t.short()).parse::<Target>().unwrap(), t);
            assert_eq!(Target::ALL[t.index()], t);
        }
        assert!("qkv".parse::<Target>().is_err());
    }
}
