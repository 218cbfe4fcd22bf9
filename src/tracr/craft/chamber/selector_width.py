"""SelectorWidth: an attention head that measures 1/(w+1), then an MLP that reads w.

Head. The selector is a conjunction of n >= 1 terms (query_t, key_t, attn_fn_t) (see
categorical_attn; n = 1 is a plain Select). With N = max_seq_len, delta =
WIDTH_LEAKAGE = 1/64 and c = ln(N / delta) rounded up to a multiple of 1/4 (so every
logit is exact in float32, see categorical_attn):

    W_qk(x_q, x_k) = c sum_t [attn_fn_t(q_t, k_t)] + n c one_q bos_k + c bos_q bos_k,
    W_ov: bos -> t    (t = the direction `attn_output`, by default
                       hidden_name + "selector_width_attn_output")

A non-BOS query scores nc on a key meeting every term (a selected key), at most (n - 1) c
on any other key, and gives the BOS key exactly the score nc of a selected key, so with
w selected and u <= N - w other visible keys, as only the BOS position has bos = 1,

    t = e^(nc) / ((w + 1) e^(nc) + sum_u e^(s_u)) >= 1 / (w + 1 + u e^(-c)),
    0 <= 1/(w+1) - t <= u e^(-c) / (w+1)^2 <= delta / (w+1)^2,

the same bound for every n. The BOS query scores (n + 1) c on BOS and 0 elsewhere, so
t ~ 1 there.

MLP. The discretiser of numerical_mlp on the points 1/(w+1), w = 0..N, writing w (the
number, or the one-hot of w) for widths in out_value_set and nothing for other widths.
Its input tolerance at 1/(w+1) is at least 3/16 of the smaller adjacent gap,
3 / (16 (w+1)(w+2)) >= 3 / (32 (w+1)^2), so the head's error delta/(w+1)^2 uses a sixth
of it (delta = 1/64 against 3/32). The rest is left for float32 rounding and for logits
moved by noisy query/key inputs, which shift t by about 2 D_tie t (compiler/float_bounds.py
checks both; a small c keeps D_tie, proportional to c, small). The builder checks the
inequality for every w and raises ValueError if it fails. The discretiser's gate makes
the output exactly 0 at BOS, and one extra unit relu(bos) subtracts 1 from t there, so
the BOS position is clean.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from tracr import caches
from tracr.craft import bases, transformers, vectorspace_fns
from tracr.craft.chamber import (
    _common,
    _discretising,
    categorical_attn,
    categorical_mlp,
    numerical_mlp,
)

# Relative rounding error allowed for t in the check (a few float32 epsilons).
_T_ROUNDING = 4 * float(np.finfo(np.float32).eps)


#: Attention weight the selector-width head may leak off BOS and the selected keys: it
#: moves t = 1/(w+1) by at most WIDTH_LEAKAGE / (w+1)^2, a sixth of the readout's tolerance.
WIDTH_LEAKAGE = 1.0 / 64


def selector_width_coldness(max_seq_len: int, leakage: float = WIDTH_LEAKAGE) -> float:
    """c0 = ln(max_seq_len / leakage): the least score margin per term that meets the
    leakage budget, for any number of terms (the head rounds it up to a multiple of 1/4)."""
    return math.log(_common.check_max_seq_len(max_seq_len) / leakage)


def attn_output_direction(hidden_name: bases.Name) -> bases.BasisDirection:
    """The residual direction where the head writes 1/(w+1)."""
    return bases.BasisDirection(f"{hidden_name}selector_width_attn_output")


def mean_index_direction(hidden_name: bases.Name) -> bases.BasisDirection:
    """The residual direction where a head (with `mean_index`) writes its mean index."""
    return bases.BasisDirection(f"{hidden_name}mean_index")


def _head(terms, bos_space, one_space, t_space, c, causal, mean_index=None, hidden_name=""):
    n = len(terms)
    categorical_attn.check_exact_logits((n + 1) * c, n)
    w_qk = categorical_attn.conjunction_scores(
        terms, bos_space, one_space, selected=c, one_bos=n * c, bos_bos=c
    )
    if mean_index is None:
        w_ov = vectorspace_fns.Linear(bos_space, t_space, np.ones((1, 1)))
    else:
        # value: bos -> t, and the index i (one-hot) -> the number i
        out = bases.VectorSpaceWithBasis([t_space.basis[0], mean_index_direction(hidden_name)])
        values = [d.value for d in mean_index.basis]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"mean_index must be the indices space, got values {values[:5]}")
        space = bases.join_vector_spaces(bos_space, mean_index)
        matrix = np.zeros((space.num_dims, 2))
        matrix[space.index(bos_space.basis[0]), 0] = 1.0
        matrix[space.indices(mean_index.basis), 1] = values
        w_ov = vectorspace_fns.Linear(space, out, matrix)
    return transformers.AttentionHead(w_qk, w_ov, causal=causal)


def _output_rows(widths, out_value_set, output_space, categorical_output) -> np.ndarray:
    wanted = set(out_value_set)
    rows = np.zeros((len(widths), output_space.num_dims))
    if not categorical_output:
        _common.single_direction(output_space, "output_space")
        rows[:, 0] = [w if w in wanted else 0 for w in widths]
        return rows
    index = _common.value_index(output_space, "output_space")
    for i, w in enumerate(widths):
        if w in wanted:
            rows[i, _common.output_index(index, w, "SelectorWidth", w)] = 1.0
    return rows


@functools.lru_cache(maxsize=64)
def _tolerance_holds(n: int, leakage: float) -> bool:
    """Whether every 1/(w+1), w = 0..n, computed by the head stays where the discretiser
    reads w (a fact about n alone, worked out once per n)."""
    pts, below, above = _discretising.point_margins([1.0 / (w + 1) for w in range(n + 1)])
    error = leakage * pts**2 + _T_ROUNDING * pts  # pts = 1/(w+1)
    return not np.any(error >= np.minimum(below, above))


caches.register(_tolerance_holds.cache_clear)


def _check_tolerance(n: int, leakage: float) -> None:
    if not _tolerance_holds(n, leakage):
        raise ValueError("max_seq_len is too large for an exact SelectorWidth in float32")


def conjunctive_selector_width(
    terms: Sequence[categorical_attn.AttnTerm],
    output_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    one_space: bases.VectorSpaceWithBasis,
    out_value_set: Iterable[Hashable],
    categorical_output: bool,
    *,
    max_seq_len: int,
    causal: bool = False,
    hidden_name: bases.Name,
    via_one_hot: bool = False,
    attn_output: bases.Name | None = None,
    mean_index: bases.VectorSpaceWithBasis | None = None,
) -> transformers.SeriesWithResiduals:
    """SeriesWithResiduals([head, mlp]) writing the number of keys each query selects,
    where a key is selected when it meets every term.

    mean_index (the indices space): the head also writes, to
    `mean_index_direction(hidden_name)`, the mean of the indices of BOS (which has none:
    0) and the selected keys, sum_(selected) i / (w + 1). For a selector that selects
    every key that is w (w - 1) / (2 (w + 1)), so w = 2 (m - t) + 2: the width as a
    number to within float32 rounding (~N^2 u), which readers can use instead of the
    readout's one-hot (compiler/separable_choice.py).

    via_one_hot (numerical outputs): SeriesWithResiduals([head, mlp, mlp]) instead; the
    first MLP writes the one-hot of w into hidden directions (hidden_name + "width", w),
    the second (a noise-cleaning lookup, categorical_mlp.clean_indicators) writes the
    number. One more MLP sub-layer, but the number is exact in float32 at any N: the
    one-stage readout adds up every step on one side of t, whose float32 rounding grows
    like N^3 u in the worst summation order.

    Each term's attn_fn takes values in the order (query, key). The output is the width w
    (one-hot in output_space when categorical_output, else the number) for widths in
    out_value_set; other widths write nothing; zero at BOS. Exact for every selection
    pattern of every length up to max_seq_len (proof in the module docstring).
    Residual direction used: `attn_output` (default `attn_output_direction(hidden_name)`;
    the compiler names it "<label>_selector_width_attn_output", as the reference does);
    MLP hidden directions (hidden_name, "const"), (hidden_name, (k, 0 / 1)),
    (hidden_name, "bos_cleanup").
    """
    terms = categorical_attn.check_terms(terms, "conjunctive_selector_width")
    _common.check_aux_spaces(
        bos_space,
        one_space,
        *(s for t in terms for s in (t.query_space, t.key_space)),
        output_space,
    )
    n = _common.check_max_seq_len(max_seq_len)
    t_dir = (
        attn_output_direction(hidden_name)
        if attn_output is None
        else bases.BasisDirection(attn_output)
    )
    t_space = bases.VectorSpaceWithBasis([t_dir])
    c = categorical_attn.score_coldness(selector_width_coldness(n))
    head = _head(terms, bos_space, one_space, t_space, c, causal, mean_index, hidden_name)

    widths = list(range(n + 1))
    points = [1.0 / (w + 1) for w in widths]
    _check_tolerance(n, WIDTH_LEAKAGE)
    two_stage = via_one_hot and not categorical_output
    read_space = (
        bases.VectorSpaceWithBasis.from_values(f"{hidden_name}width", widths)
        if two_stage
        else output_space
    )
    rows = _output_rows(
        widths, widths if two_stage else out_value_set, read_space, categorical_output or two_stage
    )
    read = numerical_mlp.discretising_mlp(
        t_space, read_space, points, rows, one_space, bos_space, hidden_name
    )
    cleanup_dir = bases.BasisDirection(hidden_name, "bos_cleanup")
    cleanup_space = bases.VectorSpaceWithBasis([cleanup_dir])
    cleanup = transformers.MLP(
        vectorspace_fns.Linear(bos_space, cleanup_space, np.ones((1, 1))),
        vectorspace_fns.Linear(cleanup_space, t_space, -np.ones((1, 1))),
    )
    blocks = [head, transformers.MLP.combine_in_parallel([read, cleanup])]
    if two_stage:
        wanted = set(out_value_set)
        number = categorical_mlp.map_indicator_table(
            read_space, output_space, lambda w: w if w in wanted else 0, f"{hidden_name}number"
        )
        blocks.append(categorical_mlp.clean_indicators(number, one_space))
    return transformers.SeriesWithResiduals(blocks)


def selector_width(
    query_space: bases.VectorSpaceWithBasis,
    key_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    one_space: bases.VectorSpaceWithBasis,
    attn_fn: categorical_attn.QueryKeyToBool,
    out_value_set: Iterable[Hashable],
    categorical_output: bool,
    *,
    max_seq_len: int,
    causal: bool = False,
    hidden_name: bases.Name,
    attn_output: bases.Name | None = None,
) -> transformers.SeriesWithResiduals:
    """`conjunctive_selector_width` with the single term AttnTerm(query_space, key_space,
    attn_fn): the number of keys k with attn_fn(query value, key value)."""
    return conjunctive_selector_width(
        [categorical_attn.AttnTerm(query_space, key_space, attn_fn)],
        output_space,
        bos_space,
        one_space,
        out_value_set,
        categorical_output,
        max_seq_len=max_seq_len,
        causal=causal,
        hidden_name=hidden_name,
    )
