"""Trace a RASP expression into a program graph: one node per sub-expression."""

from __future__ import annotations

import collections
import dataclasses
import graphlib
from collections.abc import Iterator

from tracr.compiler import nodes
from tracr.rasp import rasp


class ProgramGraph:
    """A directed graph of expressions keyed by label, with networkx's DiGraph interface
    for what programs use: `nodes[label]` (the node's attribute dict), iteration and
    `in` over labels, `predecessors`, `successors`, `edges`, `add_node`, `add_edge`.

    The compiler needs nothing more, so it does not import networkx;
    `to_networkx()` returns the same graph as a `networkx.DiGraph`.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, nodes.Node] = {}
        self._pred: dict[str, dict[str, None]] = {}  # ordered sets
        self._succ: dict[str, dict[str, None]] = {}
        self._order: list[str] | None = None  # cached topological order

    def add_node(self, label: str, **attrs) -> None:
        self._order = None
        if label not in self.nodes:
            self.nodes[label] = {}
            self._pred[label], self._succ[label] = {}, {}
        self.nodes[label].update(attrs)

    def add_edge(self, source: str, target: str) -> None:
        for label in (source, target):
            self.add_node(label)
        self._succ[source][target] = None
        self._pred[target][source] = None
        self._order = None

    def predecessors(self, label: str) -> Iterator[str]:
        return iter(self._pred[label])

    def successors(self, label: str) -> Iterator[str]:
        return iter(self._succ[label])

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(u, v) for u, targets in self._succ.items() for v in targets]

    def has_node(self, label: str) -> bool:
        return label in self.nodes

    def number_of_nodes(self) -> int:
        return len(self.nodes)

    def __contains__(self, label: object) -> bool:
        return label in self.nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def topological_order(self) -> list[str]:
        """Every label after all of its predecessors (deterministic)."""
        if self._order is None:
            self._order = list(graphlib.TopologicalSorter(self._pred).static_order())
        return list(self._order)

    def to_networkx(self):
        """The same graph as a networkx.DiGraph (networkx is imported here)."""
        import networkx as nx

        graph = nx.DiGraph()
        for label, attrs in self.nodes.items():
            graph.add_node(label, **attrs)
        graph.add_edges_from(self.edges)
        return graph


@dataclasses.dataclass(frozen=True)
class ExtractRaspGraphOutput:
    """The traced program.

    graph: edges run from an expression's child to the expression (data flow).
    sink: the node of the program's output expression.
    sources: the nodes without children (tokens, indices, constants, ...).
    """

    graph: ProgramGraph
    sink: nodes.Node
    sources: list[nodes.Node]


def extract_rasp_graph(tip: rasp.SOp) -> ExtractRaspGraphOutput:
    """Returns the graph of every expression reachable from `tip`.

    Two expressions with one label that compute the same thing (`same_computation`:
    `rasp.indices` and `rasp.indices.named("indices")`, say) are one node.

    Raises:
      TypeError: `tip` is not a RASP expression.
      ValueError: two expressions that compute different things share one label (labels
        name residual subspaces, so they must be unique within a program).
    """
    if not isinstance(tip, rasp.RASPExpr):
        raise TypeError(f"expected a RASP expression to trace, got {type(tip).__name__}: {tip!r}")
    graph = ProgramGraph()
    by_label: dict[str, rasp.RASPExpr] = {}
    sources: list[nodes.Node] = []

    def add(expr: rasp.RASPExpr, label: str) -> bool:
        seen = by_label.get(label)
        if seen is not None:
            difference = None if seen is expr else _difference(seen, expr)
            if difference:
                raise ValueError(
                    f"two expressions that compute different things are both labelled "
                    f"{label!r} ({difference}); give them distinct names with .named(...)"
                )
            return False
        by_label[label] = expr
        graph.add_node(label, **{nodes.ID: label, nodes.EXPR: expr})
        return True

    add(tip, tip.label)
    queue = collections.deque([tip])
    while queue:
        expr = queue.popleft()
        label = expr.label
        children = list(expr.children)
        if not children:
            sources.append(graph.nodes[label])
        for child in children:
            child_label = child.label
            if add(child, child_label):
                queue.append(child)
            graph.add_edge(child_label, label)
    return ExtractRaspGraphOutput(graph=graph, sink=graph.nodes[tip.label], sources=sources)


# Attributes that say how an expression is stored, not what it computes.
_BOOKKEEPING = ("_unique_id", "_label")


def _difference(a: rasp.RASPExpr, b: rasp.RASPExpr) -> str | None:
    """None when a and b compute the same thing, else what differs.

    Same class, same encoding, the same functions and parameters (functions compared by
    identity: two lambdas may differ), and children that compute the same things.
    Names aside, annotations must agree too (they choose the encoding).
    """
    if type(a) is not type(b):
        return f"a {type(a).__name__} and a {type(b).__name__}"
    notes_a = {k: v for k, v in a.annotations.items() if k != "name"}
    notes_b = {k: v for k, v in b.annotations.items() if k != "name"}
    if notes_a != notes_b:
        return f"annotations {notes_a} and {notes_b}"
    attrs_a = {k: v for k, v in vars(a).items() if k not in _BOOKKEEPING + ("_annotations",)}
    attrs_b = {k: v for k, v in vars(b).items() if k not in _BOOKKEEPING + ("_annotations",)}
    if attrs_a.keys() != attrs_b.keys():
        return f"attributes {sorted(attrs_a)} and {sorted(attrs_b)}"
    for key, value in attrs_a.items():
        other = attrs_b[key]
        if isinstance(value, rasp.RASPExpr) and isinstance(other, rasp.RASPExpr):
            if value is not other and _difference(value, other):
                return f"their {key} differ: {value.label!r} and {other.label!r}"
        elif value is not other and not _equal(value, other):
            return f"their {key} differ: {value!r} and {other!r}"
    return None


def _equal(x, y) -> bool:
    try:
        return bool(x == y)
    except Exception:  # values without a usable ==
        return False
