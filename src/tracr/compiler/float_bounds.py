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
  input combinations are bounded over a box (`rounding.box_mlp_bound`). mlp_bounds.py
  holds these; bound_context.py what all the bounds share (SOpError, Context).
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

from tracr.compiler import bound_cache, bound_context, mlp_bounds, validating
from tracr.craft import bases, rounding, transformers
from tracr.rasp import rasp

#: Relative error of one float32 exp (libm and SIMD implementations stay within 4 ulp).
_EXP_ULPS = 4
#: Values below this are flushed to zero by the forward pass (model.FLUSH_BELOW).
_FLUSH = 1e-30
#: Most a categorical SOp's one-hot may be off, coordinates added up: decoding (argmax,
#: None below 0.5) stays exact far beyond it, and twice the bound, the one-hot check's
#: tolerance, stays below most real mixtures (which are off by >= 1/max_seq_len).
CATEGORICAL_BUDGET = 0.05

SOpError = bound_context.SOpError
EXACT = bound_context.EXACT
Context = bound_context.Context
WidthNumbers = bound_context.WidthNumbers
numerical_budget = bound_context.numerical_budget
_numerical, _error = bound_context.numerical, bound_context.error
_values, _magnitude = bound_context.values, bound_context.magnitude
_mlp_error = mlp_bounds.mlp_error


# -- attention --------------------------------------------------------------------------


def _noisy(ctx: Context, space: bases.VectorSpaceWithBasis) -> np.ndarray:
    """[dims] bool, read-only: the directions of `space` other than BOS and `one`; kept
    for the compile (`bound_context.per_space`)."""
    return bound_context.per_space(ctx, "noisy", space, lambda s: _not_aux(ctx, s))


def _not_aux(ctx: Context, space: bases.VectorSpaceWithBasis) -> np.ndarray:
    noisy = np.ones(space.num_dims, dtype=bool)
    for d in (ctx.bos, ctx.one):
        if d in space:
            noisy[space.index(d)] = False
    noisy.flags.writeable = False
    return noisy


def _logit_error(head, ctx, errors, aggregate: bool) -> tuple[float, float, float]:
    """(logit error D, tie error D_tie, coldness c) of a categorical_attn/selector_width
    head."""
    w = head.w_qk
    # (query SOps, key SOps) read by the scores
    query = sorted(bound_context.read_names(ctx, w.left_space))
    keys = sorted(bound_context.read_names(ctx, w.right_space))
    query_noisy, key_noisy = _noisy(ctx, w.left_space), _noisy(ctx, w.right_space)
    c = float(w.matrix[w.left_space.index(ctx.bos), w.right_space.index(ctx.bos)])
    # one_q bos_k scores (n - 1/2) c in an Aggregate's head, n c in a width's.
    one_bos = float(w.matrix[w.left_space.index(ctx.one), w.right_space.index(ctx.bos)])
    terms = max(1, round(one_bos / c + (0.5 if aggregate else 0.0)))
    query_errors = [_error(ctx, errors, s) for s in query]
    key_errors = [_error(ctx, errors, s) for s in keys]
    d, tie = rounding.attention_logit_error(
        w.matrix,
        query_noisy,
        key_noisy,
        len(query),
        len(keys),
        max((e.abs for e in query_errors), default=0.0),
        max((e.abs for e in key_errors), default=0.0),
        sum(max(e.l1, e.abs) for e in query_errors),
        sum(max(e.l1, e.abs) for e in key_errors),
        terms,
    )
    return d, tie, c


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


def _softmax_spread(d: float, keys: int) -> float:
    """eps_w: computed selected weights are within a factor 1 + eps_w of each other's
    ideal share (logit errors +-D, exp rounding, the sum of `keys` terms, the division)."""
    return _exp(2 * d) * (1 + (2 * _EXP_ULPS + 2) * rounding.U + rounding.gamma_of(keys)) - 1


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
    mass = rounding.gamma_of(keys + 2 * _EXP_ULPS + 2)
    mixing = rounding.gamma_of(keys)
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


def _width_error(block: transformers.SeriesWithResiduals, node, ctx, errors) -> SOpError:
    """`_width_bound`, kept across compiles by everything it reads (`_width_key`)."""
    key, size = _width_key(block, node, ctx, errors)
    found = None if key is None else _WIDTHS.get(key)
    if found is None:
        found = _width_bound(block, node, ctx, errors)
        bound_cache.read_only(found)
        if key is not None:
            _WIDTHS.put(key, found, size)
    return found


#: Selector-width errors kept across compiles, up to about this many bytes, for blocks
#: whose weights take up to _KEY_BYTES.
_WIDTHS = bound_cache.Known(16 << 20)
_KEY_BYTES = 1 << 16


def _width_key(block, node, ctx, errors) -> tuple[bound_cache.Key | None, int]:
    """(key, its size in bytes): the contents of every sub-block of a selector-width
    block (directions and weights), the directions it writes, BOS, `one`, max_seq_len,
    and for every name its directions carry what the bounds read of it
    (`mlp_bounds.read_key`, which says where it comes from). No key (None) for a name
    that is both width numbers and an SOp (`mlp_bounds.ambiguous`), and for large
    blocks, whose bound costs less than copying and hashing the key."""
    parts, names, size = [], {}, 4096
    for sub in block.blocks:
        if isinstance(sub, transformers.AttentionHead):
            spaces = [(sub.w_qk, sub.w_qk.left_space, sub.w_qk.right_space)]
            spaces.append((sub.w_ov, sub.w_ov.input_space, sub.w_ov.output_space))
            parts.append(sub.causal)
        else:
            spaces = [(f, f.input_space, f.output_space) for f in (sub.fst, sub.snd)]
        for fn, first, second in spaces:
            parts.append((first, second, fn.matrix))  # keyed below, if kept
            names.update(dict.fromkeys(d.name for d in first.basis + second.basis))
            size += fn.matrix.nbytes
    if size > _KEY_BYTES or any(mlp_bounds.ambiguous(ctx, errors, name) for name in names):
        return None, size  # (the key would cost more than the bound)
    parts = [
        (part[0].pairs(), part[1].pairs(), bound_cache.array_key(part[2]))
        if isinstance(part, tuple)
        else part
        for part in parts
    ]
    # For names that are no SOp (the head's numbers, hidden units), read_key is None:
    # what they hold follows from the weights keyed above.
    reads = tuple((name, mlp_bounds.read_key(ctx, errors, name)) for name in names)
    context = (node.space.pairs(), ctx.bos, ctx.one, ctx.max_seq_len)
    return bound_cache.Key((*parts, *context, reads)), size


def _width_bound(block: transformers.SeriesWithResiduals, node, ctx, errors) -> SOpError:
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
    if isinstance(block, transformers.MLP):
        spaces = [block.fst.input_space]
    elif isinstance(block, transformers.AttentionHead):
        spaces = [block.w_qk.left_space, block.w_qk.right_space, block.w_ov.input_space]
    else:
        cleanups, head, _, _ = width_parts(block)
        spaces = [head.w_qk.left_space, head.w_qk.right_space]
        spaces += [m.fst.input_space for m in cleanups]
    names = (name for s in spaces for name in bound_context.read_names(ctx, s))
    return sorted({name for name in names if name in ctx.lowered})


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
    if not isinstance(block, transformers.MLP):
        return None
    return mlp_bounds.sample_error(block, node.space, ctx, errors, count)


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


def _hints(block, ctx) -> tuple[str, str]:
    """(what to change, what float32 rounding can do) for a refused block, as its inputs
    are numerical or not."""
    if any(_numerical(ctx, s) for s in _inputs_of(block, ctx)):
        return (
            "make the numerical input categorical where it can be (an exact lookup "
            "table), or shrink the value set",
            "move its numerical input out of the range where the MLP reads it correctly",
        )
    return (
        "shrink the value sets of its inputs, or max_seq_len",
        "push a hidden unit of its MLP across its threshold",
    )


def _check(node, errors, ctx, is_output, block) -> str | None:
    err = errors[node.expr.label]
    if err.unstable:
        hint, switch = _hints(block, ctx)
        return f"float32 rounding can {switch}{_carried(block, ctx, errors)}; {hint}"
    if rasp.is_categorical(node.expr):
        worst = max(err.abs, err.l1)
        if worst > CATEGORICAL_BUDGET:
            return (
                f"float32 error bound {worst:.3g} on its one-hot exceeds the budget "
                f"{CATEGORICAL_BUDGET:.3g}{_carried(block, ctx, errors)}; {_hints(block, ctx)[0]}"
            )
        return None
    if not is_output:
        return None
    points = bound_context.points(ctx, node.expr.label)
    if points is None:
        worst = err.abs + 0.1 * err.rel
        if worst > 1e-6 or err.rel > 1e-5:
            return (
                f"float32 error bound {err.abs:.3g} + {err.rel:.3g} |y| exceeds the budget "
                f"max(1e-5 |y|, 1e-6){_carried(block, ctx, errors)}"
            )
        return None
    scale = _magnitude(ctx, node.expr.label)
    bounds = err.at_many(points)
    budgets = numerical_budget(points, scale)
    over = np.flatnonzero(bounds > budgets)
    if over.size:
        v, bound = float(points[over[0]]), bounds[over[0]]
        return (
            f"float32 error bound {bound:.3g} at output {v!r} exceeds the budget "
            f"{numerical_budget(v, scale):.3g}{_carried(block, ctx, errors)}; "
            f"{_hints(block, ctx)[0]}"
        )
    return None
