"""RASP evaluation as a causal (decoder-only) transformer computes it.

Every selector's matrix is masked to its lower triangle: query position `q` can select only keys at
positions `k <= q`. Everything else is the default evaluator's semantics; in particular `length`
is still the full input length, as in DeepMind's Tracr. The mask is applied to every selector in
the program, inner ones included, and to the result when the evaluated expression is a selector.
"""

from __future__ import annotations

from typing import Any

from tracr.rasp import rasp


def mask_lower_triangle(matrix: rasp.SelectorValue) -> rasp.SelectorValue:
    """`matrix` with every entry above the diagonal (key position > query position) False."""
    return [
        [bool(selected) and key <= query for key, selected in enumerate(row)]
        for query, row in enumerate(matrix)
    ]


class CausalEvaluator(rasp.DefaultRASPEvaluator):
    """Evaluates RASP with a causal mask on every selector."""

    def evaluate_node(
        self, expr: rasp.RASPExpr, xs: list[rasp.Value], child_values: list[Any]
    ) -> list[rasp.Value] | rasp.SelectorValue:
        out = super().evaluate_node(expr, xs, child_values)
        if isinstance(expr, rasp.Selector):
            return mask_lower_triangle(out)  # type: ignore[arg-type]
        return out


evaluate = CausalEvaluator().evaluate
