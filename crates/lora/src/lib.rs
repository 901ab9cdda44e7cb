//! smolt-lora: LoRA adapters and the training forward/backward pass over a frozen, quantized base.
