"""The float32 error bounds of MLP blocks (Map, SequenceMap, the selector-width readout):
`rounding.mlp_bound` on every ideal input (every combination of the values of the SOps an
MLP reads, and BOS), SOp by SOp where each unit reads one SOp (`rounding_grid`), over a
box of inputs where they are too many, and exact for lookups on exact inputs. The errors
are kept across compiles by the exact contents of what they are computed from
(`bound_cache`): a program compiled again is not bounded again."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from tracr.compiler import bound_cache, bound_context
from tracr.craft import bases, rounding, rounding_grid, transformers

#: Most ideal inputs, and (ideal input x hidden unit) cells, an MLP is bounded on one
#: input at a time; beyond, over a box of inputs.
_MAX_ROWS = 200_000
_MAX_CELLS = 40_000_000


def bound_mlp(fst: np.ndarray, snd: np.ndarray, rows) -> rounding.MLPBound:
    """rounding.mlp_bound on rows (X, E). Many rows that combine the values of SOps each
    read by their own units are bounded SOp by SOp (`rounding_grid`)."""
    return _grid_bound(fst, snd, rows) or rounding.mlp_bound(fst, snd, *rows)


#: Blocks whose weights take more bytes than this are first checked for an exact lookup
#: (`mlp_error`), which costs less than their key.
_KEY_BYTES = 1 << 16

#: MLP errors kept across compiles (`mlp_error`, `sample_error`, `_kept_rows_error`), up to
#: about this many bytes.
_ERRORS = bound_cache.Known(64 << 20)


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


def numerical_error(values: np.ndarray, errors: np.ndarray) -> bound_context.SOpError:
    """SOpError from per-row (value, error) pairs; equal values keep the larger error."""
    order = np.argsort(values, kind="stable")
    values, errors = values[order], errors[order]
    start = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else order
    unique = values[start]
    per_value = np.maximum.reduceat(errors, start) if len(values) else errors
    return bound_context.SOpError(
        float(np.max(errors, initial=0.0)), values=unique, per_value=per_value
    )


def mlp_rows(
    mlp: transformers.MLP, ctx: bound_context.Context, errors: Mapping[str, bound_context.SOpError]
):
    """Ideal inputs X and their errors E [P, I] (BOS last), or None if too many.

    Every combination of the values of the SOps read, and BOS; numbers of a width head
    (ctx.numbers) count as one choice per width w, all of them at that w."""
    space = mlp.fst.input_space
    groups: dict[str, list[int]] = {}
    joint: dict[str, bound_context.WidthNumbers] = {}
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
        list(joint[label].widths) if label in joint else bound_context.values(ctx, label)
        for label in labels
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
            e[-1, idx] = bound_context.error(ctx, errors, label).worst(
                bound_context.magnitude(ctx, label)
            )  # BOS: 0
        picks = grid[:, column]
        x[:-1, idx], e[:-1, idx] = xs[picks], es[picks]
        factors.append(rounding_grid.Factor(np.array(idx), xs, es))
    for d, rows in ((ctx.one, slice(None)), (ctx.bos, slice(-1, None))):
        if d in space:
            x[rows, space.index(d)] = 1.0
    return _Rows(x, e, factors)


class _Rows(tuple):
    """(X, E) of `mlp_rows`, with the SOps' values one by one (`factors`: the rows but
    the last, BOS, are every combination of them)."""

    factors: list

    def __new__(cls, x, e, factors):
        rows = super().__new__(cls, (x, e))
        rows.factors = factors
        return rows


def _value_rows(ctx, errors, space, label, values, idx) -> tuple[np.ndarray, np.ndarray]:
    """The inputs of one SOp at each of its values, and their errors: [n, len(idx)]."""
    err = bound_context.error(ctx, errors, label)
    if bound_context.numerical(ctx, label):
        points = bound_context.points(ctx, label)
        return points[:, None], err.at_many(points)[:, None]
    xs = np.zeros((max(1, len(values)), len(idx)))
    at = {i: j for j, i in enumerate(idx)}
    for row, v in enumerate(values):
        if v is not None:
            xs[row, at[space.index(bases.BasisDirection(label, v))]] = 1.0
    return xs, np.full_like(xs, err.abs)


def exact_lookup(mlp, ctx, errors) -> bool:
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
        err = bound_context.error(ctx, errors, d.name)
        if err.abs or err.rel or (err.per_value is not None and np.any(err.per_value)):
            return False
        if bound_context.numerical(ctx, d.name):
            points = bound_context.points(ctx, d.name)
            if points is None:
                return False
            in_max[i] = bound_context.magnitude(ctx, d.name)
            bits = max(bits, rounding.grid_bits(points))
    return rounding.exact_block(mlp.fst.matrix, mlp.snd.matrix, in_max, bits)


def mlp_error(mlp, out_space, ctx, errors, rows=None) -> bound_context.SOpError:
    """The error of the SOp an MLP writes in out_space, bounded on `rows` (X, E); by
    default on every ideal input (`mlp_rows`, built only where the block is not an exact
    lookup), over a box where those are too many. Without `rows`, kept by everything it
    is computed from (`_error_key`): a block bounded again (in a later compile of the
    program, say) with the same inputs is not bounded again. The result's arrays are
    read-only."""
    large = mlp.fst.matrix.nbytes + mlp.snd.matrix.nbytes > _KEY_BYTES
    if large and exact_lookup(mlp, ctx, errors):  # cheaper than the key of a large block
        return _lookup_error(mlp, out_space)
    key = None if rows is not None else _error_key(mlp, out_space, ctx, errors)
    found = None if key is None else _ERRORS.get(key)
    if found is not None:
        return found
    err = _bounded_error(mlp, out_space, ctx, errors, rows)
    bound_cache.read_only(err)
    if key is not None:
        _ERRORS.put(key, err, _entry_size(mlp, err))
    return err


def _entry_size(mlp, err) -> int:
    return bound_cache.nbytes(mlp.fst.matrix, mlp.snd.matrix, err.values, err.per_value) + 1024


def sample_error(mlp, out_space, ctx, errors, count: int):
    """(bound, complete): `mlp_error` on every k-th of the MLP's ideal inputs (about
    `count`) and BOS, at most the full bound; `complete` where that sample is every
    input (the bound is the block's). None for an exact lookup, or where the inputs are
    too many to enumerate. Kept as `mlp_error` results are."""
    if exact_lookup(mlp, ctx, errors):
        return None
    key = _error_key(mlp, out_space, ctx, errors, ("sample", count))
    found = None if key is None else _ERRORS.get(key)
    if found is not None:
        return found[0]
    result = None
    rows = mlp_rows(mlp, ctx, errors)
    if rows is not None:
        x, e = rows
        step = max(1, (len(x) - 1) // count)
        if step == 1:
            result = mlp_error(mlp, out_space, ctx, errors, rows), True
        else:
            keep = np.r_[np.arange(0, len(x) - 1, step), len(x) - 1]
            result = mlp_error(mlp, out_space, ctx, errors, (x[keep], e[keep])), False
    if key is not None:
        size = 1024 if result is None else _entry_size(mlp, result[0])
        _ERRORS.put(key, (result,), size)
    return result


def _error_key(mlp, out_space, ctx, errors, kind=("error",)) -> bound_cache.Key | None:
    """Everything `mlp_error` reads without rows, exactly, or None where an input is not
    an SOp the bounds know (then it is bounded afresh): the weights' bytes, the input,
    output and written directions, BOS and `one`, and what it reads of every SOp read
    (`read_key`)."""
    space = mlp.fst.input_space
    reads = []
    for label in bound_context.read_names(ctx, space):
        read = read_key(ctx, errors, label)
        if read is None:
            return None
        reads.append(read)
    weights = bound_cache.array_key(mlp.fst.matrix), bound_cache.array_key(mlp.snd.matrix)
    spaces = space, mlp.snd.output_space, out_space
    directions = tuple(space.pairs() for space in spaces)
    return bound_cache.Key((*kind, *weights, *directions, ctx.bos, ctx.one, tuple(reads)))


def ambiguous(ctx, errors, label) -> bool:
    """Whether `label` is width numbers and also an SOp or a hidden one-hot: the bounds
    would read one or the other, so no key stands for it."""
    return label in ctx.numbers and (label in errors or label in ctx.hidden)


def read_key(ctx, errors, label) -> tuple | None:
    """What the bounds read of the SOp `label`, exactly: where it comes from (errors,
    hidden one-hots, width numbers), then its values, its kind and its error, or the
    width numbers it is; None for an unknown or `ambiguous` one. Categorical values only
    place ones in the inputs: == on them is enough. Kept per compile while the SOp's
    error (or numbers, or hidden entry) is the same object."""
    source = ctx.numbers.get(label) or ctx.hidden.get(label) or errors.get(label)
    if source is None or ambiguous(ctx, errors, label):
        return None
    known = ctx.memo.get(("read key", label))
    if known is not None and known[0] is source:
        return known[1]
    array_key = bound_cache.array_key
    reading = ctx.numbers.get(label)
    if reading is not None:
        arrays = (reading.widths, reading.ideal, reading.error)
        arrays += (reading.bos_ideal, reading.bos_error)
        read = (reading.label, reading.directions, *map(array_key, arrays))
    else:
        numerical = bound_context.numerical(ctx, label)
        if numerical:
            values = bound_context.points(ctx, label)
            values = None if values is None else array_key(values)
        else:
            values = bound_context.values(ctx, label)
            values = None if values is None else tuple(values)
        err = bound_context.error(ctx, errors, label)
        read = (label in errors, label in ctx.hidden, numerical, values, _error_part(err))
    ctx.memo[("read key", label)] = (source, read)
    return read


def _error_part(err: bound_context.SOpError) -> tuple:
    """An SOpError's exact contents, as `read_key` holds them: its numbers (float.hex),
    `unstable`, and its arrays' keys. Kept on the error where its arrays are read-only
    (it cannot change then): the errors kept across compiles are keyed again each time."""
    known = err.__dict__.get("_key")
    if known is not None:
        return known
    array_key = bound_cache.array_key
    part = (
        tuple(map(bound_cache.number_key, (err.abs, err.rel, err.l1))),
        err.unstable,
        None if err.values is None else array_key(err.values),
        None if err.per_value is None else array_key(err.per_value),
    )
    arrays = (a for a in (err.values, err.per_value) if a is not None)
    if all(not a.flags.writeable for a in arrays):
        object.__setattr__(err, "_key", part)  # not a field: eq and replace ignore it
    return part


def _lookup_error(mlp, out_space) -> bound_context.SOpError:
    """`mlp_error` of an exact lookup: its float32 output weights, exactly."""
    weights = mlp.snd.matrix[:, mlp.snd.output_space.indices(out_space.basis)]
    represented = np.array_equal(rounding.as_float32_values(weights), weights)
    return bound_context.SOpError(0.0, rel=0.0 if represented else rounding.U)


def _bounded_error(mlp, out_space, ctx, errors, rows) -> bound_context.SOpError:
    """`mlp_error`, computed."""
    if exact_lookup(mlp, ctx, errors):
        return _lookup_error(mlp, out_space)
    cols = mlp.snd.output_space.indices(out_space.basis)
    numerical = out_space.num_dims == 1 and out_space.basis[0].value is None
    if rows is None:
        rows = mlp_rows(mlp, ctx, errors)
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
            elif bound_context.numerical(ctx, d.name):
                mag = bound_context.magnitude(ctx, d.name)
                low[i], high[i] = -mag, mag
                err[i] = bound_context.error(ctx, errors, d.name).worst(mag)
            else:
                high[i], err[i] = 1.0, bound_context.error(ctx, errors, d.name).abs
        bound = rounding.box_mlp_bound(mlp.fst.matrix, mlp.snd.matrix, low, high, err)[cols]
        return bound_context.SOpError(float(np.max(bound, initial=0.0)), l1=float(np.sum(bound)))
    if rows[0].nbytes > _KEEP_ROWS_BYTES:  # not worth holding on to
        return _rows_error(mlp.fst.matrix, mlp.snd.matrix, rows, cols, numerical)
    return _kept_rows_error(mlp.fst.matrix, mlp.snd.matrix, rows, cols, numerical)


#: Inputs X up to this size are keys of `_kept_rows_error` (copying and hashing rows
#: costs far less than bounding them; beyond, the copies would crowd out the others).
_KEEP_ROWS_BYTES = 8 << 20


def _kept_rows_error(fst, snd, rows, cols, numerical: bool) -> bound_context.SOpError:
    """`_rows_error`, kept across compiles by the arrays' contents: once for blocks with
    the same weights, inputs and outputs (the three pair balances of shuffle_dyck, the
    selector-width readouts of one max_seq_len, a program compiled again)."""
    arrays = [fst, snd, *rows, cols]
    for f in getattr(rows, "factors", None) or []:
        arrays += [f.cols, f.x, f.e]
    key = bound_cache.Key((numerical, *map(bound_cache.array_key, arrays)))
    found = _ERRORS.get(key)
    if found is None:
        found = _rows_error(fst, snd, rows, cols, numerical)
        size = bound_cache.nbytes(*arrays, found.values, found.per_value) + 1024
        _ERRORS.put(key, found, size)
    return found


def _rows_error(fst, snd, rows, cols, numerical: bool) -> bound_context.SOpError:
    """The error of the output columns `cols` of relu(x fst) snd on rows (X, E)."""
    x, e = rows
    result = bound_mlp(fst, snd, rows)
    design = np.maximum(x @ fst, 0) @ snd  # float64 weights
    total = (result.bound + np.abs(result.ideal - design))[:, cols]
    unstable = bool(np.any(result.unstable))
    if numerical:
        err = numerical_error(design[:, cols[0]], total[:, 0])
        err = dataclasses.replace(err, unstable=unstable)
    else:
        worst = float(np.max(total, initial=0.0))
        l1 = float(np.max(total.sum(axis=1), initial=0.0))
        err = bound_context.SOpError(worst, l1=l1, unstable=unstable)
    bound_cache.read_only(err)
    return err
