"""Block builders: each returns a craft block computing one RASP operation exactly.

Public modules: `categorical_mlp` (Map / SequenceMap on one-hot inputs), `numerical_mlp`
(Map on numerical inputs with a finite value set, linear SequenceMap), `categorical_attn`
(Select + Aggregate), `selector_width` (SelectorWidth).
"""

from tracr.craft.chamber import categorical_attn, categorical_mlp, numerical_mlp, selector_width

__all__ = ["categorical_attn", "categorical_mlp", "numerical_mlp", "selector_width"]
