//! smolt-constrain: output constraints (JSON Schema, regex, Lark grammars) as token masks, through llguidance.
