"""Trace a RASP expression into a program graph: one node per sub-expression."""

from __future__ import annotations

import collections
import dataclasses

import networkx as nx

from tracr.compiler import nodes
from tracr.rasp import rasp


@dataclasses.dataclass(frozen=True)
class ExtractRaspGraphOutput:
    """The traced program.

    graph: edges run from an expression's child to the expression (data flow).
    sink: the node of the program's output expression.
    sources: the nodes without children (tokens, indices, constants, ...).
    """

    graph: nx.DiGraph
    sink: nodes.Node
    sources: list[nodes.Node]


def extract_rasp_graph(tip: rasp.SOp) -> ExtractRaspGraphOutput:
    """Returns the graph of every expression reachable from `tip`.

    Raises:
      TypeError: `tip` is not a RASP expression.
      ValueError: two different expressions share one label (labels name residual
        subspaces, so they must be unique within a program).
    """
    if not isinstance(tip, rasp.RASPExpr):
        raise TypeError(f"expected a RASP expression to trace, got {type(tip).__name__}: {tip!r}")
    graph = nx.DiGraph()
    by_label: dict[str, rasp.RASPExpr] = {}
    sources: list[nodes.Node] = []

    def add(expr: rasp.RASPExpr) -> bool:
        seen = by_label.get(expr.label)
        if seen is not None:
            if seen is not expr:
                raise ValueError(
                    f"two different expressions are both labelled {expr.label!r}; "
                    "give them distinct names with .named(...)"
                )
            return False
        by_label[expr.label] = expr
        graph.add_node(expr.label, **{nodes.ID: expr.label, nodes.EXPR: expr})
        return True

    add(tip)
    queue = collections.deque([tip])
    while queue:
        expr = queue.popleft()
        children = list(expr.children)
        if not children:
            sources.append(graph.nodes[expr.label])
        for child in children:
            if add(child):
                queue.append(child)
            graph.add_edge(child.label, expr.label)
    return ExtractRaspGraphOutput(graph=graph, sink=graph.nodes[tip.label], sources=sources)
