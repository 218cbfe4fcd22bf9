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

import itertools
from collections.abc import Callable, Iterable, Mapping

from tracr.compiler import nodes, numeric_points, rasp_to_graph
from tracr.rasp import rasp

MAX_MEANS = 50_000

ValueSet = frozenset | None


class ValueSetError(ValueError):
    """A function of the program raised while its value set was being enumerated."""


def _apply_all(expr: rasp.SOp, f: Callable, argument_tuples: Iterable[tuple]) -> frozenset:
    out = set()
    for args in argument_tuples:
        if any(a is None for a in args):
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
            hash(result)
        except TypeError as err:
            raise ValueSetError(
                f"{type(expr).__name__} {expr.label!r} returned an unhashable value "
                f"{result!r} for input {args!r}; values must be hashable"
            ) from err
        out.add(result)
    return frozenset(out)


def _means(values: frozenset, max_seq_len: int) -> ValueSet:
    """Every mean of 1..max_seq_len values drawn (with repetition) from `values`."""
    if None in values or not all(isinstance(v, (int, float)) for v in values):
        return None
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
    expr: rasp.SOp, sets: Mapping[str, ValueSet], vocab: frozenset, max_seq_len: int
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
        return None if inner is None else _apply_all(expr, expr.f, ((x,) for x in inner))
    if isinstance(expr, rasp.SequenceMap):
        fst, snd = sets[expr.fst.label], sets[expr.snd.label]
        if fst is None or snd is None:
            return None
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


def _counts_every_position(expr: rasp.SOp) -> bool:
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
    if _counts_every_position(fst) and isinstance(snd, rasp.IndicesType):
        return lambda x, y: x > y
    if isinstance(fst, rasp.IndicesType) and _counts_every_position(snd):
        return lambda x, y: y > x
    return None


def infer_bases(
    extracted: rasp_to_graph.ExtractRaspGraphOutput,
    *,
    vocab: Iterable,
    max_seq_len: int,
) -> dict[str, ValueSet]:
    """Returns the value set of every SOp in the traced program, keyed by label."""
    vocab = frozenset(vocab)
    graph = extracted.graph
    sets: dict[str, ValueSet] = {}
    for label in graph.topological_order():
        expr = graph.nodes[label][nodes.EXPR]
        if isinstance(expr, rasp.SOp):
            sets[label] = _value_set(expr, sets, vocab, max_seq_len)
    return sets
