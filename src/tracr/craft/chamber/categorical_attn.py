"""Attention head for Aggregate with a selector on categorical queries and keys.

Scores (q, k are one-hot query/key vectors; one and bos the auxiliary directions):

    W_qk(x_q, x_k) = c [attn_fn(q, k)]  +  (c / 2) one_q bos_k  +  c bos_q bos_k

so a non-BOS query q scores c on every selected key, c/2 on the BOS key and 0 on the
rest; the BOS query scores 3c/2 on the BOS key and 0 elsewhere. The BOS position's values
are zero (the BOS invariant), so attending to BOS outputs zero = the default (None for a
categorical, 0 for a numerical SOp).

Coldness. With N = max_seq_len (so at most N non-BOS keys) and the leakage budget
delta = ATTENTION_LEAKAGE = 1e-9, c = 2 ln(N / delta). For a non-BOS query with m
selected and u <= N unselected visible keys, the weight outside the intended set is

    m >= 1:  (e^(c/2) + u) / (m e^c + e^(c/2) + u)  <=  e^(-c/2) + N e^(-c)  <=  delta
    m  = 0:  u / (e^(c/2) + u)                      <=  N e^(-c/2)         =  delta

and the BOS query leaks at most N e^(-3c/2) < delta. Selected keys share one logit, so
their weights are exactly equal: output = (1 - l) * mean(selected values) + leaked part
with l <= delta, hence |output - mean| <= 2 delta max|value|. Logits stay below
3 ln(N / delta) (76 at N = 100), harmless in float32 once the row max is subtracted.
Query/key inputs off their one-hot by e shift logits by up to c e; keep e << 1/c.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns
from tracr.craft.chamber import _common

QueryKeyToBool = Callable[[Hashable, Hashable], bool]


def attention_coldness(max_seq_len: int, leakage: float = _common.ATTENTION_LEAKAGE) -> float:
    """c = 2 ln(max_seq_len / leakage): the score of a selected key (module docstring)."""
    return 2.0 * math.log(_common.check_max_seq_len(max_seq_len) / leakage)


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
    cols = [index[d.value] for d in value_space.basis]
    return vectorspace_fns.Linear.from_index_arrays(
        value_space, output_space, np.arange(value_space.num_dims), cols, 1.0
    )


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
    """Head averaging value_space over the keys k with attn_fn(query value, key value).

    attn_fn takes VALUES in the order (query, key). A query that selects no key attends
    to BOS and outputs zero. w_ov maps (value_name, v) to (output_name, v): one-hot in,
    one-hot (or the mean of one-hots) out for a categorical Aggregate; for a numerical
    one both spaces are one direction (name, None) and the output is the mean of the
    selected numbers. Guarantee (module docstring): attention weight outside the intended
    keys <= 1e-9, so |output - exact mean| <= 2e-9 max|value|; zero output at BOS.
    """
    _common.check_aux_spaces(
        bos_space, one_space, query_space, key_space, value_space, output_space
    )
    c = attention_coldness(max_seq_len)
    w_qk = _common.selection_scores(
        query_space, key_space, bos_space, one_space, attn_fn, selected=c, one_bos=c / 2, bos_bos=c
    )
    w_ov = value_to_output_map(value_space, output_space)
    return transformers.AttentionHead(w_qk, w_ov, causal=causal)
