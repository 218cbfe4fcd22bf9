"""Lower every SOp of a program to the craft block that computes it.

Each SOp owns one labelled subspace of the residual stream (`sop_space`): categorical
SOps one direction per value, numerical SOps one direction holding the number. A block
reads only its inputs' subspaces (plus `one` and the BOS direction) and writes only its
own. tokens and indices come from the embeddings; constant SOps (`Full`) are written by
the token embedding; every other SOp gets a block from `tracr.craft.chamber`.

This module is the pass: `lower_with_bounds` (and the reference's entry point
`add_craft_components_to_rasp_graph`) walks the SOps in topological order, builds each
first block (expr_blocks.py), bounds its float32 error, and where the bound does not
fit takes an alternative block (separable_choice.py, block_choice.py). The names those
modules define that users and tests import from here are re-exported below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tracr.compiler import (
    block_choice,
    expr_blocks,
    float_bounds,
    kept_blocks,
    nodes,
    rasp_to_graph,
    separable_choice,
)
from tracr.craft import bases
from tracr.rasp import rasp

ONE = expr_blocks.ONE
LoweredSOp = expr_blocks.LoweredSOp
LoweringContext = expr_blocks.LoweringContext
sop_space = expr_blocks.sop_space
CLEAN_ABOVE = block_choice.CLEAN_ABOVE
NUMERICAL_WIDTH_TOLERANCE = block_choice.NUMERICAL_WIDTH_TOLERANCE


def add_craft_components_to_rasp_graph(
    extracted: rasp_to_graph.ExtractRaspGraphOutput, **options: Any
) -> dict[str, LoweredSOp]:
    """Returns, for every SOp label, its subspace and the block that computes it
    (`lower_with_bounds`, same options, without its bounds context), with blocks of
    their own: `lower_with_bounds` may give blocks kept for later compiles
    (kept_blocks.py), whose arrays are shared and read-only."""
    lowered = lower_with_bounds(extracted, **options)[0]
    return {
        label: node
        if node.block is None
        else dataclasses.replace(node, block=kept_blocks.copied(node.block))
        for label, node in lowered.items()
    }


def lower_with_bounds(
    extracted: rasp_to_graph.ExtractRaspGraphOutput,
    *,
    value_sets: Mapping[str, frozenset | None],
    vocab: frozenset,
    bos_dir: bases.BasisDirection,
    max_seq_len: int,
    causal: bool = False,
    groupings: dict | None = None,
) -> tuple[dict[str, LoweredSOp], float_bounds.Context]:
    """`add_craft_components_to_rasp_graph`, and the bounds context it filled in (the
    clean copies, width one-hots and width numbers it registered), which the final
    exactness check (`float_bounds.findings`) needs to see as lowering saw it. Blocks may
    be kept for later compiles (kept_blocks.py): their arrays are read-only.
    groupings: the numerical value sets validation grouped (`validate_value_sets`)."""
    ctx = LoweringContext(
        value_sets=value_sets,
        bos_space=expr_blocks.direction_space(bos_dir),
        one_space=expr_blocks.ONE_SPACE,
        max_seq_len=max_seq_len,
        causal=causal,
        groupings={} if groupings is None else groupings,
    )
    tokens_space = sop_space(rasp.tokens, vocab)
    graph = extracted.graph
    spaces: dict[str, bases.VectorSpaceWithBasis] = {}
    lowered: dict[str, LoweredSOp] = {}
    errors: dict[str, float_bounds.SOpError] = {}
    bounds = float_bounds.Context(
        lowered, value_sets, bos_dir, ONE, max_seq_len, groupings=ctx.groupings
    )
    for label in graph.topological_order():
        expr = graph.nodes[label][nodes.EXPR]
        if not isinstance(expr, rasp.SOp):
            continue
        same = isinstance(expr, rasp.TokensType) and value_sets[label] == vocab
        space = tokens_space if same else sop_space(expr, value_sets[label])
        spaces[label] = space
        block, constant = None, None
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            pass
        elif isinstance(expr, rasp.Full):
            constant = 1.0 if rasp.is_categorical(expr) else float(expr.fill)
        elif isinstance(expr, (rasp.LengthType, rasp.SelectorWidth)):
            terms = expr_blocks.width_terms(expr, spaces, tokens_space)
            block = expr_blocks.lower_width(expr, terms, space, ctx)
        elif isinstance(expr, rasp.Map):
            block = expr_blocks.lower_map(expr, space, spaces, ctx)
        elif isinstance(expr, rasp.SequenceMap):
            block = expr_blocks.lower_sequence_map(expr, space, spaces, ctx)
        elif isinstance(expr, rasp.Aggregate):
            block = expr_blocks.lower_aggregate(expr, space, spaces, ctx)
        else:
            raise NotImplementedError(f"no lowering for {type(expr).__name__} {label!r}")
        node = LoweredSOp(expr=expr, space=space, block=block, constant=constant)
        separable = None
        if isinstance(expr, rasp.SequenceMap):
            separable = separable_choice.separable_if_it_fits(
                node, bounds, errors, ctx, spaces, tokens_space
            )
        node = separable or block_choice.cleaner_if_noisy(node, bounds, errors, ctx, spaces)
        if isinstance(expr, rasp.SelectorWidth):
            node = block_choice.clean_selector_inputs_if_unstable(node, bounds, errors, ctx, spaces)
        if isinstance(expr, rasp.Map) and block_choice.is_numerical_width(expr.inner):
            node = block_choice.through_one_hot_if_inexact(
                node, bounds, errors, ctx, lowered, tokens_space
            )
        if block_choice.is_numerical_width(expr):
            node = block_choice.two_stage_if_inexact(node, bounds, errors, ctx, tokens_space)
        lowered[label], errors[label] = node, node.error
    return lowered, bounds
