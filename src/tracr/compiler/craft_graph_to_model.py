"""Allocate the lowered blocks to transformer layers.

Every block goes to the earliest sub-layer its inputs allow: attention blocks on even
sub-layers (the attention half of a layer), MLPs on odd ones, a SelectorWidth's head and
MLP on two consecutive sub-layers. The layer count is then the longest chain of blocks
in the program, which no schedule can beat. Blocks sharing a layer run side by side as
heads of one multi-head attention and as slices of one MLP.
"""

from __future__ import annotations

import dataclasses

from tracr.compiler import expr_to_craft_graph, rasp_to_graph
from tracr.craft import bases, transformers

ATTN, MLP = "attn", "mlp"


@dataclasses.dataclass(frozen=True)
class Layer:
    heads: tuple[transformers.AttentionHead, ...]
    mlps: tuple[transformers.MLP, ...]


@dataclasses.dataclass(frozen=True)
class CraftModel:
    """The layered craft model; `residual_space` joins every space the blocks use."""

    layers: tuple[Layer, ...]
    residual_space: bases.VectorSpaceWithBasis
    placement: dict[str, int]  # label -> first sub-layer of its block


def _parts(block) -> list[tuple[str, object]]:
    if isinstance(block, transformers.MLP):
        return [(MLP, block)]
    if isinstance(block, transformers.AttentionHead):
        return [(ATTN, block)]
    if isinstance(block, transformers.SeriesWithResiduals):
        return [part for sub in block.blocks for part in _parts(sub)]
    raise TypeError(f"cannot place block of type {type(block).__name__}")


def craft_graph_to_model(
    extracted: rasp_to_graph.ExtractRaspGraphOutput,
    lowered: dict[str, expr_to_craft_graph.LoweredSOp],
) -> CraftModel:
    """Places every lowered block and groups the blocks into layers."""
    graph = extracted.graph
    ready: dict[str, int] = {}  # label -> first sub-layer at which its value exists
    placed: list[tuple[int, str, object]] = []
    placement: dict[str, int] = {}
    for label in graph.topological_order():
        start = max((ready[p] for p in graph.predecessors(label)), default=0)
        node = lowered.get(label)
        if node is None or node.block is None:
            ready[label] = start
            continue
        # Each part goes to the first sub-layer of its kind after the previous part
        # (two MLPs in a row skip an attention sub-layer).
        sub = start - 1
        for kind, block in _parts(node.block):
            sub += 1
            if (sub % 2 == 0) != (kind == ATTN):
                sub += 1
            if label not in placement:
                placement[label] = sub
            placed.append((sub, label, block))
        ready[label] = sub + 1
    num_sublayers = max((s + 1 for s, _, _ in placed), default=0)
    layers = []
    for layer in range((num_sublayers + 1) // 2):
        heads = tuple(b for s, _, b in placed if s == 2 * layer)
        mlps = tuple(b for s, _, b in placed if s == 2 * layer + 1)
        layers.append(Layer(heads=heads, mlps=mlps))
    # A block's residual space is the join of its parts' (one join per node, not per part).
    spaces = [n.block.residual_space for n in lowered.values() if n.block is not None]
    residual = bases.join_vector_spaces(*spaces) if spaces else bases.VectorSpaceWithBasis([])
    return CraftModel(layers=tuple(layers), residual_space=residual, placement=placement)
