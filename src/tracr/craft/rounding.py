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

import numpy as np

#: float32 unit roundoff.
U = 2.0**-24
#: Rows of the [inputs, hidden] tables computed at once (bounded memory).
_CHUNK_CELLS = 1 << 22


def gamma(n) -> np.ndarray:
    """gamma_n = n u / (1 - n u) for float32's u."""
    n = np.asarray(n, dtype=np.float64)
    return n * U / (1.0 - n * U)


def sum_bound(total, small, n_large, n_terms, inexact=None, extent=None) -> np.ndarray:
    """Bound (*) of the module docstring on |fl(sum) - sum| in any order, FMA or not.

    total: A, the sum of |t_i| (a bound on it); small: A_S, the part from small terms;
    n_large: |L|; n_terms: m, how many terms may be nonzero; inexact: I (default A);
    extent: max(P, N) (default A).
    """
    total, small = np.asarray(total, np.float64), np.asarray(small, np.float64)
    inexact = total if inexact is None else np.asarray(inexact, np.float64)
    extent = total if extent is None else np.asarray(extent, np.float64)
    g = gamma(np.maximum(n_terms, 1))
    products = 2 * U * inexact
    reach = extent + products + g * total
    split = np.maximum(n_large - 1, 0) * U * reach + (1 + g) ** 2 * small
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
    unstable: [P] True where some hidden unit may switch (its pre-activation is within
      its error of 0 while the ideal one is not 0): the input error exceeds the block's
      tolerance there.
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
    bits1, bits2 = grid_bits(w1), grid_bits(w2)
    width = max(w1.shape[1], w2.shape[1], len(sp1.vals), len(sp2.vals), 1)
    rows = max(1, _CHUNK_CELLS // width)
    parts = [
        _mlp_chunk(w1, w2, sp1, sp2, bits1, bits2, inputs[s : s + rows], errors[s : s + rows])
        for s in range(0, len(inputs), rows)
    ]
    if not parts:
        empty = np.zeros((0, w2.shape[1]))
        return MLPBound(empty, empty, np.zeros(0, dtype=bool))
    return MLPBound(*(np.concatenate(p) for p in zip(*parts)))


class _Sparse:
    """A weight matrix, for the products a @ f(W) the bounds need (f: W, |W|, [W != 0],
    max(W, 0), max(-W, 0), |W| over inexact weights). Very sparse matrices (compiled
    blocks mostly are) multiply over their nonzeros in P * nnz, the others by BLAS."""

    _KINDS = ("w", "abs", "nz", "pos", "neg", "inexact")

    def __init__(self, matrix: np.ndarray):
        self.shape = matrix.shape
        rows, cols = np.nonzero(matrix.T)  # sorted by output column
        self.rows, self.cols = cols, rows
        self.vals = matrix[self.rows, self.cols]
        self.out, self.starts = np.unique(self.cols, return_index=True)
        self.dense = matrix.size <= 64 * max(1, len(self.vals))
        self._matrix = matrix
        self._cache: dict[str, np.ndarray] = {}

    def _values(self, kind: str, w: np.ndarray) -> np.ndarray:
        return {
            "w": lambda: w,
            "abs": lambda: np.abs(w),
            "nz": lambda: (w != 0).astype(np.float64),
            "pos": lambda: np.maximum(w, 0),
            "neg": lambda: np.maximum(-w, 0),
            "inexact": lambda: np.where(_power_of_two(w), 0.0, np.abs(w)),
        }[kind]()

    def times(self, a: np.ndarray, kind: str = "w") -> np.ndarray:
        """a @ f(W) for the `kind` f (see the class docstring); a: [P, K]."""
        a = np.asarray(a, np.float64)
        if self.dense:
            if kind not in self._cache:
                self._cache[kind] = self._values(kind, self._matrix)
            return a @ self._cache[kind]
        out = np.zeros((a.shape[0], self.shape[1]))
        if not len(self.vals):
            return out
        terms = a[:, self.rows] * self._values(kind, self.vals)  # [P, nnz]
        out[:, self.out] = np.add.reduceat(terms, self.starts, axis=1)
        return out


def _mlp_chunk(w1, w2, sp1, sp2, bits1, bits2, x, e):
    z = sp1.times(x)  # [P, H]
    move = sp1.times(e, "abs")
    big = x != 0
    mag = np.abs(x) + e
    total1 = sp1.times(mag, "abs")
    small1 = sp1.times(e * ~big, "abs")
    # Products with a power-of-two weight, or an exact input of +-1, are exact.
    exact_in = (e == 0) & ((x == 0) | (np.abs(x) == 1))
    inexact1 = sp1.times(np.where(exact_in, 0.0, mag), "inexact")
    extent1 = np.maximum(sp1.times(mag, "pos"), sp1.times(mag, "neg"))
    n_terms1 = sp1.times(big | (e > 0), "nz")
    rho = sum_bound(total1, small1, sp1.times(big, "nz"), n_terms1, inexact1, extent1)
    # One addition (two terms): its error is at most u |computed result|.
    two = n_terms1 <= 2
    rho = np.where(two, 2 * U * inexact1 + U * (np.abs(z) + move + 2 * U * inexact1), rho)
    # Exact inputs on a grid with exact weights: every partial sum is exact.
    exact_inputs = np.all(e == 0, axis=1)
    input_bits = grid_bits(x)
    exact1 = exact_inputs[:, None] & exact_sums(total1, input_bits + bits1)
    rho = np.where(exact1, 0.0, rho)
    radius = move + rho
    off = z + radius <= 0
    on = z - radius > 0
    unstable = ~(off | on)
    ideal = sp2.times(np.maximum(z, 0))
    # Exact-arithmetic move of the output: linear through the surely-on units, so terms
    # that cancel in the block (a step's two units) cancel in the bound too; unstable
    # units count with |.|.
    dev = sp2.times(radius * unstable + rho * on, "abs")
    dev += _linear_move(w1, sp2, e, on)
    hmax = np.where(off, 0.0, np.maximum(z + radius, 0.0))
    total2 = sp2.times(hmax, "abs")
    small2 = sp2.times(hmax * unstable, "abs")
    extent2 = np.maximum(sp2.times(hmax, "pos"), sp2.times(hmax, "neg"))
    inexact2 = sp2.times(hmax, "inexact")
    rho2 = sum_bound(total2, small2, sp2.times(on, "nz"), sp2.times(~off, "nz"), inexact2, extent2)
    exact_hidden = exact_inputs & np.all(rho == 0, axis=1)
    exact2 = exact_hidden[:, None] & exact_sums(total2, input_bits + bits1 + bits2)
    rho2 = np.where(exact2, 0.0, rho2)
    # A unit whose ideal pre-activation is 0 (an off coordinate of a one-hot) is meant
    # to sit at the kink; one with a nonzero ideal value must not cross it.
    switching = unstable & (np.abs(z) > 1e-9 * total1)
    return ideal, dev + rho2, np.any(switching, axis=1)


def _linear_move(w1: np.ndarray, sp2: _Sparse, e: np.ndarray, on: np.ndarray) -> np.ndarray:
    """[P, O] exact-arithmetic move of the output through the surely-on units when the
    inputs move by at most e.

    Units whose first-layer weights agree on every input that can move ("twins": the
    two units of a discretiser step or of a cleaned indicator) move together, so their
    output weights are added before taking |.|: sum over twin groups g of
    (e |W1_g|) |sum_(u in g, on) W2_u|. Saturated steps cancel exactly.
    """
    moving = np.flatnonzero(np.any(e > 0, axis=0))
    out = np.zeros((e.shape[0], sp2.shape[1]))
    if moving.size == 0 or len(sp2.vals) == 0:
        return out
    _, reps, group = np.unique(w1[moving].T, axis=0, return_index=True, return_inverse=True)
    group = np.asarray(group).ravel()
    reach = e[:, moving] @ np.abs(w1[np.ix_(moving, reps)])  # [P, G]
    # Nonzeros of W2 keyed by (twin group, output column).
    keys, key_of = np.unique(np.stack([group[sp2.rows], sp2.cols]), axis=1, return_inverse=True)
    key_of = np.asarray(key_of).ravel()
    order = np.argsort(key_of, kind="stable")
    starts = np.searchsorted(key_of[order], np.arange(keys.shape[1]))
    units = sp2.rows[order]
    summed = np.add.reduceat(on[:, units] * sp2.vals[order], starts, axis=1)  # [P, K]
    contrib = reach[:, keys[0]] * np.abs(summed)
    by_col = np.argsort(keys[1], kind="stable")
    col_ids, col_starts = np.unique(keys[1][by_col], return_index=True)
    out[:, col_ids] = np.add.reduceat(contrib[:, by_col], col_starts, axis=1)
    return out


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
    """
    w = np.abs(as_float32_values(w_qk))
    if w.size == 0:
        return 0.0, 0.0
    rows, cols = w.shape
    query_noisy, key_noisy = np.asarray(query_noisy, bool), np.asarray(key_noisy, bool)
    query_l1 = min(query_l1, int(query_noisy.sum()) * query_error)
    key_l1 = min(key_l1, int(key_noisy.sum()) * key_error)
    largest = float(w.max())
    exact_logit = largest * (query_sops + 2) * (key_sops + 2)
    scaling = scale_roundings * U * exact_logit
    if query_l1 == 0 and key_l1 == 0:
        # terms + 2 products (each may round once: u) and their additions.
        d = float((2 * terms + 5) * U * exact_logit + scaling)
        return d, (0.0 if terms == 1 else 2 * d)

    def reach(mat, noisy_out, sops, err):
        """max over rows i of sum_j |mat_ij| x_j for an ideal-plus-noise input x."""
        noisy = mat[:, noisy_out] if noisy_out.any() else np.zeros((mat.shape[0], 1))
        exact = mat[:, ~noisy_out] if (~noisy_out).any() else np.zeros((mat.shape[0], 1))
        per_row = (
            sops * (1 + err) * noisy.max(axis=1) + 2 * exact.max(axis=1) + err * noisy.sum(axis=1)
        )
        return per_row

    # Exact-arithmetic move from perturbed inputs: d_q^T |W| x_k + x_q^T |W| d_k.
    row_reach = reach(w, key_noisy, key_sops, key_error)  # [rows]
    col_reach = reach(w.T, query_noisy, query_sops, query_error)  # [cols]
    move = query_l1 * float(row_reach[query_noisy].max(initial=0.0)) + key_l1 * float(
        col_reach[key_noisy].max(initial=0.0)
    )
    worst = 0.0
    for mat, _, noisy_in, sops_in, err_in, l1_in, noisy_out, sops_out, err_out, l1_out in (
        (
            w,
            None,
            key_noisy,
            key_sops,
            key_error,
            key_l1,
            query_noisy,
            query_sops,
            query_error,
            query_l1,
        ),
        (
            w.T,
            None,
            query_noisy,
            query_sops,
            query_error,
            query_l1,
            key_noisy,
            key_sops,
            key_error,
            key_l1,
        ),
    ):
        # Stage 1: r_j = sum_i mat_ji y_i over the non-copied side (input y).
        total1 = reach(mat, noisy_in, sops_in, err_in)
        noisy = mat[:, noisy_in] if noisy_in.any() else np.zeros((mat.shape[0], 1))
        small1 = np.minimum(err_in * noisy.sum(axis=1), l1_in * noisy.max(axis=1))
        rho1 = sum_bound(total1, small1, sops_in + 2, (mat != 0).sum(axis=1))
        r_hat = total1 + rho1
        # Stage 2: sum_j x_j r_j over the copied side (input x).
        big = (sops_out + 2) * (1 + err_out) * float(r_hat.max())
        small2 = min(err_out * float(r_hat[noisy_out].sum()), l1_out * float(r_hat.max()))
        rho2 = sum_bound(big + small2, small2, sops_out + 2, len(r_hat))
        carried = (sops_out + 2) * (1 + err_out) * float(rho1.max()) + min(
            err_out * float(rho1[noisy_out].sum()), l1_out * float(rho1.max())
        )
        worst = max(worst, float(rho2 + carried))
    d = move + worst + scale_roundings * U * (exact_logit + move + worst)
    return d, 2 * d
