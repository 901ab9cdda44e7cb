//! smolt-quant
