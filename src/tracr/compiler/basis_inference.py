"""Infer the finite set of values every SOp of a program can take.

Rules (they follow the reference Tracr's, made explicit):
- tokens: the vocab; indices: 0..max_seq_len-1; length: 1..max_seq_len;
  SelectorWidth: 0..max_seq_len; Full: its fill value.
- Map / SequenceMap: the function applied to every value (every pair of values) of its
  inputs. A None input gives None, as `rasp.evaluate` does. A call that raises an
  ArithmeticError (a division by zero, say) is skipped, as in the reference: on such an
  input `rasp.evaluate` raises too, so it is no valid input of the program. Any other
  exception is a bug in the function and is reported with the expression and the value.
  A result of None is kept as None (it encodes as "no value").
- categorical Aggregate: the values of the aggregated SOp, plus None (nothing selected).
- numerical Aggregate: every mean of 1..max_seq_len values of the aggregated SOp, plus 0
  (the default); when that set would exceed `MAX_MEANS` values it is left unknown
  (None), which is only refused where a later MLP needs to enumerate it.

The result maps each SOp's label to a frozenset of values, or None where unknown.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from tracr import caches
from tracr.compiler import bound_cache, nodes, numeric_points, rasp_to_graph
from tracr.rasp import rasp

MAX_MEANS = 50_000

ValueSet = frozenset | None


class ValueSetError(ValueError):
    """A function of the program raised while its value set was being enumerated."""


def _apply_all(expr: rasp.SOp, f: Callable, argument_tuples: Iterable[tuple]) -> frozenset:
    out = set()
    for args in argument_tuples:
        if None in args:
            out.add(None)
            continue
        try:
            result = f(*args)
        except ArithmeticError:
            continue
        except Exception as err:
            shown = args[0] if len(args) == 1 else args
            raise ValueSetError(
                f"{type(expr).__name__} {expr.label!r} raised {type(err).__name__}: {err} "
                f"on input {shown!r} while enumerating its values"
            ) from err
        try:
            out.add(result)
        except TypeError as err:
            raise ValueSetError(
                f"{type(expr).__name__} {expr.label!r} returned an unhashable value "
                f"{result!r} for input {args!r}; values must be hashable"
            ) from err
    return frozenset(out)


def _map_values(expr: rasp.Map, inner: frozenset, groupings: dict | None = None) -> frozenset:
    """`_apply_all` for a Map: f over the values in one pass, and the careful loop (which
    skips and reports) only where some call raises or a result is unhashable.

    groupings (value set -> numeric_points.Grouping): where the input is numerical, f is
    evaluated through the input's Grouping, whose results validation and lowering reuse."""
    if groupings is not None and rasp.is_numerical(expr.inner):
        shared = _grouped_map_values(expr, inner, groupings)
        if shared is not None:
            return shared
    values = [x for x in inner if x is not None]
    try:
        out = set(map(expr.f, values))
    except Exception:  # noqa: BLE001 - the loop below says which, or skips it
        return _apply_all(expr, expr.f, ((x,) for x in inner))
    if len(values) < len(inner):
        out.add(None)
    return frozenset(out)


def _grouped_map_values(expr: rasp.Map, inner: frozenset, groupings: dict) -> ValueSet:
    """`_map_values` through the Grouping of a numerical input; None where the values do
    not sort or some call raises other than arithmetically (the careful loop reports)."""
    try:
        out = set(numeric_points.Grouping.shared(groupings, inner).results(expr.f))
    except Exception:  # noqa: BLE001 - the caller's loop says which, or skips it
        return None
    out.discard(numeric_points.RAISED)  # skipped, as `_apply_all` skips them
    if None in inner:
        out.add(None)
    return frozenset(out)


def _means(values: frozenset, max_seq_len: int) -> ValueSet:
    """Every mean of 1..max_seq_len values drawn (with repetition) from `values`."""
    if None in values or not all(isinstance(v, (int, float)) for v in values):
        return None
    if all(type(v) is int or type(v) is bool for v in values):
        return _integer_means(values, max_seq_len)
    return _computed_means(values, max_seq_len)


@functools.lru_cache(maxsize=128)
def _integer_means(values: frozenset, max_seq_len: int) -> ValueSet:
    """`_means` of ints and bools, kept across compiles by content: their sums are exact
    ints, so sets that are equal (== is exact on ints) have the same means, and the
    result, a frozenset, can be shared."""
    return _computed_means(values, max_seq_len)


caches.register(_integer_means.cache_clear)


def _computed_means(values: frozenset, max_seq_len: int) -> ValueSet:
    out = {0}
    sums = {0}
    for count in range(1, max_seq_len + 1):
        sums = {s + v for s in sums for v in values}
        if len(sums) * (max_seq_len - count + 1) > MAX_MEANS:
            return None
        out.update(s / count for s in sums)
    if all(isinstance(v, int) for v in values):
        return frozenset(out)  # integer sums are exact: the same floats evaluate computes
    return frozenset(numeric_points.representatives(out))


def _value_set(
    expr: rasp.SOp,
    sets: Mapping[str, ValueSet],
    vocab: frozenset,
    max_seq_len: int,
    groupings: dict | None = None,
) -> ValueSet:
    if isinstance(expr, rasp.TokensType):
        return vocab
    if isinstance(expr, rasp.IndicesType):
        return frozenset(range(max_seq_len))
    if isinstance(expr, rasp.LengthType):
        return frozenset(range(1, max_seq_len + 1))
    if isinstance(expr, rasp.SelectorWidth):
        return frozenset(range(max_seq_len + 1))
    if isinstance(expr, rasp.Full):
        return frozenset([expr.fill])
    if isinstance(expr, rasp.Map):
        inner = sets[expr.inner.label]
        return None if inner is None else _map_values(expr, inner, groupings)
    if isinstance(expr, rasp.SequenceMap):
        fst, snd = sets[expr.fst.label], sets[expr.snd.label]
        if fst is None or snd is None:
            return None
        linear = _linear_values(expr, fst, snd, groupings)
        if linear is not None:
            return linear
        pairs = itertools.product(fst, snd)
        feasible = pair_constraint(expr.fst, expr.snd)
        if feasible is not None:
            pairs = (pair for pair in pairs if feasible(*pair))
        return _apply_all(expr, expr.f, pairs)
    if isinstance(expr, rasp.Aggregate):
        inner = sets[expr.sop.label]
        if rasp.is_categorical(expr):
            return None if inner is None else inner | {None}
        return None if inner is None else _means(inner, max_seq_len)
    raise NotImplementedError(f"no value-set rule for {type(expr).__name__} {expr.label!r}")


def _linear_values(
    expr: rasp.SequenceMap, fst: frozenset, snd: frozenset, groupings: dict | None = None
) -> ValueSet:
    """fst_fac * x + snd_fac * y over all pairs, as numpy arrays: the same IEEE
    operations in the same order as the Python expression, so the same floats (an int
    result comes out as the equal float, which only a numerical SOp may hold). None
    where that does not apply (None values, other SequenceMaps).

    groupings: the result's Grouping is put there, made from the sorted array at hand,
    where the values are many (the bounds read them sorted; a big set costs more to sort
    again)."""
    if not isinstance(expr, rasp.LinearSequenceMap) or expr.fst.label == expr.snd.label:
        return None
    facs = (expr.fst_fac, expr.snd_fac)
    if not all(type(f) in (int, float) and abs(f) < 2**53 for f in facs):
        return None
    for values, fac in ((fst, expr.fst_fac), (snd, expr.snd_fac)):
        # every product must be a Python float (an int times an int stays an int)
        # (or the SOp is numerical: its values are only ever used as floats)
        floats = (
            rasp.is_numerical(expr) or type(fac) is float or all(type(v) is float for v in values)
        )
        if not floats or not all(type(v) in (int, float) and abs(v) < 2**53 for v in values):
            return None
    x = np.fromiter(fst, dtype=np.float64, count=len(fst))
    y = np.fromiter(snd, dtype=np.float64, count=len(snd))
    facs = tuple(float(f).hex() for f in facs)  # exact, -0.0 included
    key = (x.tobytes(), y.tobytes(), *facs)
    found = _SUMS.get(key)
    if found is None:
        found = _linear_sums(x, y, *facs)
        # the key's bytes; per value, the array's 8 and about 60 for the frozenset's float
        _SUMS.put(key, found, len(key[0]) + len(key[1]) + 68 * len(found[0] or ()))
    values, out = found
    if values is None:
        return None
    grouping = numeric_points.Grouping
    if groupings is not None and out.size >= _KEEP_SORTED:
        if grouping.kept(groupings, values) is None:
            grouping.keep(groupings, values, grouping.of_sorted(out, out.tolist()))
    return values


#: Linear SequenceMaps with this many values or more keep them sorted (`_linear_values`);
#: fewer are sorted again at less cost than keeping them.
_KEEP_SORTED = 256


#: Linear SequenceMaps' values kept across compiles by the exact contents they are made
#: of (the same bytes in the same order give the same floats): a program compiled again
#: has them at once.
_SUMS = bound_cache.Known(max_bytes=16 << 20)


def _linear_sums(x: np.ndarray, y: np.ndarray, fst_fac: str, snd_fac: str):
    """(values, the same sorted as a read-only float64 array) of fst_fac * x + snd_fac * y
    over every pair of the float64 arrays x and y (the factors as float.hex); (None, None)
    where one is not finite."""
    with np.errstate(all="ignore"):
        out = np.unique(np.add.outer(x * float.fromhex(fst_fac), y * float.fromhex(snd_fac)))
    if not np.isfinite(out).all():
        return None, None
    out.flags.writeable = False
    return frozenset(out.tolist()), out


def counts_every_position(expr: rasp.SOp) -> bool:
    """length, or the width of a selector that selects every key: at every position
    it exceeds the position's index (it is the length, or index + 1 when causal)."""
    if isinstance(expr, rasp.LengthType):
        return True
    if isinstance(expr, rasp.SelectorWidth) and isinstance(expr.selector, rasp.Select):
        return expr.selector.predicate == rasp.Comparison.TRUE
    return False


def pair_constraint(fst: rasp.SOp, snd: rasp.SOp) -> Callable[[object, object], bool] | None:
    """Which (fst value, snd value) pairs can meet at one position, where the program
    says more than "any pair of their value sets"; None when it says nothing more.

    Two facts are used: an SOp paired with itself holds one value (SequenceMap(f, s, s)
    sees only pairs (x, x)), and at every position the index is below the length (and
    below the width of a selector that selects every key), so SequenceMap(f, length,
    indices) never sees a pair with length <= index. Value sets (and the lookup tables
    built from them) leave the other pairs out: length - indices takes max_seq_len
    values, not 2 max_seq_len.
    """
    if fst.label == snd.label:  # one SOp holds one value at a position
        return lambda x, y: x == y
    if counts_every_position(fst) and isinstance(snd, rasp.IndicesType):
        return lambda x, y: x > y
    if isinstance(fst, rasp.IndicesType) and counts_every_position(snd):
        return lambda x, y: y > x
    return None


def infer_bases(
    extracted: rasp_to_graph.ExtractRaspGraphOutput,
    *,
    vocab: Iterable,
    max_seq_len: int,
    groupings: dict | None = None,
) -> dict[str, ValueSet]:
    """Returns the value set of every SOp in the traced program, keyed by label.

    groupings: value set -> numeric_points.Grouping, filled in for the inputs of
    numerical Maps; pass the same dict to `validating.validate_value_sets` and lowering
    so that they reuse the sorts and function results."""
    vocab = frozenset(vocab)
    graph = extracted.graph
    sets: dict[str, ValueSet] = {}
    for label in graph.topological_order():
        expr = graph.nodes[label][nodes.EXPR]
        if isinstance(expr, rasp.SOp):
            sets[label] = _value_set(expr, sets, vocab, max_seq_len, groupings)
    return sets
