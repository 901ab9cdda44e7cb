//! smolt-tokenizer
