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
    kept_blocks,
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
        """This SOp with the error bound `error`."""
        return dataclasses.replace(self, error=error)


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
    plain numbers and strings, or tuples of them: spaces are immutable, and a program
    compiled again lays out the same ones, so its blocks join the same spaces (which keep
    their joins) and are found among the kept blocks (kept_blocks.py)."""
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
    """The values other than None, told apart exactly (`bound_cache.exact_values`: with
    their types, floats by their bits, tuples item by item): equal keys give the same
    space. None where a value is not a str, int, bool, float or a tuple of such."""
    return bound_cache.exact_values(v for v in values if v is not None)


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
    in_space, hidden = spaces[inner.label], hidden_name_of(expr)
    f = quiet(expr.f, expr)
    if rasp.is_categorical(inner):
        build = (
            categorical_mlp.map_categorical_mlp
            if rasp.is_categorical(expr)
            else categorical_mlp.map_categorical_to_numerical_mlp
        )
        return kept_blocks.built(
            (kept_blocks.Same(build), in_space, space, hidden),
            lambda g: build(in_space, space, g, hidden_name=hidden),
            [f],
        )
    fit = (
        None
        if rasp.is_categorical(expr)
        else numeric_points.affine_fit(expr.f, ctx.grouping(inner.label))
    )
    aux = ctx.one_space, ctx.bos_space
    if fit is not None:
        affine = numerical_mlp.map_affine_numerical_mlp
        return kept_blocks.built(
            (kept_blocks.Same(affine), in_space, space, *fit, *aux, hidden),
            lambda: affine(in_space, space, *fit, *aux, hidden),
            [],
        )
    build = (
        numerical_mlp.map_numerical_to_categorical_mlp
        if rasp.is_categorical(expr)
        else numerical_mlp.map_numerical_mlp
    )
    points = tuple(numeric_points.map_points(expr.f, ctx.grouping(inner.label))[0])
    return kept_blocks.built(
        (kept_blocks.Same(build), in_space, space, points, *aux, hidden),
        lambda g: build(g, in_space, space, list(points), *aux, hidden_name=hidden),
        [f],
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
    fst, snd, hidden = spaces[expr.fst.label], spaces[expr.snd.label], hidden_name_of(expr)
    if rasp.is_numerical(expr.fst) and rasp.is_numerical(expr.snd):
        linear = numerical_mlp.linear_sequence_map_numerical_mlp
        args = (fst.basis[0], snd.basis[0], space.basis[0], expr.fst_fac, expr.snd_fac)
        return kept_blocks.built(
            (kept_blocks.Same(linear), fst, snd, space, expr.fst_fac, expr.snd_fac, hidden),
            lambda: linear(*args, hidden_name=hidden),
            [],
        )
    build = categorical_mlp.sequence_map_categorical_mlp
    return kept_blocks.built(
        (kept_blocks.Same(build), fst, snd, space, ctx.one_space, hidden),
        lambda g: build(fst, snd, space, g, ctx.one_space, hidden_name=hidden),
        [feasible_only(expr)],
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


def kept_terms(terms) -> tuple[tuple, list, Callable]:
    """The attention terms as `kept_blocks.built` takes them: (key parts, the predicates
    to log, a function of the logged predicates giving the terms). The fixed comparisons
    (`selector_logic.fixed_comparison`) are key parts, not logged: kept spaces hold plain
    values, on which they always answer the same."""
    fixed = [selector_logic.fixed_comparison(t.attn_fn) for t in terms]
    parts = tuple(
        (t.query_space, t.key_space, None if op is None else kept_blocks.Same(op))
        for t, op in zip(terms, fixed)
    )
    logged = [t.attn_fn for t, op in zip(terms, fixed) if op is None]

    def with_logged(*predicates):
        given = iter(predicates)
        return [
            t if op is not None else dataclasses.replace(t, attn_fn=next(given))
            for t, op in zip(terms, fixed)
        ]

    return parts, logged, with_logged


def lower_aggregate(expr: rasp.Aggregate, space, spaces, ctx):
    terms = selector_terms(expr.selector, spaces)
    parts, logged, with_logged = kept_terms(terms)
    value_space, aux = spaces[expr.sop.label], (ctx.bos_space, ctx.one_space)
    build = categorical_attn.conjunctive_attn
    return kept_blocks.built(
        (kept_blocks.Same(build), parts, value_space, space, *aux, ctx.max_seq_len, ctx.causal),
        lambda *predicates: build(
            with_logged(*predicates),
            value_space,
            space,
            *aux,
            max_seq_len=ctx.max_seq_len,
            causal=ctx.causal,
        ),
        logged,
    )


def lower_width(expr: rasp.SOp, terms, space, ctx, via_one_hot=False, mean_index=None):
    parts, logged, with_logged = kept_terms(terms)
    values, categorical = ctx.value_sets[expr.label], rasp.is_categorical(expr)
    options = dict(
        max_seq_len=ctx.max_seq_len,
        causal=ctx.causal,
        hidden_name=hidden_name_of(expr),
        via_one_hot=via_one_hot,
        mean_index=mean_index,
        # The reference's name for the head's residual column, which scripts look up.
        attn_output=f"{expr.label}_selector_width_attn_output",
    )
    aux = ctx.bos_space, ctx.one_space
    build = selector_width.conjunctive_selector_width
    return kept_blocks.built(
        (kept_blocks.Same(build), parts, space, *aux, values, categorical, *options.items()),
        lambda *predicates: build(
            with_logged(*predicates), space, *aux, values, categorical, **options
        ),
        logged,
    )
