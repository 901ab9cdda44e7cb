//! smolt-decode
