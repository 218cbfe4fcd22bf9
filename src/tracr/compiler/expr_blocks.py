"""The craft block of each RASP expression kind, as first lowered.

Each SOp owns one labelled subspace of the residual stream (`sop_space`): categorical
SOps one direction per value, numerical SOps one direction holding the number. A block
reads only its inputs' subspaces (plus `one` and the BOS direction) and writes only its
own. This module holds that subspace, the lowered SOp (`LoweredSOp`), what every
lowering reads (`LoweringContext`), and one builder per expression kind: `lower_map`,
`lower_sequence_map`, `lower_aggregate`, `lower_width` (SelectorWidth and length). The
pass that calls them is expr_to_craft_graph.py; the alternative blocks chosen where a
first block's float32 bound does not fit are in block_choice.py and separable_choice.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping

from tracr.compiler import (
    basis_inference,
    bound_cache,
    float_bounds,
    numeric_points,
    selector_logic,
)
from tracr.craft import bases
from tracr.craft.chamber import categorical_attn, categorical_mlp, numerical_mlp, selector_width
from tracr.rasp import rasp

ONE = bases.BasisDirection("one")
#: The space of ONE, shared by every compile (spaces are immutable).
ONE_SPACE = bases.VectorSpaceWithBasis([ONE])
bases.keep(ONE_SPACE)


@dataclasses.dataclass(frozen=True)
class LoweredSOp:
    """An SOp's subspace and the block writing it (None when an embedding writes it)."""

    expr: rasp.SOp
    space: bases.VectorSpaceWithBasis
    block: object | None
    constant: float | None = None  # for Full: the value the token embedding writes
    # Worst-case float32 deviation of the SOp's coordinates, any summation order.
    error: float_bounds.SOpError = float_bounds.EXACT

    def with_error(self, error: float_bounds.SOpError) -> LoweredSOp:
        """This SOp with the error bound `error` (`dataclasses.replace`, made directly:
        lowering bounds every block it builds)."""
        return LoweredSOp(self.expr, self.space, self.block, self.constant, error)


@dataclasses.dataclass(frozen=True)
class LoweringContext:
    value_sets: Mapping[str, frozenset | None]
    bos_space: bases.VectorSpaceWithBasis
    one_space: bases.VectorSpaceWithBasis
    max_seq_len: int
    causal: bool
    #: Numerical value sets sorted and grouped once (numeric_points.Grouping).
    groupings: dict = dataclasses.field(default_factory=dict, compare=False)

    def grouping(self, label: str):
        """The value set of `label` as a numeric_points.Grouping (the set itself where
        its values do not sort)."""
        values = self.value_sets[label]
        try:
            return numeric_points.Grouping.shared(self.groupings, values)
        except TypeError:
            return values


def sop_space(expr: rasp.SOp, values: frozenset | None) -> bases.VectorSpaceWithBasis:
    """The residual subspace of one SOp (`labelled_space`)."""
    if rasp.is_numerical(expr):
        return labelled_space(expr.label, None)
    return labelled_space(expr.label, values)


def labelled_space(name: str, values: Collection | None) -> bases.VectorSpaceWithBasis:
    """The space of the directions (name, v), v in `values` other than None, in sort
    order (`bases.sorted_space`); the single direction `name` where `values` is None.

    Kept across compiles by the name and the exact values (`_exact`), where these are
    plain numbers and strings: spaces are immutable, and a program compiled again lays
    out the same ones, so its blocks join the same spaces (which keep their joins)."""
    exact = () if values is None else _exact(values)
    key = None if exact is None or type(name) is not str else (name, exact)
    space = None if key is None else _SPACES.get(key)
    if space is None:
        if values is None:
            space = bases.VectorSpaceWithBasis([bases.BasisDirection(name)])
        else:
            space = bases.sorted_space(name, (v for v in values if v is not None))
        if key is not None:
            bases.keep(space)
            _SPACES.put(key, space, _BYTES_PER_DIRECTION * (1 + space.num_dims))
    return space


def direction_space(direction: bases.BasisDirection) -> bases.VectorSpaceWithBasis:
    """The space of one direction with a value (BOS), kept as `labelled_space` keeps it."""
    if direction.value is None:
        return bases.VectorSpaceWithBasis([direction])
    return labelled_space(direction.name, [direction.value])


def _exact(values: Iterable) -> frozenset | None:
    """The values other than None, told apart exactly (`numeric_points.typed`): equal
    keys give the same space. None where a value is not a str, int, bool or float."""
    kept = [v for v in values if v is not None]
    if not all(type(v) in _PLAIN for v in kept):
        return None
    return numeric_points.typed(kept)


_PLAIN = (str, int, bool, float)


#: Spaces kept by `labelled_space` (least recently used dropped beyond this size), and
#: about what one of their directions holds (the direction, its index entry, its key).
_SPACES = bound_cache.Known(max_bytes=16 << 20)
_BYTES_PER_DIRECTION = 512


def quiet(f: Callable, expr: rasp.SOp) -> Callable:
    """f, writing no value (categorical) or 0 (numerical) where it raises arithmetically."""
    return numeric_points.quiet(f, 0 if rasp.is_numerical(expr) else None)


def hidden_name_of(expr: rasp.RASPExpr) -> str:
    return f"_hidden_{expr.label}_"


def lower_map(expr: rasp.Map, space, spaces, ctx):
    inner = expr.inner
    f = quiet(expr.f, expr)
    if rasp.is_categorical(inner):
        build = (
            categorical_mlp.map_categorical_mlp
            if rasp.is_categorical(expr)
            else categorical_mlp.map_categorical_to_numerical_mlp
        )
        return build(spaces[inner.label], space, f, hidden_name=hidden_name_of(expr))
    fit = (
        None
        if rasp.is_categorical(expr)
        else numeric_points.affine_fit(expr.f, ctx.grouping(inner.label))
    )
    if fit is not None:
        return numerical_mlp.map_affine_numerical_mlp(
            spaces[inner.label], space, *fit, ctx.one_space, ctx.bos_space, hidden_name_of(expr)
        )
    build = (
        numerical_mlp.map_numerical_to_categorical_mlp
        if rasp.is_categorical(expr)
        else numerical_mlp.map_numerical_mlp
    )
    return build(
        f,
        spaces[inner.label],
        space,
        numeric_points.map_points(expr.f, ctx.grouping(inner.label))[0],
        ctx.one_space,
        ctx.bos_space,
        hidden_name=hidden_name_of(expr),
    )


def feasible_only(expr: rasp.SequenceMap) -> Callable:
    """expr.f, quiet, answering None (0 for a numerical result) for the pairs of
    values that never meet at one position (`basis_inference.pair_constraint`): the
    block writes nothing for them, and no table needs their results."""
    f = quiet(expr.f, expr)
    feasible = basis_inference.pair_constraint(expr.fst, expr.snd)
    if feasible is None:
        return f
    never = 0 if rasp.is_numerical(expr) else None
    return lambda x, y: f(x, y) if feasible(x, y) else never


def lower_sequence_map(expr: rasp.SequenceMap, space, spaces, ctx):
    if rasp.is_numerical(expr.fst) and rasp.is_numerical(expr.snd):
        return numerical_mlp.linear_sequence_map_numerical_mlp(
            spaces[expr.fst.label].basis[0],
            spaces[expr.snd.label].basis[0],
            space.basis[0],
            expr.fst_fac,
            expr.snd_fac,
            hidden_name=hidden_name_of(expr),
        )
    return categorical_mlp.sequence_map_categorical_mlp(
        spaces[expr.fst.label],
        spaces[expr.snd.label],
        space,
        feasible_only(expr),
        ctx.one_space,
        hidden_name=hidden_name_of(expr),
    )


def selector_terms(selector: rasp.Selector, spaces) -> list[categorical_attn.AttnTerm]:
    """One attention term per (keys, queries) pair of the selector's conjunction."""
    return [
        categorical_attn.AttnTerm(
            spaces[f.queries.label], spaces[f.keys.label], selector_logic.attn_fn(f)
        )
        for f in selector_logic.conjuncts(selector)
    ]


def width_terms(expr: rasp.SOp, spaces, tokens_space) -> list[categorical_attn.AttnTerm]:
    """The attention terms of a width's head: length's selects every token, a
    SelectorWidth's are its selector's (`selector_terms`)."""
    if isinstance(expr, rasp.LengthType):
        return [categorical_attn.AttnTerm(tokens_space, tokens_space, selector_logic.select_every)]
    return selector_terms(expr.selector, spaces)


def lower_aggregate(expr: rasp.Aggregate, space, spaces, ctx):
    return categorical_attn.conjunctive_attn(
        selector_terms(expr.selector, spaces),
        spaces[expr.sop.label],
        space,
        ctx.bos_space,
        ctx.one_space,
        max_seq_len=ctx.max_seq_len,
        causal=ctx.causal,
    )


def lower_width(expr: rasp.SOp, terms, space, ctx, via_one_hot=False, mean_index=None):
    return selector_width.conjunctive_selector_width(
        terms,
        space,
        ctx.bos_space,
        ctx.one_space,
        ctx.value_sets[expr.label],
        rasp.is_categorical(expr),
        max_seq_len=ctx.max_seq_len,
        causal=ctx.causal,
        hidden_name=hidden_name_of(expr),
        via_one_hot=via_one_hot,
        mean_index=mean_index,
        # The reference's name for the head's residual column, which scripts look up.
        attn_output=f"{expr.label}_selector_width_attn_output",
    )
