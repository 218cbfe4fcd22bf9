"""The traced program of a compile, kept per program object while it is unchanged.

Compiling a program checks its expressions (`validating.static_validate`) and traces
its graph (`rasp_to_graph.extract_rasp_graph`); both read only the expressions' own
attributes and annotations (children, predicates, defaults, encodings), never what a
Map's function returns. A program compiled again is mostly the same objects, unchanged:
`trace` keeps the graph of a program that passed, with every expression reachable from
it and what each one held (its attributes and annotations, by identity), and gives it
back while every one of them still holds exactly those objects. A reassigned attribute or
annotation of any of them (`expr.annotations = ...`, `aggregate.default = ...`) traces
the program afresh. The graph is shared by those compiles: no pass changes it.
Attributes are compared by identity only: a container held in one (a list, say) and
changed in place is not seen here.
"""

from __future__ import annotations

import threading

from tracr import caches
from tracr.compiler import rasp_to_graph, validating
from tracr.rasp import rasp

#: Programs whose graph is kept, at most (the least recently traced dropped first).
MAX_KEPT = 64

_kept: dict[int, tuple] = {}  # id(program) -> (program, its expressions, what they hold, graph)
_lock = threading.Lock()


@caches.register
def _forget_all() -> None:
    with _lock:
        _kept.clear()


def trace(program: rasp.SOp) -> rasp_to_graph.ExtractRaspGraphOutput:
    """`rasp_to_graph.extract_rasp_graph(program)` after `validating.static_validate`
    (which raises `validating.UnsupportedProgramError` with every finding), or the graph
    kept from an earlier call while the program's expressions are unchanged."""
    with _lock:
        kept = _kept.get(id(program))
    if kept is not None and kept[0] is program and _held(kept[1]) == kept[2]:
        return kept[3]
    unsupported = validating.static_validate(program)
    if unsupported:
        raise validating.UnsupportedProgramError(unsupported)
    extracted = rasp_to_graph.extract_rasp_graph(program)
    exprs = _reachable(program)
    with _lock:  # the program is kept alive here, so its id is not reused
        _kept.pop(id(program), None)
        _kept[id(program)] = (program, exprs, _held(exprs), extracted)
        while len(_kept) > MAX_KEPT:
            del _kept[next(iter(_kept))]
    return extracted


def _reachable(program: rasp.RASPExpr) -> tuple[rasp.RASPExpr, ...]:
    """Every expression reachable from `program`, each object once (two objects with
    one label are both here, unlike in the graph)."""
    found = {id(program): program}
    queue = [program]
    for expr in queue:
        for child in expr.children:
            if id(child) not in found:
                found[id(child)] = child
                queue.append(child)
    return tuple(found.values())


class _Same(tuple):
    """A tuple that compares with another element by element by identity (an SOp's ==
    builds an expression, so == cannot say whether an attribute is the same object)."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Same)
            and len(self) == len(other)
            and all(a is b for a, b in zip(self, other))
        )

    __hash__ = None  # type: ignore[assignment]


def _held(exprs: tuple[rasp.RASPExpr, ...]) -> _Same:
    """What the expressions hold: each one's class and attribute names and values, all
    by identity. The annotations are one attribute: setting them makes a new object (in
    place, an annotation is only ever filled with its default, once)."""
    held: list = []
    for expr in exprs:
        fields = expr.__dict__
        held += (type(expr), len(fields), *fields.keys(), *fields.values())
    return _Same(held)
