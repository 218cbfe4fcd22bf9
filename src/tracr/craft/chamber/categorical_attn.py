"""Attention heads for Aggregate with a selector on categorical queries and keys.

A selector is a conjunction of n >= 1 terms (query_t, key_t, attn_fn_t), each comparing
its own query SOp with its own key SOp (n = 1 is a plain Select; `&` of Selects over
different SOps gives n > 1). With q_t, k_t the one-hot query/key vectors of term t and
one, bos the auxiliary directions, the scores are

    W_qk(x_q, x_k) = c sum_t [attn_fn_t(q_t, k_t)]  +  (n - 1/2) c one_q bos_k  +  c bos_q bos_k

on (join of the query spaces + one + bos) x (join of the key spaces + bos). Terms that
share a query or key space (or both) add their blocks into the same entries. A non-BOS
query scores nc on a key meeting every term (a selected key), at most (n - 1) c on any
other key, and (n - 1/2) c on the BOS key, whose SOp subspaces are all zero; the BOS query
scores (n + 1/2) c on the BOS key and 0 elsewhere. A zero query or key vector (a None
value) meets no term. The BOS position's values are zero (the BOS invariant), so
attending to BOS outputs zero = the default (None for a categorical, 0 for a numerical SOp).

Coldness. The margins do not depend on n: a selected key beats every other non-BOS key by
at least c and BOS by c/2, and BOS beats every unselected key by at least c/2. So with
N = max_seq_len (at most N non-BOS keys) and the leakage budget delta = ATTENTION_LEAKAGE
= 1e-9, c >= c0 = 2 ln(N / delta) for every n. For a non-BOS query with m selected and
u <= N - m other visible keys, the weight outside the selected set is

    m >= 1:  <= (e^(-c/2) + u e^(-c)) / m  <=  delta / N + (N - 1) delta^2 / N^2  <=  delta
    m  = 0:  <= u e^((n-1)c) / e^((n-1/2)c) = u e^(-c/2)  <=  delta

and the BOS query leaks at most N e^(-(n+1/2)c) < delta. Selected keys share one logit, so
their weights are equal: output = (1 - l) mean(selected values) + leaked part, l <= delta,
hence |output - mean| <= 2 delta max|value|.

float32. c is c0 rounded up to a multiple of 1/4 (`score_coldness`), so every entry of
W_qk and every partial sum of a logit over one-hot inputs is a multiple of 1/8 below
2^21: exact in float32 whatever the summation order, and selected keys get bit-identical
logits for any n. Logits stay below (n + 1/2)(c0 + 1/4) (51 (n + 1/2) at N = 100); the
softmax subtracts the row max. Query/key inputs off their one-hot by e shift logits by up
to n c e; keep e << 1/(n c).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns
from tracr.craft.chamber import _common

QueryKeyToBool = Callable[[Hashable, Hashable], bool]

#: Scores are multiples of SCORE_STEP / 2; sums of them below 2^21 are exact in float32.
SCORE_STEP = 0.25
_MAX_EXACT_LOGIT = 2.0**21


@dataclasses.dataclass(frozen=True)
class AttnTerm:
    """One term of a conjunctive selector: attn_fn(query value, key value) on the values
    of query_space (one SOp) and key_space (one SOp, possibly the same)."""

    query_space: bases.VectorSpaceWithBasis
    key_space: bases.VectorSpaceWithBasis
    attn_fn: QueryKeyToBool

    def __post_init__(self) -> None:
        for what in ("query_space", "key_space"):
            space = getattr(self, what)
            if not isinstance(space, bases.VectorSpaceWithBasis):
                raise TypeError(f"AttnTerm.{what} must be a VectorSpaceWithBasis, got {space!r}")
        if not callable(self.attn_fn):
            raise TypeError(f"AttnTerm.attn_fn must be callable, got {self.attn_fn!r}")


def attention_coldness(max_seq_len: int, leakage: float = _common.ATTENTION_LEAKAGE) -> float:
    """c0 = 2 ln(max_seq_len / leakage): the least score margin per term that meets the
    leakage budget, for any number of terms (module docstring)."""
    return 2.0 * math.log(_common.check_max_seq_len(max_seq_len) / leakage)


def score_coldness(coldness: float) -> float:
    """coldness rounded up to a multiple of SCORE_STEP (float32-exact scores)."""
    return math.ceil(coldness / SCORE_STEP) * SCORE_STEP


def check_terms(terms: Sequence[AttnTerm], what: str) -> tuple[AttnTerm, ...]:
    """The terms as a tuple; ValueError if there are none, TypeError for a non-AttnTerm."""
    terms = tuple(terms)
    if not terms:
        raise ValueError(f"{what} needs at least one AttnTerm, got none")
    for i, term in enumerate(terms):
        if not isinstance(term, AttnTerm):
            raise TypeError(f"{what}: terms[{i}] must be an AttnTerm, got {term!r}")
    return terms


def conjunction_scores(
    terms: Sequence[AttnTerm],
    bos_space: bases.VectorSpaceWithBasis,
    one_space: bases.VectorSpaceWithBasis,
    *,
    selected: float,
    one_bos: float,
    bos_bos: float,
) -> vectorspace_fns.ScalarBilinear:
    """W_qk = selected sum_t [attn_fn_t(q_t, k_t)] + one_bos one_q bos_k + bos_bos bos_q bos_k
    on (join of query spaces + one + bos) x (join of key spaces + bos); blocks of terms
    sharing spaces accumulate."""
    bos, one = bos_space.basis[0], one_space.basis[0]
    left = bases.join_vector_spaces(*(t.query_space for t in terms), one_space, bos_space)
    right = bases.join_vector_spaces(*(t.key_space for t in terms), bos_space)
    matrix = np.zeros((left.num_dims, right.num_dims))  # [L, R]
    for term in terms:  # in order: entries of terms sharing spaces add up
        mask = _common.selected_mask(term.query_space, term.key_space, term.attn_fn)
        rows = left.indices(term.query_space.basis)[:, None]
        matrix[rows, right.indices(term.key_space.basis)] += mask * float(selected)
    matrix[left.index(one), right.index(bos)] += one_bos  # no term reads one or bos
    matrix[left.index(bos), right.index(bos)] += bos_bos
    return vectorspace_fns.ScalarBilinear(left, right, matrix)


def check_exact_logits(max_logit: float, num_terms: int) -> None:
    """ValueError if logits of this size are no longer exact in float32."""
    if max_logit >= _MAX_EXACT_LOGIT:
        raise ValueError(
            f"a conjunction of {num_terms} terms needs logits up to {max_logit:.4g}, beyond "
            f"the float32-exact range {_MAX_EXACT_LOGIT:.4g}"
        )


def value_to_output_map(
    value_space: bases.VectorSpaceWithBasis, output_space: bases.VectorSpaceWithBasis
) -> vectorspace_fns.Linear:
    """w_ov: (value_name, v) -> (output_name, v) for every value v of value_space."""
    index = _common.value_index(output_space, "output_space")
    missing = [str(d) for d in value_space.basis if d.value not in index]
    if missing:
        raise ValueError(
            f"Aggregate: value directions {missing} have no output direction with the same "
            f"value in output_space {[str(d) for d in output_space.basis]}"
        )
    matrix = np.zeros((value_space.num_dims, output_space.num_dims))  # one 1 per row
    cols = np.array([index[d.value] for d in value_space.basis], dtype=np.int64)
    matrix[np.arange(value_space.num_dims), cols] = 1.0
    return vectorspace_fns.Linear(value_space, output_space, matrix)


def conjunctive_attn(
    terms: Sequence[AttnTerm],
    value_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    one_space: bases.VectorSpaceWithBasis,
    *,
    max_seq_len: int,
    causal: bool = False,
) -> transformers.AttentionHead:
    """Head averaging value_space over the keys that meet every term.

    Each term's attn_fn takes VALUES in the order (query, key). A query that selects no
    key attends to BOS and outputs zero. w_ov maps (value_name, v) to (output_name, v):
    one-hot in, one-hot (or the mean of one-hots) out for a categorical Aggregate; for a
    numerical one both spaces are one direction (name, None) and the output is the mean of
    the selected numbers. Guarantee (module docstring): attention weight outside the
    intended keys <= 1e-9, so |output - exact mean| <= 2e-9 max|value|; zero output at BOS.
    """
    terms = check_terms(terms, "conjunctive_attn")
    _common.check_aux_spaces(
        bos_space,
        one_space,
        *(s for t in terms for s in (t.query_space, t.key_space)),
        value_space,
        output_space,
    )
    n, c = len(terms), score_coldness(attention_coldness(max_seq_len))
    check_exact_logits((n + 0.5) * c, n)
    w_qk = conjunction_scores(
        terms, bos_space, one_space, selected=c, one_bos=(n - 0.5) * c, bos_bos=c
    )
    w_ov = value_to_output_map(value_space, output_space)
    return transformers.AttentionHead(w_qk, w_ov, causal=causal)


def categorical_attn(
    query_space: bases.VectorSpaceWithBasis,
    key_space: bases.VectorSpaceWithBasis,
    value_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    one_space: bases.VectorSpaceWithBasis,
    attn_fn: QueryKeyToBool,
    *,
    max_seq_len: int,
    causal: bool = False,
) -> transformers.AttentionHead:
    """`conjunctive_attn` with the single term AttnTerm(query_space, key_space, attn_fn):
    the head averaging value_space over the keys k with attn_fn(query value, key value)."""
    return conjunctive_attn(
        [AttnTerm(query_space, key_space, attn_fn)],
        value_space,
        output_space,
        bos_space,
        one_space,
        max_seq_len=max_seq_len,
        causal=causal,
    )
