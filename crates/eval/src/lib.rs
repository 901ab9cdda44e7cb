//! smolt-eval: field-by-field comparison of structured outputs with the truth, and the reports.
