"""Find every construct of a program that the compiler cannot make exact.

Three levels, each reporting all problems at once:
- `static_validate(program)`: encodings and expression kinds, from the program alone
  (the reference Tracr's checks, plus the ones its compiler missed);
- `validate_value_sets(...)`: checks that need the inferred value sets (where a None can
  reach an encoding that cannot hold it, numbers too close to tell apart in float32,
  categorical aggregates that provably average, `length` in a causal model);
- `dynamic_validate(program, xs)`: checks of one input, as the reference offers.

`compile_rasp_to_model` raises `UnsupportedProgramError` (a NotImplementedError, as the
reference raises) listing every finding with the expression's label and the reason.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import numbers
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tracr.compiler import numeric_points, selector_logic
from tracr.rasp import rasp

# Relative input error a numerical MLP must tolerate: float32 attention and MLPs leave
# errors of a few 1e-7 relative to the largest magnitude; this keeps a 10x margin.
NUMERIC_RESOLUTION = 1e-6


@dataclasses.dataclass
class TracrUnsupportedExpr:
    """An expression the compiler refuses, and why."""

    expr: rasp.RASPExpr
    reason: str


class UnsupportedProgramError(NotImplementedError):
    """A program with constructs that cannot be compiled exactly; lists all of them."""

    def __init__(self, unsupported: Sequence[TracrUnsupportedExpr]):
        self.unsupported = list(unsupported)
        lines = "\n".join(f"  {u.expr.label}: {u.reason}" for u in self.unsupported)
        super().__init__(f"Unsupported RASP expressions:\n{lines}")


def _walk(program: rasp.RASPExpr) -> list[rasp.RASPExpr]:
    """Every expression reachable from `program`, each once, breadth first."""
    seen: dict[str, rasp.RASPExpr] = {program.label: program}
    queue = collections.deque([program])
    while queue:
        for child in queue.popleft().children:
            label = child.label
            if label not in seen:
                seen[label] = child
                queue.append(child)
    return list(seen.values())


def _static_reasons(expr: rasp.RASPExpr) -> list[str]:
    reasons = []
    if isinstance(expr, (rasp.TokensType, rasp.IndicesType)) and rasp.is_numerical(expr):
        reasons.append(f"{expr.label} must be categorical")
    if isinstance(expr, rasp.ConstantSOp):
        reasons.append("ConstantSOp holds one fixed sequence and has no transformer form")
    if isinstance(expr, rasp.Select):
        for role, sop in (("keys", expr.keys), ("queries", expr.queries)):
            if not rasp.is_categorical(sop):
                reasons.append(f"Select {role} must be categorical, {sop.label!r} is numerical")
    if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
        try:
            selector_logic.conjuncts(expr.selector)
        except selector_logic.UnsupportedSelectorError as err:
            reasons.append(f"its selector {expr.selector.label!r} {err}")
    if isinstance(expr, rasp.Aggregate):
        if rasp.get_encoding(expr) != rasp.get_encoding(expr.sop):
            reasons.append(
                f"an Aggregate's encoding ({rasp.get_encoding(expr).value}) must match the "
                f"encoding of the SOp it aggregates ({expr.sop.label!r} is "
                f"{rasp.get_encoding(expr.sop).value}); convert with a Map first"
            )
        elif rasp.is_categorical(expr) and expr.default is not None:
            reasons.append(f"a categorical Aggregate needs default=None, got {expr.default!r}")
        elif rasp.is_numerical(expr) and expr.default != 0:
            reasons.append(f"a numerical Aggregate needs default=0, got {expr.default!r}")
    if isinstance(expr, rasp.SequenceMap):
        encodings = {rasp.get_encoding(expr.fst), rasp.get_encoding(expr.snd)}
        linear_numerical = isinstance(expr, rasp.LinearSequenceMap) and encodings == {
            rasp.Encoding.NUMERICAL
        }
        if linear_numerical and not rasp.is_numerical(expr):
            reasons.append("a LinearSequenceMap of numerical SOps must be numerical")
        elif not linear_numerical and encodings != {rasp.Encoding.CATEGORICAL}:
            reasons.append(
                "a SequenceMap needs categorical inputs (or, for LinearSequenceMap, "
                f"two numerical ones); got {expr.fst.label!r} "
                f"{rasp.get_encoding(expr.fst).value} and {expr.snd.label!r} "
                f"{rasp.get_encoding(expr.snd).value}"
            )
    return reasons


def static_validate(program: rasp.RASPExpr) -> list[TracrUnsupportedExpr]:
    """Returns every unsupported expression detectable from the program alone."""
    return [
        TracrUnsupportedExpr(expr=expr, reason=reason)
        for expr in _walk(program)
        for reason in _static_reasons(expr)
    ]


def _is_number(value: object) -> bool:
    # int and float first: an ABC isinstance check costs ~10x, and value sets of
    # numerical Aggregates hold thousands of means
    return type(value) in (int, float) or isinstance(value, numbers.Real)


def _not_numbers(values: frozenset) -> list:
    """The values other than None that are not numbers, sorted by repr."""
    if set(map(type, values)) <= {int, float, type(None)}:  # the usual case, at C speed
        return []
    return sorted((v for v in values if v is not None and not _is_number(v)), key=repr)


def _numeric_resolution_problem(expr: rasp.Map, values: Iterable) -> str | None:
    """Inputs where f changes must be far enough apart for float32 activations."""
    if rasp.is_numerical(expr) and numeric_points.affine_fit(expr.f, values) is not None:
        return None  # compiled as an exact affine MLP, no discretisation
    points, outputs = numeric_points.map_points(expr.f, values)
    if len(points) < 2:
        return None
    scale = max(1.0, max(abs(p) for p in points))
    changes = [
        (b - a, a, b) for (a, fa), (b, fb) in itertools.pairwise(zip(points, outputs)) if fa != fb
    ]
    if not changes:
        return None
    gap, lo, hi = min(changes)
    if gap / 4 < NUMERIC_RESOLUTION * scale:
        return (
            f"its input values {lo!r} and {hi!r} map to different outputs but are too close "
            f"to tell apart in float32 (gap {gap:.3g}, needs at least "
            f"{4 * NUMERIC_RESOLUTION * scale:.3g})"
        )
    return None


def _rounding_problem(expr: rasp.Map, values: Iterable) -> str | None:
    """f must agree on inputs that differ only by float rounding (one input point)."""
    numerical = rasp.is_numerical(expr)
    values = numeric_points.Grouping.of(values)
    if all(b - a < 2 for a, b in itertools.pairwise(values.bounds)):
        return None  # one value per group (the usual case), so one result per group
    ends = np.asarray(values.bounds)
    several = np.flatnonzero(np.diff(ends) >= 2)  # one value has one result
    everywhere = values.results(expr.f)
    kinds = set(map(type, everywhere))
    if kinds == {bool} or kinds == {float}:  # groups whose results span one value pass
        results = np.array(everywhere)
        low = np.minimum.reduceat(results, ends[:-1])[several]  # per group
        high = np.maximum.reduceat(results, ends[:-1])[several]
        several = several[low != high]  # (NaN included: checked below)
    for a, b in zip(ends[several].tolist(), ends[several + 1].tolist()):
        group = values.points[a:b]
        results = [r for r in everywhere[a:b] if r is not numeric_points.RAISED]
        distinct = set(results)
        if len(distinct) < 2:
            continue
        if numerical and all(_is_number(r) for r in distinct):
            spread = max(distinct) - min(distinct)
            if spread <= numeric_points.RELATIVE_TOLERANCE * max(1.0, *map(abs, distinct)):
                continue
        return (
            f"its function gives different results {sorted(distinct, key=repr)!r} on "
            f"inputs {group!r}, which differ only by floating-point rounding"
        )
    return None


def _value_set_reasons(
    expr: rasp.RASPExpr,
    value_sets: Mapping[str, frozenset | None],
    max_seq_len: int,
    causal: bool,
    groupings: dict,
) -> list[str]:
    reasons = []
    own = value_sets.get(expr.label)
    if causal and isinstance(expr, rasp.LengthType):
        reasons.append(
            "length is the whole sequence's length, which a causal model cannot see at "
            "earlier positions; use lib.make_length() (the length of the prefix) instead"
        )
    if isinstance(expr, rasp.SOp) and rasp.is_numerical(expr) and own and None in own:
        reasons.append(
            "a numerical SOp that can be None (from a None input or a function returning "
            "None); a numerical encoding has no None"
        )
    if isinstance(expr, rasp.Map) and rasp.is_numerical(expr.inner):
        inner = value_sets.get(expr.inner.label)
        if inner is None:
            reasons.append(
                f"its numerical input {expr.inner.label!r} takes too many values to enumerate"
            )
        elif not_numbers := _not_numbers(inner):
            reasons.append(
                f"its numerical input {expr.inner.label!r} takes values that are not numbers "
                f"({', '.join(map(repr, not_numbers[:3]))}); a numerical SOp must hold numbers"
            )
        else:
            grouping = numeric_points.Grouping.shared(groupings, inner)  # one sort per set
            for problem in (
                _numeric_resolution_problem(expr, grouping),
                _rounding_problem(expr, grouping),
            ):
                if problem:
                    reasons.append(problem)
    if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
        try:
            terms = selector_logic.conjuncts(expr.selector)
        except selector_logic.UnsupportedSelectorError:
            return reasons  # reported by static_validate
        for flat in terms:
            keys = value_sets.get(flat.keys.label) or frozenset()
            queries = value_sets.get(flat.queries.label) or frozenset()
            pairs = [(None, q) for q in queries] + [(k, None) for k in keys] + [(None, None)]
            if (None in keys or None in queries) and any(flat.selects(k, q) for k, q in pairs):
                reasons.append(
                    "its selector's predicate selects a None key or query; the model "
                    "encodes None as no value, which never matches"
                )
        if isinstance(expr, rasp.Aggregate) and rasp.is_categorical(expr) and len(terms) == 1:
            flat = terms[0]
            keys = value_sets.get(flat.keys.label) or frozenset()
            queries = value_sets.get(flat.queries.label) or frozenset()
            reason = _averaging_reason(expr, flat, keys, queries, max_seq_len)
            if reason:
                reasons.append(reason)
    return reasons


def _averaging_reason(expr, flat, keys, queries, max_seq_len) -> str | None:
    """A categorical Aggregate of its own keys that can select two different numbers.

    Then `rasp.evaluate` returns their mean, which no one-hot encoding can hold.
    """
    if expr.sop.label != flat.keys.label:
        return None
    for q in sorted((q for q in queries if q is not None), key=repr):
        chosen = [k for k in keys if _is_number(k) and flat.selects(k, q)]
        if len(chosen) >= 2:
            k1, k2 = sorted(chosen)[:2]
            needed = 2 if (flat.keys.label != flat.queries.label or q in (k1, k2)) else 3
            if max_seq_len >= needed:
                return (
                    f"a categorical Aggregate that can select several different numbers "
                    f"(query {q!r} selects keys {k1!r} and {k2!r}, whose mean "
                    f"{(k1 + k2) / 2!r} is no category); make it numerical"
                )
    return None


def validate_value_sets(
    program: rasp.RASPExpr,
    value_sets: Mapping[str, frozenset | None],
    *,
    max_seq_len: int,
    causal: bool = False,
    groupings: dict | None = None,
) -> list[TracrUnsupportedExpr]:
    """Returns every expression that the inferred value sets show cannot be exact.

    groupings: value set -> numeric_points.Grouping, filled in here; pass the same dict
    to lowering (`lower_with_bounds`) to share the sorts and function results."""
    groupings = {} if groupings is None else groupings
    return [
        TracrUnsupportedExpr(expr=expr, reason=reason)
        for expr in _walk(program)
        for reason in _value_set_reasons(expr, value_sets, max_seq_len, causal, groupings)
    ]


class DynamicValidationEvaluator:
    """Evaluates a program and records the Aggregates that need real averaging."""

    def __init__(self):
        self.unsupported_exprs: list[TracrUnsupportedExpr] = []

    def evaluate(self, expr: rasp.RASPExpr, xs: Sequence) -> list:
        out = rasp.evaluate(expr, xs)
        for sub in _walk(expr):
            if not isinstance(sub, rasp.Aggregate) or not rasp.is_categorical(sub):
                continue
            matrix = rasp.evaluate(sub.selector, xs)
            values = rasp.evaluate(sub.sop, xs)
            for row in matrix:
                picked = {values[i] for i, s in enumerate(row) if s}
                if len(picked) > 1:
                    self.unsupported_exprs.append(
                        TracrUnsupportedExpr(
                            expr=sub,
                            reason=(
                                "a categorical Aggregate selects different values "
                                f"{sorted(picked, key=repr)} on this input; the model "
                                "can only move one value"
                            ),
                        )
                    )
                    break
        return out


def dynamic_validate(
    program: rasp.RASPExpr, xs: Sequence | None = None
) -> list[TracrUnsupportedExpr]:
    """Returns the Aggregates that input `xs` makes average over different values."""
    if xs is None:
        return []
    evaluator = DynamicValidationEvaluator()
    evaluator.evaluate(program, xs)
    return evaluator.unsupported_exprs


def validate(program: rasp.RASPExpr, xs: Sequence | None = None) -> list[TracrUnsupportedExpr]:
    """Static findings, plus the dynamic ones for input `xs` when given."""
    return static_validate(program) + dynamic_validate(program, xs)
