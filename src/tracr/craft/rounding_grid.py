"""`rounding.mlp_bound` on every combination of a few inputs' values, input by input.

An MLP reading several SOps is bounded on every combination of their values (the rows of
a grid): 81 x 81 rows for a numerical SequenceMap of two 81-valued SOps. Where every
hidden unit reads one SOp only (and inputs that are the same on every row, `one`), the
first layer of a unit depends on that SOp's value alone, and every second-layer quantity
of `rounding.mlp_bound` (the ideal output, the moves through the units, the sums of
|terms|, of positive and of negative terms, the counts of large and of possible terms) is
a sum over the units, so over the SOps: it is the sum of one table per SOp, indexed by
that SOp's value. Here the first layer runs once per SOp value, each table once, and only
the last steps (the rounding bound (*) of the second dot product, which is not additive)
once per row, on [rows, outputs] arrays.

The bound is the same quantity as mlp_bound's, up to the float64 rounding of adding the
partial sums in another order, or a larger one: no sum is taken as exact for having exact
inputs on a grid (mlp_bound's credit to rows without input errors); use mlp_bound where
most rows have none.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracr.craft import rounding


@dataclasses.dataclass(frozen=True)
class Factor:
    """One SOp's inputs: its columns of the input [C], and their ideal values and errors
    on each of its n values [n, C]."""

    cols: np.ndarray
    x: np.ndarray
    e: np.ndarray


def separate_units(fst: np.ndarray, factors: list[Factor]) -> np.ndarray | None:
    """[H] the factor each hidden unit reads (0 for a unit that reads none of them), or
    None where a unit reads two."""
    reads = np.stack([(fst[f.cols] != 0).any(axis=0) for f in factors])  # [k, H]
    if np.any(reads.sum(axis=0) > 1):
        return None
    return reads.argmax(axis=0)


def grid_mlp_bound(
    fst: np.ndarray,
    snd: np.ndarray,
    factors: list[Factor],
    constant: np.ndarray,
    owner: np.ndarray,
) -> rounding.MLPBound:
    """`rounding.mlp_bound` of relu(x fst) snd on every combination of the factors'
    values (the first factor's varying slowest), the other inputs exactly `constant`
    [I]; owner [H]: the factor of each unit (`separate_units`). Rows without input
    errors get no credit for exact sums (module docstring)."""
    w1, w2 = rounding.as_float32_values(fst), rounding.as_float32_values(snd)
    sp1, sp2 = rounding._Sparse(w1), rounding._Sparse(w2)
    sizes = [len(f.x) for f in factors]
    twins: dict = {}
    parts = []
    for k, f in enumerate(factors):
        x = np.broadcast_to(constant, (sizes[k], len(constant))).copy()
        e = np.zeros_like(x)
        x[:, f.cols], e[:, f.cols] = f.x, f.e
        mine = owner == k
        z, move, rho, total1, _, _ = rounding._first_layer(sp1, x, e, exact_rows=False)
        radius = move + rho
        off = (z + radius <= 0) | ~mine  # other factors' units: counted with their own
        on = (z - radius > 0) & mine
        unstable = ~(off | on)
        hmax = np.where(off, 0.0, np.maximum(z + radius, 0.0))
        kinds = ("abs", "pos", "neg", "inexact")
        parts.append(
            [
                sp2.times(np.where(mine, np.maximum(z, 0), 0.0)),
                sp2.times(radius * unstable + rho * on, "abs")
                + rounding._linear_move(w1, sp2, twins, e, on),
                *sp2.products(hmax, kinds),
                sp2.times(hmax * unstable, "abs"),
                sp2.times(on, "nz"),
                sp2.times(~off, "nz"),
                sp2.switching(unstable, z, total1),
            ]
        )

    def combined(i: int) -> np.ndarray:
        """Part i ([n, O] per factor) added up over the grid: [rows, O]."""
        total = parts[0][i]
        for k in range(1, len(factors)):
            total = total[..., None, :] + parts[k][i]
        return total.reshape(-1, total.shape[-1])

    ideal, dev, total2, pos, neg, inexact2, small2, n_large2, n_terms2 = map(combined, range(9))
    rho2 = rounding.sum_bound(total2, small2, n_large2, n_terms2, inexact2, np.maximum(pos, neg))
    switching = _combined_flags([p[9] for p in parts])
    return rounding.MLPBound(ideal, dev + rho2, switching)


def _combined_flags(flags: list[np.ndarray]) -> np.ndarray:
    """[rows]: whether any factor's per-value flag is set, over the grid."""
    total = flags[0]
    for f in flags[1:]:
        total = np.logical_or.outer(total, f)
    return total.ravel()
