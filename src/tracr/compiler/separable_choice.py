"""The width-linear separable block for a categorical SequenceMap, where it fits.

A SequenceMap whose function splits into per-input parts (x - y, ...) can be built as
one of separable_mlp's blocks, far narrower than the lookup table over every pair of
values. `separable_if_it_fits` picks the plain, the robust, or the robust block reading
a width as a number (`_width_as_number`, which may rebuild that width's head to also
write its mean index), by their float32 error bounds (block_choice.py's candidates);
None where none fits, and lowering keeps the lookup table.
"""

from __future__ import annotations

import dataclasses

from tracr.compiler import basis_inference, block_choice, expr_blocks, float_bounds, kept_blocks
from tracr.craft import bases, transformers
from tracr.craft.chamber import separable_mlp
from tracr.rasp import rasp


def separable_if_it_fits(
    node, bounds, errors, ctx, spaces, tokens_space
) -> expr_blocks.LoweredSOp | None:
    """A categorical SequenceMap whose function splits into per-input parts (x - y, ...)
    as one of the width-linear blocks of separable_mlp, with its error; the first of

    1. the plain block, where its bound is at most CLEAN_ABOVE (exact inputs, say);
    2. the robust block (twin-unit steps that absorb input noise), where its bound fits
       the budget;
    3. the robust block reading a width that counts every position (the length) as a
       number from its head (`_width_as_number`), where that fits;
    4. the plain block where it fits the budget, cleaned as any lookup if that halves
       its bound (`block_choice.cleaner_if_noisy`).

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
    f = expr_blocks.quiet(expr.f, expr)
    feasible = basis_inference.pair_constraint(expr.fst, expr.snd)
    hidden = expr_blocks.hidden_name_of(expr)
    plain_block = _kept(
        separable_mlp.build,
        (fst, snd, node.space, ctx.one_space, hidden),
        f,
        feasible,
        lambda g, p: separable_mlp.build(
            fst, snd, node.space, g, ctx.one_space, hidden_name=hidden, feasible=p
        ),
    )
    plain = None
    if plain_block is not None:
        plain = block_choice.bounded_candidate(
            node, plain_block, bounds, errors, block_choice.CLEAN_ABOVE
        )
    if plain is not None and block_choice.fits(plain, bounds, errors, block_choice.CLEAN_ABOVE):
        return plain
    none = tuple(_may_be_none(ctx.value_sets[s.label]) for s in (expr.fst, expr.snd))
    aux = ctx.one_space, ctx.bos_space
    robust = _kept(
        separable_mlp.build_robust,
        (fst, snd, node.space, *aux, hidden, none),
        f,
        feasible,
        lambda g, p: separable_mlp.build_robust(fst, snd, node.space, g, *aux, hidden, p, none),
    )
    robust = (
        None if robust is None else block_choice.bounded_candidate(node, robust, bounds, errors)
    )
    if robust is not None and block_choice.fits(robust, bounds, errors):
        return robust
    number = _width_as_number(node, bounds, errors, ctx, spaces, tokens_space, (f, feasible, none))
    if number is not None:
        return number
    if plain is None and plain_block is not None:  # its sample was over CLEAN_ABOVE
        plain = block_choice.bounded_candidate(node, plain_block, bounds, errors)
    if plain is None or not block_choice.fits(plain, bounds, errors):
        return None
    return block_choice.cleaner_if_noisy(plain, bounds, errors, ctx, spaces, bounded=True)


def _kept(build, parts: tuple, f, feasible, call):
    """call(f, feasible), a separable builder's block (or None), kept across compiles by
    `parts` and the answers of f and of `feasible` (kept_blocks.py; `feasible` may be
    None)."""
    functions = [f] if feasible is None else [f, feasible]
    return kept_blocks.built(
        (kept_blocks.Same(build), feasible is None, *parts),
        lambda g, p=None: call(g, p),
        functions,
    )


def _may_be_none(values: frozenset | None) -> bool:
    """Whether a categorical SOp can hold no value (its zero vector) off BOS."""
    return values is None or None in values


def _width_as_number(
    node, bounds, errors, ctx, spaces, tokens_space, how
) -> expr_blocks.LoweredSOp | None:
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
        block = _reading_block(node, args, g, pairs, (False, none[1 - side]), reading, ctx)
        if block is None:
            continue
        numbers = float_bounds.width_numbers(staged.block, width_expr.label, bounds, errors)
        for name in numbers.directions:
            bounds.numbers[name] = numbers
        read = block_choice.bounded_candidate(node, block, bounds, errors)
        if read is not None and block_choice.fits(read, bounds, errors):
            bounds.lowered[width_expr.label], errors[width_expr.label] = staged, staged.error
            return read
        for name in numbers.directions:
            del bounds.numbers[name]
    return None


def _reading_block(node, args, g, pairs, may_be_none, reading, ctx):
    """The robust block of `node` reading its first input (`args`) as a number, kept
    across compiles as `_kept` keeps blocks (`reading` by every field)."""
    hidden, aux = expr_blocks.hidden_name_of(node.expr), (ctx.one_space, ctx.bos_space)
    number = tuple(
        kept_blocks.Contents(part) if isinstance(part, bases.VectorSpaceWithBasis) else part
        for part in (getattr(reading, f.name) for f in dataclasses.fields(reading))
    )
    return _kept(
        separable_mlp.build_robust,
        (*args, node.space, *aux, hidden, may_be_none, *number),
        g,
        pairs,
        lambda f, p: separable_mlp.build_robust(
            *args, node.space, f, *aux, hidden, p, may_be_none, number1=reading
        ),
    )


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


def _with_mean_index(width_node: expr_blocks.LoweredSOp, bounds, errors, ctx, tokens_space):
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
    indices = expr_blocks.labelled_space(rasp.indices.label, range(ctx.max_seq_len))
    spaces = {k: v.space for k, v in bounds.lowered.items()}
    terms = expr_blocks.width_terms(expr, spaces, tokens_space)
    block = expr_blocks.lower_width(expr, terms, width_node.space, ctx, mean_index=indices)
    return block_choice.bounded_with(width_node, block, bounds, errors)
