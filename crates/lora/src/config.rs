//! What a LoRA adapter is made of: which projections it targets, its rank and its scale.

/// A projection of the decoder block that an adapter can sit beside: the model's [`Proj`]
/// under the name LoRA configs give it (`target_modules`).
///
/// [`Proj`]: smolt_model::Proj
pub use smolt_model::Proj as Target;

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
}
