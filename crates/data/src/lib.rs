//! smolt-data: dataset utilities: synthetic receipts, splits.
