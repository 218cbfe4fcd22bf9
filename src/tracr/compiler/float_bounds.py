"""Prove, before assembly, that the float32 model is exact in any summation order.

A compiler pass: `bound_errors(lowered, ...)` walks the SOps in topological order and
bounds, for every SOp, how far its residual coordinates can be from their ideal values
(the one-hot of the program's value, or the number) at any position of any valid input,
for float32 arithmetic in ANY summation order, with or without FMA (craft/rounding.py has
the lemma). Errors compose: each block's bound takes its inputs' bounds as input errors.

* tokens, indices, `one`, BOS and categorical constants are exact; a numerical constant
  carries its float32 rounding.
* MLPs (Map, SequenceMap, the selector-width readout) are bounded on every ideal input
  (every value combination of the SOps they read, and BOS) by `rounding.mlp_bound`,
  crediting the cancellation of a discretiser's saturated steps; blocks with too many
  input combinations are bounded over a box (`rounding.box_mlp_bound`).
* Attention heads: the logit error D (`rounding.attention_logit_error`) shrinks every
  score margin by 2D, so the leaked weight is at most lambda = e^(2D) (N + 1) e^(-c/2)
  (Aggregate, margin c/2) and the selected keys' weights agree within a factor e^(2D),
  times the softmax's own rounding (exp within 4 ulp, the sum, the division).

Refused, with the SOp, the bound and the budget named: a categorical SOp whose coordinates
may be off by more than CATEGORICAL_BUDGET in all (decoding stays exact; the runtime
one-hot check takes twice the bound as its tolerance), a numerical output beyond
max(1e-5 |y|, 1e-6), and a numerical-input MLP whose input error exceeds its tolerance
(a unit may switch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from tracr.compiler import validating
from tracr.craft import bases, rounding, rounding_grid, transformers
from tracr.rasp import rasp

#: Most ideal inputs, and (ideal input x hidden unit) cells, an MLP is bounded on one
#: input at a time; beyond, over a box of inputs.
_MAX_ROWS = 200_000
_MAX_CELLS = 40_000_000
#: Relative error of one float32 exp (libm and SIMD implementations stay within 4 ulp).
_EXP_ULPS = 4
#: Values below this are flushed to zero by the forward pass (model.FLUSH_BELOW).
_FLUSH = 1e-30
#: Most a categorical SOp's one-hot may be off, coordinates added up: decoding (argmax,
#: None below 0.5) stays exact far beyond it, and twice the bound, the one-hot check's
#: tolerance, stays below most real mixtures (which are off by >= 1/max_seq_len).
CATEGORICAL_BUDGET = 0.05


@dataclasses.dataclass(frozen=True)
class SOpError:
    """Worst-case deviation of an SOp's residual coordinates from their ideal values.

    Categorical: every coordinate is within `abs` of the one-hot, and the deviations of
    all coordinates add up to at most `l1`. Numerical: the number is within
    abs + rel |value|; where the values were enumerated, `per_value` gives the bound at
    each of the sorted `values`.
    """

    abs: float
    rel: float = 0.0
    l1: float = 0.0
    values: np.ndarray | None = None
    per_value: np.ndarray | None = None
    #: Some MLP unit reading a numerical input may switch: the input error exceeds the
    #: block's tolerance, and no bound holds.
    unstable: bool = False

    def at(self, value: float) -> float:
        return float(self.at_many(np.array([value], np.float64))[0])

    def at_many(self, values: np.ndarray) -> np.ndarray:
        """The bound at each of `values` (a numerical SOp's values)."""
        values = np.asarray(values, np.float64)
        out = self.abs + self.rel * np.abs(values)
        if self.values is not None and len(self.values):
            i = np.clip(np.searchsorted(self.values, values), 1, len(self.values) - 1)
            i = np.where(
                np.abs(self.values[i - 1] - values) <= np.abs(self.values[i] - values), i - 1, i
            )
            i = np.minimum(i, len(self.values) - 1)
            near = np.abs(self.values[i] - values) <= 1e-9 * np.maximum(1.0, np.abs(values))
            out = np.where(near, self.per_value[i], out)
        return out

    def worst(self, magnitude: float) -> float:
        """The bound for values of size up to `magnitude`."""
        if self.per_value is not None and len(self.per_value):
            return float(max(np.max(self.per_value), self.abs + self.rel * magnitude))
        return self.abs + self.rel * magnitude


EXACT = SOpError(0.0)


def numerical_budget(value, scale: float = 0.0):
    """What a numerical output may be off by: 1e-5 relative to the value, or to the
    output's scale (its largest magnitude) for values near 0, and never below 1e-6.
    `value` is a number (a float back) or an array of them (an array back).

    A value near 0 is often a difference of larger ones (opens - closes); no float32
    computation gets it to 1e-5 of itself, but one gets it to 1e-5 of the scale."""
    if np.ndim(value):
        return np.maximum(np.maximum(1e-5 * np.abs(value), 1e-5 * scale), 1e-6)
    return max(1e-5 * abs(value), 1e-5 * scale, 1e-6)


@dataclasses.dataclass(frozen=True)
class Context:
    """What the bounds need besides the blocks: lowered SOps so far (label -> an object
    with .expr, .space, .block, .constant), value sets, the BOS and `one` directions."""

    lowered: Mapping[str, object]
    value_sets: Mapping[str, frozenset | None]
    bos: bases.BasisDirection
    one: bases.BasisDirection
    max_seq_len: int
    #: One-hots inside blocks that other blocks read (a two-stage SelectorWidth's
    #: one-hot of w): direction name -> (values, SOpError).
    hidden: dict = dataclasses.field(default_factory=dict)
    #: Numbers a selector-width head writes that other blocks read (its t = 1/(w+1)
    #: and mean index): direction name -> WidthNumbers.
    numbers: dict = dataclasses.field(default_factory=dict)
    #: Results computed once per compile: sorted value sets and magnitudes by label,
    #: MLP bounds by their weights and inputs (`_bound_mlp`).
    memo: dict = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True)
class WidthNumbers:
    """The numbers a selector-width head writes, as functions of the width w: for every
    w of `widths` ([W]), the ideal value and error bound of each of `directions` ([W, D]),
    and the same at BOS ([D]). They are read together (one w per position)."""

    label: str
    directions: tuple[str, ...]
    widths: np.ndarray
    ideal: np.ndarray
    error: np.ndarray
    bos_ideal: np.ndarray
    bos_error: np.ndarray


def _numerical(ctx: Context, label: str) -> bool:
    return label not in ctx.hidden and rasp.is_numerical(ctx.lowered[label].expr)


def _error(ctx: Context, errors: Mapping[str, SOpError], label: str) -> SOpError:
    return ctx.hidden[label][1] if label in ctx.hidden else errors[label]


def _values(ctx: Context, label: str) -> list | None:
    """The sorted values of an SOp (or of a hidden one-hot); do not modify the list."""
    if label in ctx.hidden:
        return list(ctx.hidden[label][0])
    key = ("values", label)
    if key not in ctx.memo:
        ctx.memo[key] = _sorted_values(ctx, label)
    return ctx.memo[key]


def _sorted_values(ctx: Context, label: str) -> list | None:
    values = ctx.value_sets.get(label)
    if values is None:
        return None
    node = ctx.lowered[label]
    if rasp.is_categorical(node.expr):
        return sorted(values, key=repr)
    values = values - {None}
    return np.sort(np.fromiter(values, np.float64, len(values))).tolist()


def _magnitude(ctx: Context, label: str) -> float:
    """Largest |value| of a numerical SOp (1 for a categorical one: its one-hot)."""
    if not _numerical(ctx, label):
        return 1.0
    key = ("magnitude", label)
    if key not in ctx.memo:
        values = _values(ctx, label)
        ctx.memo[key] = math.inf if values is None else max(map(abs, values), default=0.0)
    return ctx.memo[key]


def _bound_mlp(ctx: Context, fst: np.ndarray, snd: np.ndarray, rows):
    """rounding.mlp_bound on rows (X, E), once per compile for blocks with the same
    weights and inputs (the three pair balances of shuffle_dyck, say): looked up by the
    arrays' shapes and sums, and compared whole. Many rows that combine the values of
    SOps each read by their own units are bounded SOp by SOp (`rounding_grid`)."""
    x, e = rows[0], rows[1]
    arrays = (fst, snd, x, e)
    key = ("mlp_bound", *((a.shape, float(a.sum())) for a in arrays))
    seen = ctx.memo.setdefault(key, [])
    for known, result in seen:
        if all(np.array_equal(a, b) for a, b in zip(arrays, known)):
            return result
    result = _grid_bound(fst, snd, rows) or rounding.mlp_bound(fst, snd, x, e)
    seen.append((arrays, result))
    return result


#: Rows from which an MLP reading several SOps is bounded SOp by SOp, where it can be.
_GRID_ROWS = 1024


def _grid_bound(fst, snd, rows) -> rounding.MLPBound | None:
    factors = getattr(rows, "factors", None)
    if not factors or len(factors) < 2 or len(rows[0]) - 1 < _GRID_ROWS:
        return None
    if not all(f.e.all() for f in factors):  # rows without errors: mlp_bound credits them
        return None
    owner = rounding_grid.separate_units(fst, factors)
    if owner is None:
        return None
    x, e = rows
    constant = x[0].copy()  # `one`; BOS and the SOps are 0 but in the BOS row
    for factor in factors:
        constant[factor.cols] = 0.0
    grid = rounding_grid.grid_mlp_bound(fst, snd, factors, constant, owner)
    bos = rounding.mlp_bound(fst, snd, x[-1:], e[-1:])
    return rounding.MLPBound(
        *(
            np.concatenate([a, b])
            for a, b in zip(dataclasses.astuple(grid), dataclasses.astuple(bos))
        )
    )


def _numerical_error(values: np.ndarray, errors: np.ndarray) -> SOpError:
    """SOpError from per-row (value, error) pairs; equal values keep the larger error."""
    order = np.argsort(values, kind="stable")
    values, errors = values[order], errors[order]
    start = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else order
    unique = values[start]
    per_value = np.maximum.reduceat(errors, start) if len(values) else errors
    return SOpError(float(np.max(errors, initial=0.0)), values=unique, per_value=per_value)


# -- MLPs -------------------------------------------------------------------------------


def _mlp_rows(mlp: transformers.MLP, ctx: Context, errors: Mapping[str, SOpError]):
    """Ideal inputs X and their errors E [P, I] (BOS last), or None if too many.

    Every combination of the values of the SOps read, and BOS; numbers of a width head
    (ctx.numbers) count as one choice per width w, all of them at that w."""
    space = mlp.fst.input_space
    groups: dict[str, list[int]] = {}
    joint: dict[str, WidthNumbers] = {}
    aux = {ctx.bos, ctx.one}
    for i, d in enumerate(space.basis):
        if d in aux:
            continue
        reading = ctx.numbers.get(d.name)
        key = d.name if reading is None else f"numbers of {reading.label}"
        groups.setdefault(key, []).append(i)
        if reading is not None:
            joint[key] = reading
    labels = list(groups)
    choices = [
        list(joint[label].widths) if label in joint else _values(ctx, label) for label in labels
    ]
    if any(c is None for c in choices):
        return None
    sizes = [max(1, len(c)) for c in choices]
    count = math.prod(sizes)
    cells = count * (mlp.hidden_space.num_dims + mlp.snd.output_space.num_dims)
    if count > _MAX_ROWS or cells > _MAX_CELLS:
        return None
    grid = np.indices(sizes).reshape(len(sizes), -1).T  # [P, SOps]: value index per SOp
    x = np.zeros((count + 1, space.num_dims))
    e = np.zeros_like(x)
    factors = []
    for column, (label, values) in enumerate(zip(labels, choices)):
        idx = groups[label]
        if label in joint:
            reading = joint[label]
            cols = [reading.directions.index(space.basis[i].name) for i in idx]
            xs, es = reading.ideal[:, cols], reading.error[:, cols]
            x[-1, idx], e[-1, idx] = reading.bos_ideal[cols], reading.bos_error[cols]
        else:
            xs, es = _value_rows(ctx, errors, space, label, values, idx)
            e[-1, idx] = _error(ctx, errors, label).worst(_magnitude(ctx, label))  # BOS: 0
        picks = grid[:, column]
        x[:-1, idx], e[:-1, idx] = xs[picks], es[picks]
        factors.append(rounding_grid.Factor(np.array(idx), xs, es))
    for d, rows in ((ctx.one, slice(None)), (ctx.bos, slice(-1, None))):
        if d in space:
            x[rows, space.index(d)] = 1.0
    return _Rows(x, e, factors)


class _Rows(tuple):
    """(X, E) of `_mlp_rows`, with the SOps' values one by one (`factors`: the rows but
    the last, BOS, are every combination of them)."""

    factors: list

    def __new__(cls, x, e, factors):
        rows = super().__new__(cls, (x, e))
        rows.factors = factors
        return rows


def _value_rows(ctx, errors, space, label, values, idx) -> tuple[np.ndarray, np.ndarray]:
    """The inputs of one SOp at each of its values, and their errors: [n, len(idx)]."""
    err = _error(ctx, errors, label)
    if _numerical(ctx, label):
        points = np.asarray(values, np.float64)
        return points[:, None], err.at_many(points)[:, None]
    xs = np.zeros((max(1, len(values)), len(idx)))
    at = {i: j for j, i in enumerate(idx)}
    for row, v in enumerate(values):
        if v is not None:
            xs[row, at[space.index(bases.BasisDirection(label, v))]] = 1.0
    return xs, np.full_like(xs, err.abs)


def _exact_lookup(mlp, ctx, errors) -> bool:
    """Exact inputs on a grid and a block whose sums all stay exact (see
    rounding.exact_block): the float32 output is the table entry rounded to float32."""
    space = mlp.fst.input_space
    in_max, bits = np.ones(space.num_dims), 0
    aux = {ctx.bos, ctx.one}
    for i, d in enumerate(space.basis):
        if d in aux:
            continue
        if d.name not in errors and d.name not in ctx.hidden:  # a width head's t
            return False
        err = _error(ctx, errors, d.name)
        if err.abs or err.rel or (err.per_value is not None and np.any(err.per_value)):
            return False
        if _numerical(ctx, d.name):
            values = _values(ctx, d.name)
            if values is None:
                return False
            in_max[i] = _magnitude(ctx, d.name)
            bits = max(bits, rounding.grid_bits(np.array(values)))
    return rounding.exact_block(mlp.fst.matrix, mlp.snd.matrix, in_max, bits)


def _mlp_error(mlp, out_space, ctx, errors, rows=None) -> SOpError:
    """The error of the SOp an MLP writes in out_space, bounded on `rows` (X, E); by
    default on every ideal input (`_mlp_rows`, built only where the block is not an exact
    lookup), over a box where those are too many."""
    cols = mlp.snd.output_space.indices(out_space.basis)
    numerical = out_space.num_dims == 1 and out_space.basis[0].value is None
    if _exact_lookup(mlp, ctx, errors):
        weights = mlp.snd.matrix[:, cols]
        represented = np.array_equal(rounding.as_float32_values(weights), weights)
        return SOpError(0.0, rel=0.0 if represented else rounding.U)
    if rows is None:
        rows = _mlp_rows(mlp, ctx, errors)
    if rows is None:
        space = mlp.fst.input_space
        low, high, err = (
            np.zeros(space.num_dims),
            np.zeros(space.num_dims),
            np.zeros(space.num_dims),
        )
        aux = {ctx.bos, ctx.one}
        for i, d in enumerate(space.basis):
            if d in aux:
                high[i] = 1.0
            elif _numerical(ctx, d.name):
                mag = _magnitude(ctx, d.name)
                low[i], high[i] = -mag, mag
                err[i] = _error(ctx, errors, d.name).worst(mag)
            else:
                high[i], err[i] = 1.0, _error(ctx, errors, d.name).abs
        bound = rounding.box_mlp_bound(mlp.fst.matrix, mlp.snd.matrix, low, high, err)[cols]
        return SOpError(float(np.max(bound, initial=0.0)), l1=float(np.sum(bound)))
    x, e = rows
    result = _bound_mlp(ctx, mlp.fst.matrix, mlp.snd.matrix, rows)
    design = np.maximum(x @ mlp.fst.matrix, 0) @ mlp.snd.matrix  # float64 weights
    total = (result.bound + np.abs(result.ideal - design))[:, cols]
    unstable = bool(np.any(result.unstable))
    if numerical:
        err = _numerical_error(design[:, cols[0]], total[:, 0])
        return dataclasses.replace(err, unstable=unstable)
    worst = float(np.max(total, initial=0.0))
    l1 = float(np.max(total.sum(axis=1), initial=0.0))
    return SOpError(worst, l1=l1, unstable=unstable)


# -- attention --------------------------------------------------------------------------


def _head_inputs(head: transformers.AttentionHead, ctx: Context, errors):
    """(query SOps, key SOps) read by a head's scores."""
    aux = {ctx.bos, ctx.one}
    query = sorted({d.name for d in head.w_qk.left_space.basis if d not in aux})
    keys = sorted({d.name for d in head.w_qk.right_space.basis if d not in aux})
    return query, keys


def _logit_error(head, ctx, errors, aggregate: bool) -> tuple[float, float, float]:
    """(logit error D, tie error D_tie, coldness c) of a categorical_attn/selector_width
    head."""
    query, keys = _head_inputs(head, ctx, errors)
    w = head.w_qk
    aux = {ctx.bos, ctx.one}  # hashed: a tuple would compare every direction with both
    query_noisy = np.array([d not in aux for d in w.left_space.basis])
    key_noisy = np.array([d not in aux for d in w.right_space.basis])
    c = float(w.matrix[w.left_space.index(ctx.bos), w.right_space.index(ctx.bos)])
    # one_q bos_k scores (n - 1/2) c in an Aggregate's head, n c in a width's.
    one_bos = float(w.matrix[w.left_space.index(ctx.one), w.right_space.index(ctx.bos)])
    terms = max(1, round(one_bos / c + (0.5 if aggregate else 0.0)))
    d, tie = rounding.attention_logit_error(
        w.matrix,
        query_noisy,
        key_noisy,
        len(query),
        len(keys),
        max((_error(ctx, errors, s).abs for s in query), default=0.0),
        max((_error(ctx, errors, s).abs for s in keys), default=0.0),
        sum(max(_error(ctx, errors, s).l1, _error(ctx, errors, s).abs) for s in query),
        sum(max(_error(ctx, errors, s).l1, _error(ctx, errors, s).abs) for s in keys),
        terms,
    )
    return d, tie, c


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


def _softmax_spread(d: float, keys: int) -> float:
    """eps_w: computed selected weights are within a factor 1 + eps_w of each other's
    ideal share (logit errors +-D, exp rounding, the sum of `keys` terms, the division)."""
    return _exp(2 * d) * (1 + (2 * _EXP_ULPS + 2) * rounding.U + float(rounding.gamma(keys))) - 1


def _aggregate_error(head, ctx, errors, value_label: str) -> SOpError:
    """Selected keys hold ideally equal logits, BOS scores c/2 less, others c less.

    The computed weights put at most `leak` outside the selected keys. A categorical mean
    moves one value, so only the total weight on it matters (`mass`: the sum and the
    division). A numerical one also depends on each selected weight: within a factor
    1 + theta of its ideal share. With exactly tied logits (exact inputs) the selected
    exps are exactly 1 and their sum an exact integer, so theta is one division's u;
    otherwise ties differ by D_tie and every exp, the sum and the division round.
    """
    d, tie, c = _logit_error(head, ctx, errors, aggregate=True)
    n = ctx.max_seq_len
    keys = n + 1
    leak = _exp(2 * d) * (n + 1) * math.exp(-c / 2)
    mass = float(rounding.gamma(keys + 2 * _EXP_ULPS + 2))
    mixing = float(rounding.gamma(keys))
    value = errors[value_label]
    if rasp.is_categorical(ctx.lowered[value_label].expr):
        v_hat = 1.0 + value.abs
        err = leak * v_hat + mass + value.abs * (1 + mass) + mixing * (1 + mass) * v_hat + _FLUSH
        l1 = (leak + mass + mixing * (1 + mass)) * (1 + value.l1) + value.l1 * (1 + mass)
        return SOpError(err, l1=l1 + _FLUSH)
    if tie == 0:
        theta = (1 + rounding.U) / (1 - 2 * leak) - 1
    else:
        theta = _softmax_spread(tie, keys) + mass
    w_dev = 2 * leak * (1 + theta) + theta
    values = _values(ctx, value_label)
    magnitude = _magnitude(ctx, value_label)
    v_err = value.worst(magnitude)
    v_hat = magnitude + v_err
    same_sign = values is not None and (min(values, default=0) >= 0 or max(values, default=0) <= 0)
    if same_sign:
        # Sum of w_s |v_s| over the selected keys is |y|: errors relative to the output.
        rel = theta + value.rel * (1 + theta) + mixing * (1 + theta) * (1 + value.rel)
        a = value.abs if value.per_value is None else v_err
        return SOpError(2 * leak * v_hat * (1 + mixing) + (1 + w_dev) * a + _FLUSH, rel)
    return SOpError(v_err * (1 + w_dev) + (w_dev + mixing * (1 + w_dev)) * v_hat + _FLUSH)


def width_parts(block: transformers.SeriesWithResiduals):
    """(MLPs cleaning the selector's inputs, head, readout MLP, number lookups) of a
    selector-width block: [cleanups..., head, readout, (lookup)]."""
    blocks = list(block.blocks)
    at = next(i for i, b in enumerate(blocks) if isinstance(b, transformers.AttentionHead))
    return blocks[:at], blocks[at], blocks[at + 1], blocks[at + 2 :]


def _width_t(head, ctx, errors) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(t, t_err, bos_err, spread, leak) of a selector-width head: t = 1/(w+1) for
    w = 0..N with its error, the error at BOS (ideally 1), the relative spread of the
    weights of BOS and the selected keys (`_softmax_spread`) and the factor
    e^(2D) N e^(-c): at most that times t is the weight on keys not selected (at most
    that is off BOS at BOS)."""
    d, tie, c = _logit_error(head, ctx, errors, aggregate=False)
    n = ctx.max_seq_len
    spread = _softmax_spread(tie, n + 1)
    leak = _exp(2 * d) * n * math.exp(-c)
    t = 1.0 / (np.arange(n + 1) + 1)
    t_err = t * spread + leak * t**2 + _FLUSH
    return t, t_err, leak + spread, spread, leak


def width_numbers(block, label: str, ctx: Context, errors) -> WidthNumbers:
    """The numbers t = 1/(w+1) and m (the mean index) that the head of a selector-width
    block with `mean_index` writes, with their error bounds.

    Such a head's selector selects every key (length, say; the compiler builds no other),
    so off BOS every visible key scores as BOS does and none leaks: each weight is
    within a factor 1 + spread of 1/(w+1) (`_softmax_spread`), and t = that weight on
    BOS is off by at most spread t. m = sum over the keys of index / (w + 1) =
    w (w - 1) / (2 (w + 1)) moves by at most spread m in exact arithmetic; the products
    weight x index round by u each and their sum (at most N + 1 terms) by
    gamma_(N+1) in any order: |m_hat - m| <= spread m + (u + gamma_(N+1) (1 + u))
    (1 + spread) m. The output projection is exact (weights 1, one term) and so is the
    residual write (the directions hold 0 before). At BOS the keys other than BOS hold at
    most leak = e^(2D) N e^(-c) of the weight (`_width_t`): m is off 0 by at most
    leak (N - 1) (1 + 2 gamma_(N+1)), and t is within bos_err of 1, from which the
    readout's cleanup unit subtracts exactly 1 (Sterbenz): blocks after the readout,
    the only ones that can read these numbers, see t within bos_err of 0 at BOS.
    Flushed weights (< 1e-30) add N^2 1e-30.
    """
    _, head, _, _ = width_parts(block)
    _, _, bos_err, spread, leak = _width_t(head, ctx, errors)
    n = ctx.max_seq_len
    g = float(rounding.gamma(n + 1))
    w = np.arange(n + 1, dtype=np.float64)
    t = 1.0 / (w + 1)
    m = w * (w - 1) / (2 * (w + 1))
    m_err = spread * m + (rounding.U + g * (1 + rounding.U)) * (1 + spread) * m
    return WidthNumbers(
        label,
        tuple(d.name for d in head.w_ov.output_space.basis),
        w,
        np.stack([t, m], axis=1),
        np.stack([t * spread, m_err], axis=1) + n * n * _FLUSH,
        np.array([0.0, 0.0]),
        np.array([bos_err, leak * (n - 1) * (1 + 2 * g)]) + n * n * _FLUSH,
    )


def _width_inputs(block, ctx, errors):
    """(readout MLP rows X, E) of a selector-width block: t = 1/(w+1) for w = 0..N with
    its error from the head, and BOS."""
    _, head, mlp, _ = width_parts(block)
    t, t_err, bos_err, _, _ = _width_t(head, ctx, errors)
    n = ctx.max_seq_len
    t_dir = head.w_ov.output_space.basis[0]
    space = mlp.fst.input_space
    x = np.zeros((n + 2, space.num_dims))
    e = np.zeros_like(x)
    it = space.index(t_dir)
    x[:-1, it], e[:-1, it] = t, t_err
    x[-1, it], e[-1, it] = 1.0, bos_err
    x[:, space.index(ctx.one)] = 1.0
    x[-1, space.index(ctx.bos)] = 1.0
    return x, e


def register_clean_copy(mlp, space, ctx: Context, errors) -> SOpError:
    """Bounds the MLP writing a clean copy `space` of a categorical SOp and registers the
    copy (read by a head in the same block) in ctx.hidden."""
    err = _mlp_error(mlp, space, ctx, errors)
    ctx.hidden[space.basis[0].name] = ([d.value for d in space.basis], err)
    return err


def width_one_hot(block, ctx, errors) -> tuple[bases.VectorSpaceWithBasis, SOpError]:
    """The one-hot of w that a two-stage selector-width block writes, and its error."""
    _, head, mlp, _ = width_parts(block)
    t_dir = head.w_ov.output_space.basis[0]
    one_hot = bases.VectorSpaceWithBasis([d for d in mlp.snd.output_space.basis if d != t_dir])
    return one_hot, _mlp_error(mlp, one_hot, ctx, errors, _width_inputs(block, ctx, errors))


def _width_error(block: transformers.SeriesWithResiduals, node, ctx, errors):
    _, _, readout, number = width_parts(block)
    if not number:
        return _mlp_error(readout, node.space, ctx, errors, _width_inputs(block, ctx, errors))
    # Two stages: the readout's one-hot of w, then a lookup of the number.
    one_hot, hidden = width_one_hot(block, ctx, errors)
    n = ctx.max_seq_len
    lookup = number[0]
    space = lookup.fst.input_space
    x = np.zeros((n + 2, space.num_dims))
    cols = space.indices(one_hot.basis)
    x[np.arange(n + 1), cols] = 1.0
    x[:, space.index(ctx.one)] = 1.0
    e = np.zeros_like(x)
    e[:, cols] = hidden.abs
    err = _mlp_error(lookup, node.space, ctx, errors, (x, e))
    return dataclasses.replace(err, unstable=err.unstable or hidden.unstable)


def _inputs_of(block, ctx) -> list[str]:
    aux = {ctx.bos, ctx.one}
    if isinstance(block, transformers.MLP):
        spaces = [block.fst.input_space]
    elif isinstance(block, transformers.AttentionHead):
        spaces = [block.w_qk.left_space, block.w_qk.right_space, block.w_ov.input_space]
    else:
        cleanups, head, _, _ = width_parts(block)
        spaces = [head.w_qk.left_space, head.w_qk.right_space]
        spaces += [m.fst.input_space for m in cleanups]
    return sorted(
        {d.name for s in spaces for d in s.basis if d not in aux and d.name in ctx.lowered}
    )


def sop_error(node, ctx: Context, errors: Mapping[str, SOpError]) -> SOpError:
    """The worst-case error of one lowered SOp, given the errors of the SOps it reads."""
    block = node.block
    if block is None:
        if node.constant is not None and rasp.is_numerical(node.expr):
            exact = float(node.constant)
            return SOpError(abs(float(np.float32(exact)) - exact))
        return EXACT
    if isinstance(block, transformers.MLP):
        return _mlp_error(block, node.space, ctx, errors)
    if isinstance(block, transformers.AttentionHead):
        return _aggregate_error(block, ctx, errors, block.w_ov.input_space.basis[0].name)
    return _width_error(block, node, ctx, errors)


def findings(
    lowered: Mapping[str, object], errors: Mapping[str, SOpError], ctx: Context, output_label: str
) -> list[validating.TracrUnsupportedExpr]:
    """The SOps whose error bound breaks exactness, with the reason."""
    found = []
    for label, node in lowered.items():
        if node.block is None:
            continue
        reason = _check(node, errors, ctx, label == output_label, node.block)
        if reason:
            found.append(validating.TracrUnsupportedExpr(expr=node.expr, reason=reason))
    return found


def bound_errors(
    lowered: Mapping[str, object],
    *,
    value_sets: Mapping[str, frozenset | None],
    bos_dir: bases.BasisDirection,
    one_dir: bases.BasisDirection,
    max_seq_len: int,
    output_label: str,
) -> tuple[dict[str, SOpError], list[validating.TracrUnsupportedExpr]]:
    """Every SOp's worst-case float32 error (in topological order of `lowered`), and the
    SOps whose error breaks exactness."""
    ctx = Context(lowered, value_sets, bos_dir, one_dir, max_seq_len)
    errors: dict[str, SOpError] = {}
    for label, node in lowered.items():
        errors[label] = sop_error(node, ctx, errors)
    return errors, findings(lowered, errors, ctx, output_label)


def sample_error(node, ctx: Context, errors: Mapping[str, SOpError], count: int = 256):
    """(bound, complete): the error bound of an MLP on every k-th of its ideal inputs
    (about `count`) and BOS, at most the full bound, so a construction it refuses is
    refused, found cheaply; `complete` where that sample is every input (the bound is
    the block's). None where the MLP is not bounded input by input."""
    block = node.block
    if not isinstance(block, transformers.MLP) or _exact_lookup(block, ctx, errors):
        return None
    rows = _mlp_rows(block, ctx, errors)
    if rows is None:
        return None
    x, e = rows
    step = max(1, (len(x) - 1) // count)
    if step == 1:
        return _mlp_error(block, node.space, ctx, errors, rows), True
    keep = np.r_[np.arange(0, len(x) - 1, step), len(x) - 1]
    return _mlp_error(block, node.space, ctx, errors, (x[keep], e[keep])), False


def exceeds_budget(node, ctx: Context, errors: Mapping[str, SOpError]) -> bool:
    """Whether `node`'s error would be refused if it were the program's output."""
    label = node.expr.label
    ctx = dataclasses.replace(ctx, lowered={**ctx.lowered, label: node})
    return _check(node, {**errors, label: node.error}, ctx, True, node.block) is not None


def _carried(block, ctx, errors) -> str:
    inputs = [(_error(ctx, errors, s).worst(_magnitude(ctx, s)), s) for s in _inputs_of(block, ctx)]
    if not inputs:
        return ""
    err, label = max(inputs)
    return f"; its input {label!r} carries an error of up to {err:.3g}"


def _check(node, errors, ctx, is_output, block) -> str | None:
    err = errors[node.expr.label]
    numerical_input = any(_numerical(ctx, s) for s in _inputs_of(block, ctx))
    if numerical_input:
        hint = (
            "make the numerical input categorical where it can be (an exact lookup "
            "table), or shrink the value set"
        )
        switch = "move its numerical input out of the range where the MLP reads it correctly"
    else:
        hint = "shrink the value sets of its inputs, or max_seq_len"
        switch = "push a hidden unit of its MLP across its threshold"
    if err.unstable:
        return f"float32 rounding can {switch}{_carried(block, ctx, errors)}; {hint}"
    if rasp.is_categorical(node.expr):
        worst = max(err.abs, err.l1)
        if worst > CATEGORICAL_BUDGET:
            return (
                f"float32 error bound {worst:.3g} on its one-hot exceeds the budget "
                f"{CATEGORICAL_BUDGET:.3g}{_carried(block, ctx, errors)}; {hint}"
            )
        return None
    if not is_output:
        return None
    values = _values(ctx, node.expr.label)
    if values is None:
        worst = err.abs + 0.1 * err.rel
        if worst > 1e-6 or err.rel > 1e-5:
            return (
                f"float32 error bound {err.abs:.3g} + {err.rel:.3g} |y| exceeds the budget "
                f"max(1e-5 |y|, 1e-6){_carried(block, ctx, errors)}"
            )
        return None
    scale = _magnitude(ctx, node.expr.label)
    points = np.asarray(values, np.float64)
    bounds = err.at_many(points)
    budgets = numerical_budget(points, scale)
    over = np.flatnonzero(bounds > budgets)
    if over.size:
        v, bound = values[over[0]], bounds[over[0]]
        return (
            f"float32 error bound {bound:.3g} at output {v!r} exceeds the budget "
            f"{numerical_budget(v, scale):.3g}{_carried(block, ctx, errors)}; {hint}"
        )
    return None
