"""Reduce a selector expression to one predicate over one key SOp and one query SOp.

An attention head compares one query vector with one key vector, so a selector compiles
to a head when it is a `Select`, or a combination (`&`, `|`, `~`) of selects that all
read the same keys and the same queries: then the combination is one predicate on
(key value, query value). Combinations over different SOps are refused with a reason.
"""

from __future__ import annotations

import dataclasses
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


def flatten_selector(selector: rasp.Selector) -> FlatSelector:
    """Returns the single predicate a selector stands for, or raises why there is none."""
    if isinstance(selector, rasp.Select):
        return FlatSelector(selector.keys, selector.queries, selector.predicate)
    if isinstance(selector, rasp.SelectorNot):
        inner = flatten_selector(selector.inner)
        return FlatSelector(inner.keys, inner.queries, lambda k, q, p=inner.predicate: not p(k, q))
    if isinstance(selector, (rasp.SelectorAnd, rasp.SelectorOr)):
        fst = flatten_selector(selector.fst)
        snd = flatten_selector(selector.snd)
        if fst.keys.label != snd.keys.label or fst.queries.label != snd.queries.label:
            raise UnsupportedSelectorError(
                "combines selectors over different SOps "
                f"(keys {fst.keys.label!r} / queries {fst.queries.label!r} with keys "
                f"{snd.keys.label!r} / queries {snd.queries.label!r}); one attention head "
                "compares one key SOp with one query SOp"
            )
        if isinstance(selector, rasp.SelectorAnd):
            combined = lambda k, q, a=fst.predicate, b=snd.predicate: a(k, q) and b(k, q)
        else:
            combined = lambda k, q, a=fst.predicate, b=snd.predicate: a(k, q) or b(k, q)
        return FlatSelector(fst.keys, fst.queries, combined)
    if isinstance(selector, rasp.ConstantSelector):
        raise UnsupportedSelectorError(
            "ConstantSelector is fixed per input length and has no attention form"
        )
    raise UnsupportedSelectorError(f"unknown selector type {type(selector).__name__}")
