//! smolt-kernels
