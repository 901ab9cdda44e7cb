//! smolt-model
