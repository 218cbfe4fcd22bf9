"""Alternative blocks for an SOp whose first block's float32 error bound does not fit.

Lowering (expr_to_craft_graph.py) builds each SOp's block (expr_blocks.py), bounds its
error (float_bounds.py) and, where that bound is too large, tries the alternatives
here, keeping one only where its own bound is better:

* `cleaner_if_noisy`: a lookup with noisy inputs as a noise-cleaning indicator table;
* `clean_selector_inputs_if_unstable`: a SelectorWidth reading clean copies of its
  noisy query and key one-hots;
* `through_one_hot_if_inexact`: a Map of a numerical width reading the width's one-hot;
* `two_stage_if_inexact`: a numerical width read through its one-hot (two stages).

Also the candidate machinery the separable choice (separable_choice.py) shares:
`bounded_candidate` (bounded on a sample first, to turn misfits down cheaply), `fits`,
`bounded_with`, and the thresholds CLEAN_ABOVE and NUMERICAL_WIDTH_TOLERANCE.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracr.compiler import expr_blocks, float_bounds, kept_blocks, selector_logic
from tracr.craft import bases, transformers
from tracr.craft.chamber import categorical_mlp
from tracr.rasp import rasp

#: A lookup whose output error bound (coordinates added up) exceeds this, and one of
#: whose inputs is noisier than this, is rebuilt with noise-cleaning units
#: (categorical_mlp.clean_indicators) when that at least halves the bound. Attention
#: outputs at moderate sizes stay below it.
CLEAN_ABOVE = 2e-6


#: A numerical SelectorWidth whose one-stage readout may be off by more than this times
#: max_seq_len (half the output budget 1e-5 times its scale) reads w through a
#: one-hot instead (selector_width `via_one_hot`), at the cost of one MLP sub-layer.
NUMERICAL_WIDTH_TOLERANCE = 5e-6


def bounded_with(node: expr_blocks.LoweredSOp, block, bounds, errors) -> expr_blocks.LoweredSOp:
    """`node` computed by `block`, with that block's error bound."""
    node = dataclasses.replace(node, block=block)
    return node.with_error(float_bounds.sop_error(node, bounds, errors))


#: Inputs (about) on which a candidate block is bounded first, to turn it down cheaply.
_BUDGET_SAMPLE, _LIMIT_SAMPLE = 256, 32


def bounded_candidate(
    node, block, bounds, errors, limit: float | None = None
) -> expr_blocks.LoweredSOp | None:
    """`node` computed by `block`, with its error bound; None where a bound on a sample
    of the inputs already fails `fits` (most misfits are turned down so, cheaply; under
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
        if not fits(candidate, bounds, errors, limit):
            return None
    return bounded_with(node, block, bounds, errors)


def fits(candidate, bounds, errors, limit: float | None = None) -> bool:
    """Whether a bounded candidate's error fits the budget (and is at most `limit`,
    coordinates added up)."""
    error = candidate.error
    if limit is not None and (error.unstable or max(error.worst(0.0), error.l1) > limit):
        return False
    return not float_bounds.exceeds_budget(candidate, bounds, errors)


def clean_selector_inputs_if_unstable(node, bounds, errors, ctx, spaces) -> expr_blocks.LoweredSOp:
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
        name = f"{expr_blocks.hidden_name_of(expr)}clean_{label}"
        copy = bases.VectorSpaceWithBasis.from_values(name, [d.value for d in spaces[label].basis])
        table = categorical_mlp.map_indicator_table(spaces[label], copy, lambda v: v, f"{name}_")
        cleanup = categorical_mlp.clean_indicators(table, ctx.one_space)
        float_bounds.register_clean_copy(cleanup, copy, bounds, errors)
        copies[label] = copy
        cleanups.append(cleanup)
    width = expr_blocks.lower_width(
        expr, expr_blocks.selector_terms(expr.selector, copies), node.space, ctx
    )
    block = transformers.SeriesWithResiduals(
        [transformers.MLP.combine_in_parallel(cleanups), *width.blocks]
    )
    cleaned = dataclasses.replace(node, block=block)
    cleaned = cleaned.with_error(float_bounds.sop_error(cleaned, bounds, errors))
    worse = cleaned.error.unstable or cleaned.error.worst(0.0) >= node.error.worst(0.0)
    return node if worse and not node.error.unstable else cleaned


def is_numerical_width(expr: rasp.SOp) -> bool:
    return isinstance(expr, (rasp.LengthType, rasp.SelectorWidth)) and rasp.is_numerical(expr)


def through_one_hot_if_inexact(
    node, bounds, errors, ctx, lowered, tokens_space
) -> expr_blocks.LoweredSOp:
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
        one_hot, node.space, expr_blocks.quiet(expr.f, expr), expr_blocks.hidden_name_of(expr)
    )
    read = dataclasses.replace(node, block=categorical_mlp.clean_indicators(table, ctx.one_space))
    read = read.with_error(float_bounds.sop_error(read, bounds, errors))
    if read.error.worst(0.0) >= node.error.worst(0.0) and not node.error.unstable:
        del bounds.hidden[name]
        return node
    lowered[inner.expr.label], errors[inner.expr.label] = staged, staged.error
    return read


def _two_stage(
    node: expr_blocks.LoweredSOp, bounds, errors, ctx, tokens_space
) -> expr_blocks.LoweredSOp:
    """The numerical width `node` built in two stages, with its error."""
    expr = node.expr
    spaces = {k: v.space for k, v in bounds.lowered.items()}
    terms = expr_blocks.width_terms(expr, spaces, tokens_space)
    block = expr_blocks.lower_width(expr, terms, node.space, ctx, via_one_hot=True)
    staged = dataclasses.replace(node, block=block)
    return staged.with_error(float_bounds.sop_error(staged, bounds, errors))


def two_stage_if_inexact(
    node: expr_blocks.LoweredSOp, bounds, errors, ctx, tokens_space
) -> expr_blocks.LoweredSOp:
    if node.error.worst(ctx.max_seq_len) <= NUMERICAL_WIDTH_TOLERANCE * ctx.max_seq_len:
        return node
    staged = _two_stage(node, bounds, errors, ctx, tokens_space)
    return (
        staged if staged.error.worst(ctx.max_seq_len) < node.error.worst(ctx.max_seq_len) else node
    )


def cleaner_if_noisy(
    node: expr_blocks.LoweredSOp, bounds, errors, ctx, spaces, bounded=False
) -> expr_blocks.LoweredSOp:
    """`node` with its error bound; where a lookup's inputs are noisy enough that its
    output error exceeds CLEAN_ABOVE, the lookup as an indicator table made noise-proof
    (categorical_mlp.clean_indicators), if that at least halves the bound.

    Inputs within CLEAN_ABOVE already (a cleaned lookup's output, say) are left as they
    are: a cleaned table's own rounding (terms of size 2) is of that order, so cleaning
    would gain little and double the block's width (sort_freq's SequenceMap would be
    twice the reference's). `bounded`: node.error is already its block's bound (a
    separable block, separable_choice.py); otherwise node is as lowered (expr_blocks.py)
    and is bounded here, and a categorical SequenceMap's block is its lookup table."""
    first = not bounded
    if first:
        node = node.with_error(float_bounds.sop_error(node, bounds, errors))
    expr = node.expr
    if max(node.error.worst(0.0), node.error.l1) <= CLEAN_ABOVE:
        return node
    if not isinstance(expr, (rasp.Map, rasp.SequenceMap)):
        return node
    noise = max(max(errors[c.label].abs, errors[c.label].l1) for c in expr.children)
    if noise <= CLEAN_ABOVE:
        return node
    if isinstance(expr, rasp.Map) and rasp.is_categorical(expr.inner):
        in_space, hidden = spaces[expr.inner.label], expr_blocks.hidden_name_of(expr)
        indicators = categorical_mlp.map_indicator_table
        table = kept_blocks.built(
            (kept_blocks.Same(indicators), in_space, node.space, hidden),
            lambda f: indicators(in_space, node.space, f, hidden),
            [expr_blocks.quiet(expr.f, expr)],
        )
    elif (
        isinstance(expr, rasp.SequenceMap)
        and rasp.is_categorical(expr.fst)
        and rasp.is_categorical(expr.snd)
    ):
        # its lookup table, as lowered (kept across compiles)
        table = (
            node.block if first else expr_blocks.lower_sequence_map(expr, node.space, spaces, ctx)
        )
    else:
        return node
    clean = categorical_mlp.clean_indicators
    cleaned = dataclasses.replace(
        node,
        block=kept_blocks.built(
            (kept_blocks.Same(clean), table, ctx.one_space),
            lambda: clean(table, ctx.one_space),
            [],
        ),
    )
    cleaned = cleaned.with_error(float_bounds.sop_error(cleaned, bounds, errors))
    if max(cleaned.error.abs, cleaned.error.l1) <= max(node.error.abs, node.error.l1) / 2:
        return cleaned
    return node
