//! smolt-hub
