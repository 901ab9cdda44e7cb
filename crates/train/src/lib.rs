//! smolt-train
