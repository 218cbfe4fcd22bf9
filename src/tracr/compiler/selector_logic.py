"""Reduce a selector expression to the predicates one attention head can evaluate, and
those predicates to the (query, key) functions the score tables call (`attn_fn`).

An attention head adds up its query-key terms, so a selector compiles to one head when it
is a conjunction of predicates, each comparing one query SOp with one key SOp:
`Select`s, `&` of selectors, and `|` or `~` of selectors that read the same keys and
queries (those fold into one predicate). `conjuncts` returns that list, with the
predicates over the same (keys, queries) pair folded together; anything else (an `|` of
selectors over different SOps, `~` of such a conjunction, `ConstantSelector`) is
refused with the reason.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable

from tracr.rasp import rasp


class UnsupportedSelectorError(Exception):
    """A selector that no single attention pattern can implement; carries the reason."""


@dataclasses.dataclass(frozen=True)
class FlatSelector:
    """`predicate(key_value, query_value)` over the values of `keys` and `queries`."""

    keys: rasp.SOp
    queries: rasp.SOp
    predicate: Callable[[object, object], bool]

    @property
    def pair(self) -> tuple[str, str]:
        return (self.keys.label, self.queries.label)

    def selects(self, key, query) -> bool:
        """The predicate as a bool; one that raises selects nothing (evaluate raises
        there too, so no valid input reaches that pair)."""
        try:
            return bool(self.predicate(key, query))
        except Exception:  # noqa: BLE001 - any error of user code counts as no match
            return False


def _both(a: FlatSelector, b: FlatSelector) -> FlatSelector:
    return FlatSelector(
        a.keys, a.queries, lambda k, q, p=a.predicate, r=b.predicate: p(k, q) and r(k, q)
    )


def _single(selector: rasp.Selector, role: str) -> FlatSelector:
    terms = conjuncts(selector)
    if len(terms) != 1:
        pairs = ", ".join(f"keys {t.keys.label!r} / queries {t.queries.label!r}" for t in terms)
        raise UnsupportedSelectorError(
            f"{role} a conjunction of selectors over different SOps ({pairs}); one "
            "attention head can only require all of several conditions, not either of them"
        )
    return terms[0]


def conjuncts(selector: rasp.Selector) -> list[FlatSelector]:
    """The predicates whose conjunction the selector is, one per (keys, queries) pair."""
    if isinstance(selector, rasp.Select):
        return [FlatSelector(selector.keys, selector.queries, selector.predicate)]
    if isinstance(selector, rasp.SelectorAnd):
        merged: dict[tuple[str, str], FlatSelector] = {}
        for term in conjuncts(selector.fst) + conjuncts(selector.snd):
            seen = merged.get(term.pair)
            merged[term.pair] = term if seen is None else _both(seen, term)
        return list(merged.values())
    if isinstance(selector, rasp.SelectorNot):
        inner = _single(selector.inner, "it negates")
        return [
            FlatSelector(inner.keys, inner.queries, lambda k, q, p=inner.predicate: not p(k, q))
        ]
    if isinstance(selector, rasp.SelectorOr):
        fst, snd = _single(selector.fst, "it ors"), _single(selector.snd, "it ors")
        if fst.pair != snd.pair:
            raise UnsupportedSelectorError(
                f"it ors selectors over different SOps (keys {fst.keys.label!r} / queries "
                f"{fst.queries.label!r} and keys {snd.keys.label!r} / queries "
                f"{snd.queries.label!r}); one attention head can only require all of "
                "several conditions, not either of them"
            )
        either = lambda k, q, a=fst.predicate, b=snd.predicate: a(k, q) or b(k, q)
        return [FlatSelector(fst.keys, fst.queries, either)]
    if isinstance(selector, rasp.ConstantSelector):
        raise UnsupportedSelectorError(
            "ConstantSelector is fixed per input length and has no attention form"
        )
    raise UnsupportedSelectorError(f"unknown selector type {type(selector).__name__}")


_OPERATORS = {
    rasp.Comparison.EQ: operator.eq,
    rasp.Comparison.LT: operator.lt,
    rasp.Comparison.LEQ: operator.le,
    rasp.Comparison.GT: operator.gt,
    rasp.Comparison.GEQ: operator.ge,
    rasp.Comparison.NEQ: operator.ne,
}


def select_every(query, key) -> bool:
    """The selector of length: every key (the tables select every pair at once)."""
    return True


select_every.selects_all = True


def attn_fn(flat: FlatSelector) -> Callable:
    """(query, key) -> bool: `flat.selects(key, query)`, with the standard comparisons
    called directly (the tables call this for every pair of values). Space values are
    never None, and a comparison that raises selects nothing, as in `selects`."""
    if flat.predicate is rasp.Comparison.TRUE:
        return select_every
    op = _OPERATORS.get(flat.predicate) if isinstance(flat.predicate, rasp.Comparison) else None
    if op is None:
        return lambda q, k: flat.selects(k, q)

    def compare(q, k):
        try:
            return bool(op(k, q))
        except Exception:  # noqa: BLE001 - as FlatSelector.selects
            return False

    compare.numpy_op = op  # see _common.selected_mask
    return compare


def fixed_comparison(fn: Callable) -> Callable | None:
    """The operator of an `attn_fn` that is one of the fixed comparisons (`select_every`,
    or a standard Comparison: an operator on the values); None for a user's predicate,
    which `attn_fn` always wraps in a function of its own. On plain values (str, int,
    bool, float) a fixed comparison always gives the same answer."""
    if fn is select_every:
        return select_every
    op = getattr(fn, "numpy_op", None)
    return op if op is not None and op in _OPERATORS.values() else None
