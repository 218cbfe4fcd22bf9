"""Worst-case float32 error bounds for craft blocks, valid in ANY summation order.

A matrix library may add the terms of a dot product in any order (blocking, SIMD lanes,
pairwise trees), with or without fused multiply-add; PyTorch and TransformerLens use yet
other orders. Every bound here holds for all of them.

The summation lemma
-------------------
Let s = t_1 + ... + t_m with t_i = x_i w_i, computed by any binary tree of floating-point
additions (products rounded, or fused into the addition), unit roundoff u = 2^-24 and
gamma_k = k u / (1 - k u). A product is exact when the weight is a power of two (+-1
included) or the input is exactly +-1 or 0; the others round by <= u |t_i|, and fusing
one into an addition (FMA) leaves <= u |t_i| of slack: 2 u I in all, I the sum of |t_i|
over possibly inexact products. Each addition node v adds two computed partial sums a, b
and errs by e_v with |e_v| <= min(u |a + b|, |a|, |b|) (the exact sum's nearest float is
no farther than either operand), and the computed root is sum_i t_i + sum_v e_v. Every
exact partial sum lies between -N and P (N, P: the sums of the negative and positive
terms), so every computed one is at most X' = max(P, N) + E_0, where E_0 = 2 u I +
gamma_m A is the classical bound on any accumulated error (A = sum |t_i|). Split the
terms into a "large" set L and a "small" set S (A = A_L + A_S):

* nodes with L terms on both sides: at most |L| - 1 of them, each <= u X';
* nodes with L terms on one side only: <= the S-only side, and those sides are disjoint,
  so together <= (1 + gamma_m) A_S;
* nodes with no L term: <= u (1 + gamma_m) A(subtree), together <= gamma_m (1 + gamma_m) A_S.

Hence, for every order, with or without FMA,

    |fl(s) - s| <= 2 u I + min((|L| - 1)+ u X' + (1 + gamma_m)^2 A_S, (m - 1) u X').   (*)

(m <= 1: no addition at all; m = 2: one node, <= u |computed s|.) Its uses: terms that
are ideally zero but perturbed by earlier layers (a one-hot's off coordinates, a unit
just below its threshold) go to S and cost only their own size; terms that cancel (a
step's two units) cost max(P, N), not A; exact products cost nothing. Terms that are
exactly zero (a zero weight, a unit that is surely off) add nothing.

Blocks
------
`mlp_bound` bounds an MLP relu(x W1) W2 on a finite set of ideal inputs with per-coordinate
input errors; `attention_logit_error` bounds the logits of a head. The compiler composes
them layer by layer (compiler/float_bounds.py).

Steps read through a linear part. A pair of units relu(z + 1/2), relu(z - 1/2) with the
same weights on every noisy input, z = s q and q = sum_i a_i x_i - t a linear part of
the inputs whose ideal values keep |q| >= 1/2 (separable_mlp's robust block, s >= 2),
differs by exactly clip(z + 1/2, 0, 1) in exact arithmetic. With input deviations e_i
each unit's pre-activation is within r = s sum_i |a_i| e_i + rho of its ideal value (rho
the rounding (*) of its dot product); where r < s |q| - 1/2 (>= (s - 1)/2) both units
are surely on or surely off, the pair's output is exactly 0 or 1 before rounding, and
`mlp_bound` credits that (twins: the deviations of the two units cancel). The output is
then off by rounding alone: rho of each active unit through |W2| and the second dot
product's (*), however close s sum_i |a_i| e_i comes to the margin. A linear part
reading a noisy one-hot of n values with weights up to n / 2 moves q by up to n / 2 times
the one-hot's l1 deviation, and each of its n noisy coordinates adds a rounding of up to
u X' to rho: both grow with n, and limit such reads to moderate n.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tracr import caches

#: float32 unit roundoff.
U = 2.0**-24
#: Cells of the [inputs, hidden] tables computed at once: bounded memory, and arrays
#: small enough to stay in cache (and not to be handed back to the system and faulted
#: in again between numpy temporaries, which makes large ones several times slower).
_CHUNK_CELLS = 1 << 13


def gamma(n) -> np.ndarray:
    """gamma_n = n u / (1 - n u) for float32's u."""
    n = np.asarray(n, dtype=np.float64)
    return n * U / (1.0 - n * U)


def gamma_of(n: float) -> float:
    """`gamma` of one number, as a Python float: the same float64 operations, so the
    same value, without numpy's per-call cost."""
    n = float(n)
    return n * U / (1.0 - n * U)


def sum_bound(total, small, n_large, n_terms, inexact=None, extent=None) -> np.ndarray:
    """Bound (*) of the module docstring on |fl(sum) - sum| in any order, FMA or not.

    total: A, the sum of |t_i| (a bound on it); small: A_S, the part from small terms;
    n_large: |L|; n_terms: m, how many terms may be nonzero; inexact: I (default A);
    extent: max(P, N) (default A). Numbers or float64 arrays.
    """
    total, small = np.asarray(total, np.float64), np.asarray(small, np.float64)
    inexact = total if inexact is None else inexact
    extent = total if extent is None else extent
    g = gamma(np.maximum(n_terms, 1))
    products = 2 * U * inexact
    reach = extent + products + g * total
    split = np.maximum(n_large - 1, 0) * U * reach + (1 + g) * (1 + g) * small
    classical = np.maximum(n_terms - 1, 0) * U * reach
    return products + np.minimum(split, classical)


def _power_of_two(values: np.ndarray) -> np.ndarray:
    """Entries whose products are exact: 0 and +-2^k."""
    mantissa, _ = np.frexp(np.abs(values))
    return (values == 0) | (mantissa == 0.5)


def grid_bits(values: np.ndarray) -> int:
    """The least k with every entry an integer multiple of 2^-k (values are floats)."""
    values = np.asarray(values, np.float64).ravel()
    values = values[values != 0]
    if values.size == 0:
        return -1000
    mantissa, exponent = np.frexp(np.abs(values))
    ints = (mantissa * 2.0**53).astype(np.int64)
    trailing = np.log2(ints & -ints).astype(np.int64)
    return int(np.max(53 - trailing - exponent))


def exact_sums(total: np.ndarray, bits: int) -> np.ndarray:
    """Whether sums of multiples of 2^-bits whose magnitudes add up to `total` are exact
    in float32 in every order: every partial sum is such a multiple below 2^24 of them."""
    return np.asarray(total) * 2.0**bits < 2.0**24


def as_float32_values(matrix: np.ndarray) -> np.ndarray:
    """The weights the float32 model holds, as float64 numbers."""
    return np.asarray(matrix, dtype=np.float32).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class MLPBound:
    """Result of `mlp_bound` on P ideal inputs.

    ideal: [P, O] the output of the float32 weights in exact arithmetic on the ideal inputs;
    bound: [P, O] worst-case |computed - ideal| for inputs within the errors, any order;
    unstable: [P] True where some hidden unit that writes an output may switch (its
      pre-activation is within its error of 0 while the ideal one is not 0): the input
      error exceeds the block's tolerance there. Units whose second-layer row is zero
      (a discretiser's step between equal outputs) may switch: they write nothing.
    """

    ideal: np.ndarray
    bound: np.ndarray
    unstable: np.ndarray


def mlp_bound(
    fst: np.ndarray,
    snd: np.ndarray,
    inputs: np.ndarray,
    errors: np.ndarray,
) -> MLPBound:
    """Worst-case float32 output error of relu(x fst) snd for x within `errors` of `inputs`.

    fst [I, H], snd [H, O] (rounded to float32 here); inputs, errors [P, I]. Input
    coordinates whose error is 0 are taken as exact. For every ideal input x and hidden
    unit u, with z = x fst the ideal pre-activation:

    * r_u = sum_i e_i |fst_iu|, the pre-activation's move in exact arithmetic, and rho_u,
      the rounding of the perturbed dot product by (*) (ideal nonzero inputs large,
      perturbed zeros small);
    * u is surely off (z + r + rho <= 0: computed exactly 0), surely on (z - r - rho > 0:
      relu is the identity) or unstable (relu may switch; its output moves by <= r + rho).
    * Output deviation in exact arithmetic: the surely-on units act linearly, so the move
      is sum_i e_i |sum_(u on) fst_iu snd_uo|: terms that cancel in the block (the two
      units of a saturated step or of a cleaned indicator) cancel in the bound too.
      Unstable units count with |.|.
    * The second dot product's rounding by (*) (surely-on units large, unstable small),
      plus the first layer's rounding carried through |snd|.
    """
    w1, w2 = as_float32_values(fst), as_float32_values(snd)
    inputs = np.asarray(inputs, np.float64)
    errors = np.asarray(errors, np.float64)
    sp1, sp2 = _Sparse(w1), _Sparse(w2)
    # Widest array per row: the hidden units, the outputs, or a sparse product's terms.
    width = max(w1.shape[1], w2.shape[1], *(sp.nnz for sp in (sp1, sp2) if not sp.dense), 1)
    rows = max(1, _CHUNK_CELLS // width)
    twins: dict = {}  # the twin groups of each set of moving inputs (`_twin_keys`)
    parts = [
        _mlp_chunk(w1, sp1, sp2, twins, inputs[s : s + rows], errors[s : s + rows])
        for s in range(0, len(inputs), rows)
    ]
    if not parts:
        empty = np.zeros((0, w2.shape[1]))
        return MLPBound(empty, empty, np.zeros(0, dtype=bool))
    if len(parts) == 1:
        return MLPBound(*parts[0])
    return MLPBound(*(np.concatenate(p) for p in zip(*parts)))


def _kind_values(w: np.ndarray) -> dict[str, np.ndarray | None]:
    """f(w) over the nonzero weights w for every kind f of `_Sparse.times`; None where f
    is 0 on all of them, and one array for kinds with equal values (|W| and max(W, 0)
    when W > 0, say), so that they share one product."""
    if not len(w):
        return dict.fromkeys(("w", "abs", "nz", "pos", "neg", "inexact"))
    low, high = w.min(), w.max()
    magnitude = w if low > 0 else np.abs(w)
    exact = _power_of_two(w)
    if exact.all():
        inexact = None
    else:
        inexact = magnitude if not exact.any() else np.where(exact, 0.0, magnitude)
    return {
        "w": w,
        "abs": magnitude,
        "nz": magnitude if (magnitude == 1).all() else np.ones_like(w),
        "pos": w if low > 0 else (None if high < 0 else np.maximum(w, 0)),
        "neg": None if low > 0 else (magnitude if high < 0 else np.maximum(-w, 0)),
        "inexact": inexact,
    }


class _Sparse:
    """A weight matrix W [K, N], for the products a @ f(W) the bounds need; the kind
    names f: W, |W|, [W != 0], max(W, 0), max(-W, 0), or |W| over inexact weights.

    Very sparse matrices (compiled blocks mostly are) multiply over their nonzeros in
    P * nnz, the others by BLAS. A kind that is 0 on every weight gives 0 with no
    product, and kinds with equal values share one (see `products`). An `a` that is 0
    outside a few cells multiplies over those (`_Cells`)."""

    def __init__(self, matrix: np.ndarray):
        self.shape = matrix.shape
        self.rows, self.cols = matrix.nonzero()  # by row, then column
        self.nnz = len(self.rows)
        self._weights = matrix[self.rows, self.cols]
        self.values = _kind_values(self._weights)
        self.dense = matrix.size <= 64 * max(1, self.nnz)
        self._dense: dict[int, np.ndarray] = {}
        self._by_col: tuple | None = None

    @functools.cached_property
    def writing_rows(self) -> np.ndarray:
        """[K] bool: the rows with a nonzero weight. A hidden unit whose row of the
        second layer is all zero writes nothing, whatever its activation."""
        mask = np.zeros(self.shape[0], dtype=bool)
        mask[self.rows] = True
        return mask

    def switching(self, unstable: np.ndarray, z: np.ndarray, total1: np.ndarray) -> np.ndarray:
        """[P] True where a unit that writes an output (this matrix is the second layer)
        may switch: unstable [P, K] with a nonzero ideal pre-activation z. A unit whose
        ideal pre-activation is 0 (an off coordinate of a one-hot) is meant to sit at the
        kink; one that writes nothing may switch freely (its output row is zero, so its
        activation adds exact zeros, and `dev` counts it as 0)."""
        return (unstable & (np.abs(z) > 1e-9 * total1) & self.writing_rows).any(axis=1)

    @functools.cached_property
    def bits(self) -> int:
        """The grid of the weights (`grid_bits`), needed only where rows are exact."""
        return grid_bits(self._weights)

    def times(self, a: np.ndarray, kind: str = "w", cells: _Cells | None = None) -> np.ndarray:
        """a @ f(W) [P, N] for the `kind` f; a: [P, K], 0 outside `cells` if given."""
        vals = self.values[kind]
        if vals is None:
            return np.zeros((a.shape[0], self.shape[1]))
        if self.dense:
            matrix = self._dense.get(id(vals))
            if matrix is None:
                matrix = self._dense[id(vals)] = np.zeros(self.shape)
                matrix[self.rows, self.cols] = vals
            return a @ matrix  # a bool a is cast to float64 by the product
        if a.dtype != np.float64:
            a = a.astype(np.float64)
        if cells is not None:
            return cells.times(a, vals)
        if self._by_col is None:  # the nonzeros by column, rows ascending in each
            order = self.cols.argsort(kind="stable")
            cols = self.cols[order]
            starts = (np.r_[True, cols[1:] != cols[:-1]]).nonzero()[0]
            self._by_col = order, starts, cols[starts]
        order, starts, out_cols = self._by_col
        terms = a[:, self.rows[order]] * vals[order]  # [P, nnz]
        out = np.zeros((a.shape[0], self.shape[1]))
        out[:, out_cols] = terms if len(starts) == self.nnz else np.add.reduceat(terms, starts, 1)
        return out

    def products(self, a: np.ndarray, kinds, cells: _Cells | None = None) -> list[np.ndarray]:
        """[a @ f(W) for the kinds f], each distinct product computed once."""
        done: dict[int, np.ndarray] = {}
        for kind in kinds:
            key = id(self.values[kind])
            if key not in done:
                done[key] = self.times(a, kind, cells)
        return [done[id(self.values[kind])] for kind in kinds]


class _Cells:
    """The terms of a @ f(W) that can be nonzero when a [P, K] is 0 outside the cells
    `live`: a[p, k] f(W)[k, n] for live (p, k) and nonzero W[k, n]. They are added per
    (p, n) in the order of k, as in a product over every term, so the sum is the same
    number (the terms left out are zeros)."""

    def __init__(self, sp: _Sparse, live: np.ndarray):
        p, k = live.nonzero()
        first = sp.rows.searchsorted(k)
        counts = sp.rows.searchsorted(k, side="right") - first
        if counts.all() and len(counts) and counts.max() == 1:
            self.entry, self.p = first, p
        else:
            ends = counts.cumsum()
            within = np.arange(ends[-1] if len(ends) else 0) - (ends - counts).repeat(counts)
            self.entry, self.p = first.repeat(counts) + within, p.repeat(counts)
        self.k = sp.rows[self.entry]
        self.width = sp.shape[1]
        self.flat = self.p * self.width + sp.cols[self.entry]
        self.rows = live.shape[0]

    def times(self, a: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """[P, width]: the sums of a[p, k] vals[entry] per (p, column)."""
        terms = a[self.p, self.k] * vals[self.entry]
        out = np.bincount(self.flat, terms, minlength=self.rows * self.width)
        # float64 even without live cells: np.bincount of nothing is int64, weights or not
        return out.astype(np.float64, copy=False).reshape(self.rows, self.width)


def _first_layer(sp1: _Sparse, x: np.ndarray, e: np.ndarray, exact_rows: bool = True):
    """z, the ideal pre-activations [P, H]; move, their exact-arithmetic move; rho, the
    rounding of the perturbed dot products by (*); total1, their sums of |terms|;
    `exact` [P], the rows whose first-layer sums are all exact (rho = 0 there; rows
    without errors, unless `exact_rows` is False); and `bits`, the grid of those rows'
    hidden values (2^-bits)."""
    z = sp1.times(x)  # [P, H]
    big = x != 0
    magnitude = np.abs(x)
    mag = magnitude + e
    total1, pos, neg = sp1.products(mag, ("abs", "pos", "neg"))
    # Products with a power-of-two weight, or an exact input of +-1, are exact.
    exact_in = (x == 0) | (magnitude == 1)
    if e.any():
        move = sp1.times(e, "abs")
        small1 = sp1.times(e * ~big, "abs")
        n_large1 = sp1.times(big, "nz")
        n_terms1 = sp1.times(big | (e > 0), "nz")
        exact_in &= e == 0
    else:
        move = small1 = np.zeros_like(z)
        n_large1 = n_terms1 = sp1.times(big, "nz")
    if sp1.values["inexact"] is None:
        inexact1 = np.zeros_like(z)
    else:
        inexact1 = sp1.times(np.where(exact_in, 0.0, mag), "inexact")
    rho = sum_bound(total1, small1, n_large1, n_terms1, inexact1, np.maximum(pos, neg))
    # One addition (two terms): its error is at most u |computed result|.
    two = n_terms1 <= 2
    if two.any():
        rho = np.where(two, 2 * U * inexact1 + U * (np.abs(z) + move + 2 * U * inexact1), rho)
    # Exact inputs on a grid with exact weights: every partial sum is exact.
    exact, bits = ~e.any(axis=1) & exact_rows, 0
    if exact.any():
        bits = grid_bits(x) + sp1.bits
        rho = np.where(exact[:, None] & exact_sums(total1, bits), 0.0, rho)
    return z, move, rho, total1, exact & ~rho.any(axis=1), bits


def _mlp_chunk(w1, sp1, sp2, twins, x, e):
    """(ideal, bound, unstable) of `mlp_bound` for some rows x, e [P, I]."""
    z, move, rho, total1, exact, bits = _first_layer(sp1, x, e)
    radius = move + rho
    off = z + radius <= 0
    on = z - radius > 0
    unstable = ~(off | on)
    # Every second-layer operand is 0 where a unit is surely off.
    cells = None if sp2.dense else _Cells(sp2, ~off)
    ideal = sp2.times(np.maximum(z, 0), "w", cells)
    # Exact-arithmetic move of the output: linear through the surely-on units, so terms
    # that cancel in the block (a step's two units) cancel in the bound too; unstable
    # units count with |.|.
    dev = sp2.times(radius * unstable + rho * on, "abs", cells)
    dev += _linear_move(w1, sp2, twins, e, on)
    hmax = np.where(off, 0.0, np.maximum(z + radius, 0.0))
    total2, pos, neg, inexact2 = sp2.products(hmax, ("abs", "pos", "neg", "inexact"), cells)
    any_unstable = unstable.any()
    small2 = sp2.times(hmax * unstable, "abs", cells) if any_unstable else np.zeros_like(total2)
    n_large2 = sp2.times(on, "nz", cells)
    n_terms2 = sp2.times(~off, "nz", cells) if any_unstable else n_large2
    rho2 = sum_bound(total2, small2, n_large2, n_terms2, inexact2, np.maximum(pos, neg))
    if exact.any():
        exact2 = exact[:, None] & exact_sums(total2, bits + sp2.bits)
        rho2 = np.where(exact2, 0.0, rho2)
    return ideal, dev + rho2, sp2.switching(unstable, z, total1)


def _group(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, first) of a 1-d array as np.unique gives them: every entry's index
    among the sorted distinct values, and where each distinct value first occurs."""
    order = values.argsort(kind="stable")
    ordered = values[order]
    new = np.empty(len(values), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = new.cumsum() - 1
    return inverse, order[new]


def _twin_groups(w: np.ndarray, probe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(group [H], representative [G]) of the equal columns of w [M, H].

    Columns are matched by a projection (`probe` [M]), then compared exactly; if the
    projection matched two different columns, whole columns are compared instead. The
    projection is elementwise products summed row after row, the same operations for
    every column: equal columns get bit-equal projections on every machine. (A BLAS
    product may sum two equal columns in different orders, in its main loop and its
    tail, and split a twin pair: the bound stays valid but loses the pair's
    cancellation, and whether a program compiles would depend on the BLAS kernel.)"""
    if probe is None:
        probe = np.sqrt(np.arange(2.0, w.shape[0] + 2))
    group, reps = _group((probe[:, None] * w).sum(axis=0))
    if not np.array_equal(w, w[:, reps[group]]):
        _, reps, group = np.unique(w.T, axis=0, return_index=True, return_inverse=True)
        group = np.asarray(group).ravel()
    return group, reps


def _twin_keys(w1: np.ndarray, sp2: _Sparse, moving: np.ndarray) -> tuple:
    """For the units' first-layer weights on the inputs that move: the |weights| of
    one unit per twin group [M, G]; the (group, column) key of every nonzero of W2, in
    key order, as the twin group and the output column of each key; the nonzeros in
    key order; and where each key starts among them (None when each has one)."""
    w = w1[moving]
    group, reps = _twin_groups(w)
    n_out = sp2.shape[1]
    key = group[sp2.rows] * n_out + sp2.cols
    key_of, first = _group(key)
    keys = key[first]
    order = key_of.argsort(kind="stable")
    starts = key_of[order].searchsorted(np.arange(len(keys))) if len(keys) < sp2.nnz else None
    return np.abs(w[:, reps]), keys // n_out, keys % n_out, order, starts


def _linear_move(w1, sp2: _Sparse, twins: dict, e: np.ndarray, on: np.ndarray) -> np.ndarray:
    """[P, O] exact-arithmetic move of the output through the surely-on units when the
    inputs move by at most e.

    Units whose first-layer weights agree on every input that can move ("twins": the
    two units of a discretiser step or of a cleaned indicator) move together, so their
    output weights are added before taking |.|: sum over twin groups g of
    (e |W1_g|) |sum_(u in g, on) W2_u|. Saturated steps cancel exactly. `twins` keeps
    the groups of each set of moving inputs (`_twin_keys`) across a block's rows.
    """
    moving = (e > 0).any(axis=0).nonzero()[0]
    n_rows, n_out = e.shape[0], sp2.shape[1]
    if moving.size == 0 or sp2.nnz == 0 or not on.any():
        return np.zeros((n_rows, n_out))
    if moving.tobytes() not in twins:
        twins[moving.tobytes()] = _twin_keys(w1, sp2, moving)
    weights, groups, cols, order, starts = twins[moving.tobytes()]
    reach = e[:, moving] @ weights  # [P, G]
    terms = on[:, sp2.rows[order]] * sp2.values["w"][order]  # [P, nnz] by key
    if starts is not None:  # some key holds several units: add them, by unit
        terms = np.add.reduceat(terms, starts, 1)
    contrib = reach[:, groups] * np.abs(terms)  # [P, keys]
    # Each column adds its keys' terms in the order of the keys (of the twin groups).
    flat = (np.arange(n_rows)[:, None] * n_out + cols).ravel()
    out = np.bincount(flat, contrib.ravel(), minlength=n_rows * n_out)
    return out.reshape(n_rows, n_out)


def exact_block(fst: np.ndarray, snd: np.ndarray, in_max: np.ndarray, in_bits: int) -> bool:
    """Whether relu(x fst) snd is computed exactly in float32, in every summation order,
    for every exact input with |x_i| <= in_max_i and every x_i a multiple of 2^-in_bits:
    all products and partial sums then lie on a grid of 2^-(in_bits + bits of the
    weights) below 2^24 steps (lookup tables on one-hot inputs, say)."""
    w1, w2 = as_float32_values(fst), as_float32_values(snd)
    total1 = np.asarray(in_max, np.float64) @ np.abs(w1)
    total2 = total1 @ np.abs(w2)
    bits1 = in_bits + grid_bits(w1)
    return bool(
        np.all(exact_sums(total1, bits1)) and np.all(exact_sums(total2, bits1 + grid_bits(w2)))
    )


def box_mlp_bound(
    fst: np.ndarray, snd: np.ndarray, low: np.ndarray, high: np.ndarray, errors: np.ndarray
) -> np.ndarray:
    """[O] worst-case output error of relu(x fst) snd over the whole box low <= x <= high
    (per input coordinate, each within `errors`), for blocks whose ideal inputs are too
    many to enumerate. Every unit that may be on counts as large in (*); units that may
    switch inside the box count with |.| (no cancellation is credited)."""
    w1, w2 = as_float32_values(fst), as_float32_values(snd)
    low, high, errors = (np.asarray(v, np.float64) for v in (low, high, errors))
    a1, a2 = np.abs(w1), np.abs(w2)
    zhi = np.maximum(high[:, None] * w1, low[:, None] * w1).sum(axis=0)
    mag = np.maximum(np.abs(low), np.abs(high)) + errors
    live = (mag > 0).astype(np.float64)
    rho = sum_bound(mag @ a1, 0.0, live @ (w1 != 0), live @ (w1 != 0))
    radius = errors @ a1 + rho
    off = zhi + radius <= 0
    hmax = np.where(off, 0.0, np.maximum(zhi + radius, 0.0))
    n_on = (~off).astype(np.float64) @ (w2 != 0)
    rho2 = sum_bound(hmax @ a2, 0.0, n_on, n_on)
    return (radius * ~off) @ a2 + rho2


def attention_logit_error(
    w_qk: np.ndarray,
    query_noisy: np.ndarray,
    key_noisy: np.ndarray,
    query_sops: int,
    key_sops: int,
    query_error: float,
    key_error: float,
    query_l1: float,
    key_l1: float,
    terms: int = 1,
    scale_roundings: int = 3,
) -> tuple[float, float]:
    """(D, D_tie) for the logits x_q^T W x_k of a head, in any order.

    D bounds |computed - ideal| of every logit; D_tie bounds how far apart two logits
    that are ideally equal (two selected keys, or a selected key and BOS in a selector
    width head) can be computed. The model computes one side as a copy of the residual
    and the other as x W (or x W^T), then their dot product; both factorisations are
    bounded and the larger taken.

    query_noisy [rows] / key_noisy [cols]: the coordinates computed by earlier layers (the
    others, `one` and `bos`, are exact 0 or 1). An ideal input has one coordinate of
    size 1 per SOp read (query_sops / key_sops of them) plus at most two exact ones;
    every noisy coordinate is within query_error / key_error, and all of them together
    within query_l1 / key_l1.

    The model folds a scale s = sqrt(d_head) into the query weights and divides the
    logits by it: the weights are fl(s W) (one rounding each, relative u), and the
    division and the softmax's max subtraction round once more: `scale_roundings`
    relative roundings of the logit's size in all.

    With exact inputs a logit is the rounded sum of at most terms + 2 products of a
    weight and a copied 0/1 (or the scale). Keys that tie ideally then sum the same
    products:
    for a single-term selector (terms = 1) the same single weight, so their computed
    logits are bit-identical (D_tie = 0); for conjunctions the order of the sum may
    differ, and D_tie = 2 D.

    Kept by the exact contents of the arguments (`_logit_bound`): the heads of a program
    compiled again are not bounded again (heads up to _KEEP_WEIGHTS bytes: for larger
    ones, copying and hashing the weights costs about as much as the bound).
    """
    w = np.ascontiguousarray(w_qk, dtype=np.float64)
    query_noisy, key_noisy = np.asarray(query_noisy, bool), np.asarray(key_noisy, bool)
    numbers = (query_error, key_error, query_l1, key_l1)
    counts = (int(query_sops), int(key_sops), int(terms), int(scale_roundings))
    if w.nbytes > _KEEP_WEIGHTS:
        return _logit_error(w, query_noisy, key_noisy, counts, tuple(map(float, numbers)))
    return _logit_bound(
        (w.tobytes(), w.shape, query_noisy.tobytes(), key_noisy.tobytes()),
        counts,
        tuple(float(x).hex() for x in numbers),  # exact, -0.0 and nan included
    )


_KEEP_WEIGHTS = 1 << 16


@functools.lru_cache(maxsize=256)
def _logit_bound(arrays: tuple, counts: tuple, numbers: tuple) -> tuple[float, float]:
    """`attention_logit_error` of the arguments as `attention_logit_error` keys them:
    (w_qk's bytes and shape, the noisy flags' bytes), the counts, the errors in hex."""
    w_bytes, shape, query_bytes, key_bytes = arrays
    w_qk = np.frombuffer(w_bytes, np.float64).reshape(shape)
    query_noisy = np.frombuffer(query_bytes, bool)
    key_noisy = np.frombuffer(key_bytes, bool)
    errors = tuple(map(float.fromhex, numbers))
    return _logit_error(w_qk, query_noisy, key_noisy, counts, errors)


caches.register(_logit_bound.cache_clear)


def _logit_error(w_qk, query_noisy, key_noisy, counts, errors) -> tuple[float, float]:
    """`attention_logit_error`, computed: counts (query_sops, key_sops, terms,
    scale_roundings), errors (query_error, key_error, query_l1, key_l1)."""
    query_sops, key_sops, terms, scale_roundings = counts
    query_error, key_error, query_l1, key_l1 = errors
    w = np.abs(as_float32_values(w_qk))
    if w.size == 0:
        return 0.0, 0.0
    rows, cols = w.shape
    query_l1 = min(query_l1, int(query_noisy.sum()) * query_error)
    key_l1 = min(key_l1, int(key_noisy.sum()) * key_error)
    largest = float(w.max())
    exact_logit = largest * (query_sops + 2) * (key_sops + 2)
    scaling = scale_roundings * U * exact_logit
    if query_l1 == 0 and key_l1 == 0:
        # terms + 2 products (each may round once: u) and their additions.
        d = float((2 * terms + 5) * U * exact_logit + scaling)
        return d, (0.0 if terms == 1 else 2 * d)

    def side(mat, noisy_in, sops, err):
        """Per row i of mat: (reach, the max over inputs y of ideal plus noise of
        sum_j |mat_ij| y_j; the sum and the max of |mat_ij| over the noisy columns j)."""
        noisy = mat[:, noisy_in] if noisy_in.any() else np.zeros((mat.shape[0], 1))
        exact = mat[:, ~noisy_in] if (~noisy_in).any() else np.zeros((mat.shape[0], 1))
        total, top = noisy.sum(axis=1), noisy.max(axis=1)
        return sops * (1 + err) * top + 2 * exact.max(axis=1) + err * total, total, top

    # Exact-arithmetic move from perturbed inputs: d_q^T |W| x_k + x_q^T |W| d_k.
    by_row = side(w, key_noisy, key_sops, key_error)  # [rows] each
    by_col = side(w.T, query_noisy, query_sops, query_error)  # [cols] each
    move = query_l1 * float(by_row[0][query_noisy].max(initial=0.0)) + key_l1 * float(
        by_col[0][key_noisy].max(initial=0.0)
    )
    query_side = (query_noisy, query_sops, query_error, query_l1)
    key_side = (key_noisy, key_sops, key_error, key_l1)
    nonzero = w != 0
    worst = 0.0
    for (total1, noisy_sum, noisy_max), terms_in, sops_in, err_in, l1_in, out in (
        (by_row, nonzero.sum(axis=1), key_sops, key_error, key_l1, query_side),
        (by_col, nonzero.sum(axis=0), query_sops, query_error, query_l1, key_side),
    ):
        noisy_out, sops_out, err_out, l1_out = out
        # Stage 1: r_j = sum_i mat_ji y_i over the non-copied side (input y).
        small1 = np.minimum(err_in * noisy_sum, l1_in * noisy_max)
        rho1 = sum_bound(total1, small1, sops_in + 2, terms_in)
        r_hat = total1 + rho1
        # Stage 2: sum_j x_j r_j over the copied side (input x).
        big = (sops_out + 2) * (1 + err_out) * float(r_hat.max())
        small2 = min(err_out * float(r_hat[noisy_out].sum()), l1_out * float(r_hat.max()))
        rho2 = float(sum_bound(big + small2, small2, sops_out + 2, len(r_hat)))
        carried = (sops_out + 2) * (1 + err_out) * float(rho1.max()) + min(
            err_out * float(rho1[noisy_out].sum()), l1_out * float(rho1.max())
        )
        worst = max(worst, float(rho2 + carried))
    d = move + worst + scale_roundings * U * (exact_logit + move + worst)
    return d, 2 * d
