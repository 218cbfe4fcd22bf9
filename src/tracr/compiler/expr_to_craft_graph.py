"""Lower every SOp of a program to the craft block that computes it.

Each SOp owns one labelled subspace of the residual stream (`sop_space`): categorical
SOps one direction per value, numerical SOps one direction holding the number. A block
reads only its inputs' subspaces (plus `one` and the BOS direction) and writes only its
own. tokens and indices come from the embeddings; constant SOps (`Full`) are written by
the token embedding; every other SOp gets a block from `tracr.craft.chamber`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tracr.compiler import (
    basis_inference,
    float_bounds,
    nodes,
    numeric_points,
    rasp_to_graph,
    selector_logic,
)
from tracr.craft import bases, transformers
from tracr.craft.chamber import (
    categorical_attn,
    categorical_mlp,
    numerical_mlp,
    selector_width,
    separable_mlp,
)
from tracr.rasp import rasp

ONE = bases.BasisDirection("one")


@dataclasses.dataclass(frozen=True)
class LoweredSOp:
    """An SOp's subspace and the block writing it (None when an embedding writes it)."""

    expr: rasp.SOp
    space: bases.VectorSpaceWithBasis
    block: object | None
    constant: float | None = None  # for Full: the value the token embedding writes
    # Worst-case float32 deviation of the SOp's coordinates, any summation order.
    error: float_bounds.SOpError = float_bounds.EXACT


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
        if values not in self.groupings:
            try:
                self.groupings[values] = numeric_points.Grouping.of(values)
            except TypeError:
                self.groupings[values] = values
        return self.groupings[values]


def sop_space(expr: rasp.SOp, values: frozenset | None) -> bases.VectorSpaceWithBasis:
    """The residual subspace of one SOp."""
    if rasp.is_numerical(expr):
        return bases.VectorSpaceWithBasis([bases.BasisDirection(expr.label)])
    return bases.sorted_space(expr.label, (v for v in values if v is not None))


def _quiet(f: Callable, expr: rasp.SOp) -> Callable:
    """f, writing no value (categorical) or 0 (numerical) where it raises arithmetically."""
    return numeric_points.quiet(f, 0 if rasp.is_numerical(expr) else None)


def _hidden(expr: rasp.RASPExpr) -> str:
    return f"_hidden_{expr.label}_"


def _lower_map(expr: rasp.Map, space, spaces, ctx):
    inner = expr.inner
    f = _quiet(expr.f, expr)
    if rasp.is_categorical(inner):
        build = (
            categorical_mlp.map_categorical_mlp
            if rasp.is_categorical(expr)
            else categorical_mlp.map_categorical_to_numerical_mlp
        )
        return build(spaces[inner.label], space, f, hidden_name=_hidden(expr))
    fit = (
        None
        if rasp.is_categorical(expr)
        else numeric_points.affine_fit(expr.f, ctx.grouping(inner.label))
    )
    if fit is not None:
        return numerical_mlp.map_affine_numerical_mlp(
            spaces[inner.label], space, *fit, ctx.one_space, ctx.bos_space, _hidden(expr)
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
        hidden_name=_hidden(expr),
    )


def _feasible_only(expr: rasp.SequenceMap) -> Callable:
    """expr.f, quiet, answering None (0 for a numerical result) for the pairs of
    values that never meet at one position (`basis_inference.pair_constraint`): the
    block writes nothing for them, and no table needs their results."""
    f = _quiet(expr.f, expr)
    feasible = basis_inference.pair_constraint(expr.fst, expr.snd)
    if feasible is None:
        return f
    never = 0 if rasp.is_numerical(expr) else None
    return lambda x, y: f(x, y) if feasible(x, y) else never


def _lower_sequence_map(expr: rasp.SequenceMap, space, spaces, ctx):
    if rasp.is_numerical(expr.fst) and rasp.is_numerical(expr.snd):
        return numerical_mlp.linear_sequence_map_numerical_mlp(
            spaces[expr.fst.label].basis[0],
            spaces[expr.snd.label].basis[0],
            space.basis[0],
            expr.fst_fac,
            expr.snd_fac,
            hidden_name=_hidden(expr),
        )
    return categorical_mlp.sequence_map_categorical_mlp(
        spaces[expr.fst.label],
        spaces[expr.snd.label],
        space,
        _feasible_only(expr),
        ctx.one_space,
        hidden_name=_hidden(expr),
    )


def _separable_if_it_fits(node, bounds, errors, ctx, spaces, tokens_space) -> LoweredSOp | None:
    """A categorical SequenceMap whose function splits into per-input parts (x - y, ...)
    as one of the width-linear blocks of separable_mlp, with its error; the first of

    1. the plain block, where its bound is at most CLEAN_ABOVE (exact inputs, say);
    2. the robust block (twin-unit steps that absorb input noise), where its bound fits
       the budget;
    3. the robust block reading a width that counts every position (the length) as a
       number from its head (`_width_as_number`), where that fits;
    4. the plain block where it fits the budget, cleaned as any lookup if that halves
       its bound (`_cleaner_if_noisy`).

    None where none applies or fits: the lookup table then (cleaned where noisy).
    """
    expr = node.expr
    if not (
        rasp.is_categorical(expr)
        and rasp.is_categorical(expr.fst)
        and rasp.is_categorical(expr.snd)
        and expr.fst.label != expr.snd.label
    ):
        return None
    fst, snd = spaces[expr.fst.label], spaces[expr.snd.label]
    if separable_mlp.width(node.space.num_dims) >= fst.num_dims * snd.num_dims:
        return None
    f = _quiet(expr.f, expr)
    feasible = basis_inference.pair_constraint(expr.fst, expr.snd)
    plain_block = separable_mlp.build(
        fst, snd, node.space, f, ctx.one_space, hidden_name=_hidden(expr), feasible=feasible
    )
    plain = None
    if plain_block is not None:
        plain = _candidate(node, plain_block, bounds, errors, CLEAN_ABOVE)
    if plain is not None and _fits(plain, bounds, errors, CLEAN_ABOVE):
        return plain
    none = tuple(_may_be_none(ctx.value_sets[s.label]) for s in (expr.fst, expr.snd))
    robust = separable_mlp.build_robust(
        fst, snd, node.space, f, ctx.one_space, ctx.bos_space, _hidden(expr), feasible, none
    )
    robust = None if robust is None else _candidate(node, robust, bounds, errors)
    if robust is not None and _fits(robust, bounds, errors):
        return robust
    number = _width_as_number(node, bounds, errors, ctx, spaces, tokens_space, (f, feasible, none))
    if number is not None:
        return number
    if plain is None and plain_block is not None:  # its sample was over CLEAN_ABOVE
        plain = _candidate(node, plain_block, bounds, errors)
    if plain is None or not _fits(plain, bounds, errors):
        return None
    return _cleaner_if_noisy(plain, bounds, errors, ctx, spaces, bounded=True)


def _bounded(node: LoweredSOp, block, bounds, errors) -> LoweredSOp:
    """`node` computed by `block`, with that block's error bound."""
    node = dataclasses.replace(node, block=block)
    return dataclasses.replace(node, error=float_bounds.sop_error(node, bounds, errors))


#: Inputs (about) on which a candidate block is bounded first, to turn it down cheaply.
_BUDGET_SAMPLE, _LIMIT_SAMPLE = 256, 32


def _candidate(node, block, bounds, errors, limit: float | None = None) -> LoweredSOp | None:
    """`node` computed by `block`, with its error bound; None where a bound on a sample
    of the inputs already fails `_fits` (most misfits are turned down so, cheaply; under
    a `limit`, the one-hot tables of separable_mlp miss it by far: a smaller sample).
    Where the sample is every input, its bound is the block's."""
    candidate = dataclasses.replace(node, block=block)
    count = _LIMIT_SAMPLE if limit is not None else _BUDGET_SAMPLE
    sample = float_bounds.sample_error(candidate, bounds, errors, count)
    if sample is not None:
        error, complete = sample
        candidate = dataclasses.replace(candidate, error=error)
        if complete:
            return candidate
        if not _fits(candidate, bounds, errors, limit):
            return None
    return _bounded(node, block, bounds, errors)


def _fits(candidate, bounds, errors, limit: float | None = None) -> bool:
    """Whether a bounded candidate's error fits the budget (and is at most `limit`,
    coordinates added up)."""
    error = candidate.error
    if limit is not None and (error.unstable or max(error.worst(0.0), error.l1) > limit):
        return False
    return not float_bounds.exceeds_budget(candidate, bounds, errors)


def _may_be_none(values: frozenset | None) -> bool:
    """Whether a categorical SOp can hold no value (its zero vector) off BOS."""
    return values is None or None in values


def _width_as_number(node, bounds, errors, ctx, spaces, tokens_space, how) -> LoweredSOp | None:
    """The robust separable block reading one input, a width that counts every position
    (length, or a selector that selects every key), as a number from its head.

    The width's readout writes its one-hot with float32 rounding of ~N^2 u in l1 (the
    steps of t = 1/(w+1) are steep); a linear read of that one-hot weights each
    coordinate by up to ~N, more than the robust steps absorb at large N. The head
    attends equally to BOS and to every position, so it can also write the mean index
    m = w (w - 1) / (2 (w + 1)) (selector_width `mean_index`, one more value column of
    the same head): then w = 2 (m - t) + 2 to within ~N^2 u, read here by the steps with
    a margin of 1/4 (at BOS, where the readout has cleaned t to 0, that reads 2 and the
    bos gate turns every unit off). Only for parts affine in w (separable_mlp.build_robust
    checks), and not for causal models.
    """
    expr, (f, feasible, none) = node.expr, how
    if ctx.causal:
        return None
    for side, (width_expr, other) in enumerate(((expr.fst, expr.snd), (expr.snd, expr.fst))):
        if not _selects_every_key(width_expr, ctx.value_sets):
            continue
        width_node = bounds.lowered[width_expr.label]
        staged = _with_mean_index(width_node, bounds, errors, ctx, tokens_space)
        if staged is None:
            continue
        head = float_bounds.width_parts(staged.block)[1]
        reading = separable_mlp.NumberReading(
            head.w_ov.output_space, weights=(-2.0, 2.0), offset=2.0, at_bos=2.0
        )
        args = (spaces[width_expr.label], spaces[other.label])
        g, pairs = f, feasible
        if side == 1:  # the width is the second input: swap the arguments
            g = lambda w, y, f=f: f(y, w)  # noqa: E731
            pairs = None if feasible is None else (lambda w, y, p=feasible: p(y, w))
        block = separable_mlp.build_robust(
            *args, node.space, g, ctx.one_space, ctx.bos_space, _hidden(expr), pairs,
            (False, none[1 - side]), number1=reading,
        )  # fmt: skip
        if block is None:
            continue
        numbers = float_bounds.width_numbers(staged.block, width_expr.label, bounds, errors)
        for name in numbers.directions:
            bounds.numbers[name] = numbers
        read = _candidate(node, block, bounds, errors)
        if read is not None and _fits(read, bounds, errors):
            bounds.lowered[width_expr.label], errors[width_expr.label] = staged, staged.error
            return read
        for name in numbers.directions:
            del bounds.numbers[name]
    return None


def _selects_every_key(expr: rasp.SOp, value_sets) -> bool:
    """A width whose head scores every visible key as it scores BOS: length, or the width
    of a selector that selects every key and compares SOps that always hold a value (a
    None one-hot would score lower)."""
    if isinstance(expr, rasp.LengthType):
        return True
    if not basis_inference.counts_every_position(expr):
        return False
    selector = expr.selector
    return not any(_may_be_none(value_sets[s.label]) for s in (selector.keys, selector.queries))


def _with_mean_index(width_node: LoweredSOp, bounds, errors, ctx, tokens_space):
    """The one-stage categorical width `width_node` whose head also writes its mean
    index (unchanged if it already does); None for other width blocks."""
    expr = width_node.expr
    if not rasp.is_categorical(expr) or not isinstance(
        width_node.block, transformers.SeriesWithResiduals
    ):
        return None
    cleanups, head, _, number = float_bounds.width_parts(width_node.block)
    if cleanups or number:
        return None
    if head.w_ov.output_space.num_dims > 1:
        return width_node
    indices = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(ctx.max_seq_len))
    if isinstance(expr, rasp.LengthType):
        terms = [categorical_attn.AttnTerm(tokens_space, tokens_space, selector_logic.select_every)]
    else:
        spaces = {k: v.space for k, v in bounds.lowered.items()}
        terms = _terms(expr.selector, spaces)
    block = _lower_width(expr, terms, width_node.space, ctx, mean_index=indices)
    return _bounded(width_node, block, bounds, errors)


def _terms(selector: rasp.Selector, spaces) -> list[categorical_attn.AttnTerm]:
    """One attention term per (keys, queries) pair of the selector's conjunction."""
    return [
        categorical_attn.AttnTerm(
            spaces[f.queries.label], spaces[f.keys.label], selector_logic.attn_fn(f)
        )
        for f in selector_logic.conjuncts(selector)
    ]


def _lower_aggregate(expr: rasp.Aggregate, space, spaces, ctx):
    return categorical_attn.conjunctive_attn(
        _terms(expr.selector, spaces),
        spaces[expr.sop.label],
        space,
        ctx.bos_space,
        ctx.one_space,
        max_seq_len=ctx.max_seq_len,
        causal=ctx.causal,
    )


def _lower_width(expr: rasp.SOp, terms, space, ctx, via_one_hot=False, mean_index=None):
    return selector_width.conjunctive_selector_width(
        terms,
        space,
        ctx.bos_space,
        ctx.one_space,
        ctx.value_sets[expr.label],
        rasp.is_categorical(expr),
        max_seq_len=ctx.max_seq_len,
        causal=ctx.causal,
        hidden_name=_hidden(expr),
        via_one_hot=via_one_hot,
        mean_index=mean_index,
        # The reference's name for the head's residual column, which scripts look up.
        attn_output=f"{expr.label}_selector_width_attn_output",
    )


def add_craft_components_to_rasp_graph(
    extracted: rasp_to_graph.ExtractRaspGraphOutput, **options: Any
) -> dict[str, LoweredSOp]:
    """Returns, for every SOp label, its subspace and the block that computes it
    (`lower_with_bounds`, same options, without its bounds context)."""
    return lower_with_bounds(extracted, **options)[0]


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
    exactness check (`float_bounds.findings`) needs to see as lowering saw it.
    groupings: the numerical value sets validation grouped (`validate_value_sets`)."""
    ctx = LoweringContext(
        value_sets=value_sets,
        bos_space=bases.VectorSpaceWithBasis([bos_dir]),
        one_space=bases.VectorSpaceWithBasis([ONE]),
        max_seq_len=max_seq_len,
        causal=causal,
        groupings={} if groupings is None else groupings,
    )
    tokens_space = sop_space(rasp.tokens, vocab)
    graph = extracted.graph
    spaces: dict[str, bases.VectorSpaceWithBasis] = {}
    lowered: dict[str, LoweredSOp] = {}
    errors: dict[str, float_bounds.SOpError] = {}
    bounds = float_bounds.Context(lowered, value_sets, bos_dir, ONE, max_seq_len)
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
        elif isinstance(expr, rasp.LengthType):
            # length is the width of a selector that selects every token.
            every = categorical_attn.AttnTerm(
                tokens_space, tokens_space, selector_logic.select_every
            )
            block = _lower_width(expr, [every], space, ctx)
        elif isinstance(expr, rasp.Map):
            block = _lower_map(expr, space, spaces, ctx)
        elif isinstance(expr, rasp.SequenceMap):
            block = _lower_sequence_map(expr, space, spaces, ctx)
        elif isinstance(expr, rasp.Aggregate):
            block = _lower_aggregate(expr, space, spaces, ctx)
        elif isinstance(expr, rasp.SelectorWidth):
            block = _lower_width(expr, _terms(expr.selector, spaces), space, ctx)
        else:
            raise NotImplementedError(f"no lowering for {type(expr).__name__} {label!r}")
        node = LoweredSOp(expr=expr, space=space, block=block, constant=constant)
        separable = None
        if isinstance(expr, rasp.SequenceMap):
            separable = _separable_if_it_fits(node, bounds, errors, ctx, spaces, tokens_space)
        node = separable or _cleaner_if_noisy(node, bounds, errors, ctx, spaces)
        if isinstance(expr, rasp.SelectorWidth):
            node = _clean_selector_inputs_if_unstable(node, bounds, errors, ctx, spaces)
        if isinstance(expr, rasp.Map) and _is_numerical_width(expr.inner):
            node = _through_one_hot_if_inexact(node, bounds, errors, ctx, lowered, tokens_space)
        if isinstance(expr, (rasp.LengthType, rasp.SelectorWidth)) and rasp.is_numerical(expr):
            node = _two_stage_if_inexact(node, bounds, errors, ctx, tokens_space)
        lowered[label], errors[label] = node, node.error
    return lowered, bounds


#: A lookup whose output error bound (coordinates added up) exceeds this, and one of
#: whose inputs is noisier than this, is rebuilt with noise-cleaning units
#: (categorical_mlp.clean_indicators) when that at least halves the bound. Attention
#: outputs at moderate sizes stay below it.
CLEAN_ABOVE = 2e-6


#: A numerical SelectorWidth whose one-stage readout may be off by more than this times
#: max_seq_len (half the output budget 1e-5 times its scale) reads w through a
#: one-hot instead (selector_width `via_one_hot`), at the cost of one MLP sub-layer.
NUMERICAL_WIDTH_TOLERANCE = 5e-6


def _clean_selector_inputs_if_unstable(node, bounds, errors, ctx, spaces) -> LoweredSOp:
    """A SelectorWidth whose query or key one-hots are too noisy for its readout (the
    width of t = 1/(w+1) needs ties of logits far tighter than the noise allows) first
    cleans them: one noise-cleaning identity lookup per noisy SOp writes a clean copy,
    which the head reads. One more MLP sub-layer, only where exactness needs it."""
    if not (node.error.unstable or float_bounds.exceeds_budget(node, bounds, errors)):
        return node
    expr = node.expr
    read = {s.label for f in selector_logic.conjuncts(expr.selector) for s in (f.keys, f.queries)}
    noisy = sorted(label for label in read if errors[label].abs > 0)
    if not noisy:
        return node
    copies, cleanups = dict(spaces), []
    for label in noisy:
        name = f"{_hidden(expr)}clean_{label}"
        copy = bases.VectorSpaceWithBasis.from_values(name, [d.value for d in spaces[label].basis])
        table = categorical_mlp.map_indicator_table(spaces[label], copy, lambda v: v, f"{name}_")
        cleanup = categorical_mlp.clean_indicators(table, ctx.one_space)
        float_bounds.register_clean_copy(cleanup, copy, bounds, errors)
        copies[label] = copy
        cleanups.append(cleanup)
    width = _lower_width(expr, _terms(expr.selector, copies), node.space, ctx)
    block = transformers.SeriesWithResiduals(
        [transformers.MLP.combine_in_parallel(cleanups), *width.blocks]
    )
    cleaned = dataclasses.replace(node, block=block)
    cleaned = dataclasses.replace(cleaned, error=float_bounds.sop_error(cleaned, bounds, errors))
    worse = cleaned.error.unstable or cleaned.error.worst(0.0) >= node.error.worst(0.0)
    return node if worse and not node.error.unstable else cleaned


def _is_numerical_width(expr: rasp.SOp) -> bool:
    return isinstance(expr, (rasp.LengthType, rasp.SelectorWidth)) and rasp.is_numerical(expr)


def _through_one_hot_if_inexact(node, bounds, errors, ctx, lowered, tokens_space) -> LoweredSOp:
    """A Map of a numerical width, when reading the number is not exact enough in
    float32, reads the width's one-hot of w instead (the width becomes two-stage, see
    selector_width `via_one_hot`): an exact, noise-cleaning lookup table of f(w), in the
    MLP sub-layer where the width's own number is looked up, so no layer is added."""
    if not float_bounds.exceeds_budget(node, bounds, errors):
        return node
    expr, inner = node.expr, lowered[node.expr.inner.label]
    staged = inner
    if len(inner.block.blocks) == 2:
        staged = _two_stage(inner, bounds, errors, ctx, tokens_space)
        # SOps lowered earlier that read the width were bounded with its old error:
        # replace the width only if no value's bound gets larger.
        readers = [n for n in lowered.values() if any(c is inner.expr for c in n.expr.children)]
        values = np.array([0.0, *(float(v) for v in ctx.value_sets[inner.expr.label])])
        worse = np.any(staged.error.at_many(values) > inner.error.at_many(values))
        if readers and worse:
            return node
    one_hot, one_hot_error = float_bounds.width_one_hot(staged.block, bounds, errors)
    name = one_hot.basis[0].name
    bounds.hidden[name] = ([d.value for d in one_hot.basis], one_hot_error)
    table = categorical_mlp.map_indicator_table(
        one_hot, node.space, _quiet(expr.f, expr), _hidden(expr)
    )
    read = dataclasses.replace(node, block=categorical_mlp.clean_indicators(table, ctx.one_space))
    read = dataclasses.replace(read, error=float_bounds.sop_error(read, bounds, errors))
    if read.error.worst(0.0) >= node.error.worst(0.0) and not node.error.unstable:
        del bounds.hidden[name]
        return node
    lowered[inner.expr.label], errors[inner.expr.label] = staged, staged.error
    return read


def _two_stage(node: LoweredSOp, bounds, errors, ctx, tokens_space) -> LoweredSOp:
    """The numerical width `node` built in two stages, with its error."""
    expr = node.expr
    if isinstance(expr, rasp.LengthType):
        terms = [categorical_attn.AttnTerm(tokens_space, tokens_space, selector_logic.select_every)]
    else:
        terms = _terms(expr.selector, {k: v.space for k, v in bounds.lowered.items()})
    block = _lower_width(expr, terms, node.space, ctx, via_one_hot=True)
    staged = dataclasses.replace(node, block=block)
    return dataclasses.replace(staged, error=float_bounds.sop_error(staged, bounds, errors))


def _two_stage_if_inexact(node: LoweredSOp, bounds, errors, ctx, tokens_space) -> LoweredSOp:
    if node.error.worst(ctx.max_seq_len) <= NUMERICAL_WIDTH_TOLERANCE * ctx.max_seq_len:
        return node
    staged = _two_stage(node, bounds, errors, ctx, tokens_space)
    return (
        staged if staged.error.worst(ctx.max_seq_len) < node.error.worst(ctx.max_seq_len) else node
    )


def _cleaner_if_noisy(node: LoweredSOp, bounds, errors, ctx, spaces, bounded=False) -> LoweredSOp:
    """`node` with its error bound; where a lookup's inputs are noisy enough that its
    output error exceeds CLEAN_ABOVE, the lookup as an indicator table made noise-proof
    (categorical_mlp.clean_indicators), if that at least halves the bound.

    Inputs within CLEAN_ABOVE already (a cleaned lookup's output, say) are left as they
    are: a cleaned table's own rounding (terms of size 2) is of that order, so cleaning
    would gain little and double the block's width (sort_freq's SequenceMap would be
    twice the reference's). `bounded`: node.error is already its block's bound."""
    if not bounded:
        node = dataclasses.replace(node, error=float_bounds.sop_error(node, bounds, errors))
    expr = node.expr
    if max(node.error.worst(0.0), node.error.l1) <= CLEAN_ABOVE:
        return node
    if not isinstance(expr, (rasp.Map, rasp.SequenceMap)):
        return node
    noise = max(max(errors[c.label].abs, errors[c.label].l1) for c in expr.children)
    if noise <= CLEAN_ABOVE:
        return node
    if isinstance(expr, rasp.Map) and rasp.is_categorical(expr.inner):
        table = categorical_mlp.map_indicator_table(
            spaces[expr.inner.label], node.space, _quiet(expr.f, expr), _hidden(expr)
        )
    elif (
        isinstance(expr, rasp.SequenceMap)
        and rasp.is_categorical(expr.fst)
        and rasp.is_categorical(expr.snd)
    ):
        table = categorical_mlp.sequence_map_categorical_mlp(
            spaces[expr.fst.label],
            spaces[expr.snd.label],
            node.space,
            _feasible_only(expr),
            ctx.one_space,
            hidden_name=_hidden(expr),
        )
    else:
        return node
    cleaned = dataclasses.replace(
        node, block=categorical_mlp.clean_indicators(table, ctx.one_space)
    )
    cleaned = dataclasses.replace(cleaned, error=float_bounds.sop_error(cleaned, bounds, errors))
    if max(cleaned.error.abs, cleaned.error.l1) <= max(node.error.abs, node.error.l1) / 2:
        return cleaned
    return node
