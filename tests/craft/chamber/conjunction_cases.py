"""Shared cases for the conjunctive attention tests: small SOps whose every assignment of
values to every position is enumerated, conjunctions over them, and the exact selection
each conjunction makes, computed with numpy from the predicates' truth tables."""

from __future__ import annotations

import itertools

import numpy as np

from tests.craft import blocks
from tracr.craft import bases
from tracr.craft.chamber import categorical_attn

D = bases.BasisDirection

PREDICATES = {
    "eq": lambda q, k: q == k,
    "neq": lambda q, k: q != k,
    "lt": lambda q, k: q < k,
    "leq": lambda q, k: q <= k,
    "gt": lambda q, k: q > k,
    "true": lambda q, k: True,
}

#: Values of each small SOp; None is the zero vector (an Aggregate's default), which
#: meets no term.
SOP_VALUES = {"a": (0, 1, 2), "b": (0, 1), "c": (0, 1), "m": (0, 1, None)}

#: name -> terms (query SOp, key SOp, predicate); every case shares a space somewhere.
TWO_TERMS = {
    "earlier_same_b": [("a", "a", "gt"), ("b", "b", "eq")],  # query = key SOp in both
    "shared_query": [("a", "b", "gt"), ("a", "a", "neq")],
    "identical_spaces": [("a", "a", "leq"), ("a", "a", "neq")],
    "with_none": [("m", "a", "leq"), ("a", "m", "neq")],
}
THREE_TERMS = {
    "shared_query_and_key": [("a", "a", "gt"), ("b", "b", "eq"), ("b", "a", "leq")],
    "three_sops": [("a", "b", "neq"), ("b", "c", "eq"), ("c", "a", "lt")],
    "with_true_and_none": [("m", "m", "eq"), ("a", "m", "true"), ("a", "a", "leq")],
}
CASES = {**TWO_TERMS, **THREE_TERMS}

#: SOps of the max_seq_len = 64 cases: indices, and two SOps of ~20 values.
LARGE_SOP_VALUES = {"idx": tuple(range(64)), "tok": tuple(range(20)), "grp": tuple(range(18))}


def space(name, values):
    return bases.VectorSpaceWithBasis.from_values(name, [v for v in values if v is not None])


def make_terms(spec, values=SOP_VALUES, predicates=PREDICATES):
    return [
        categorical_attn.AttnTerm(space(q, values[q]), space(k, values[k]), predicates[p])
        for q, k, p in spec
    ]


def sops_of(spec):
    return sorted({s for q, k, _ in spec for s in (q, k)})


def every_assignment(sops, length, values=SOP_VALUES):
    """{sop: [batch, length] indices into values[sop]} for every assignment of values to
    every position."""
    sizes = [len(values[s]) for s in sops]
    combos = np.array(list(itertools.product(*map(range, sizes))), dtype=np.int64)
    seqs = np.array(list(itertools.product(range(len(combos)), repeat=length)), dtype=np.int64)
    picked = combos[seqs]  # [batch, length, len(sops)]
    return {s: picked[..., i] for i, s in enumerate(sops)}


def selection(spec, idx, causal, values=SOP_VALUES, predicates=PREDICATES):
    """[batch, length (query), length (key)]: the key meets every term of spec."""
    batch, length = next(iter(idx.values())).shape
    selected = np.ones((batch, length, length), bool)
    for q, k, p in spec:
        table = np.array(
            [
                [qv is not None and kv is not None and predicates[p](qv, kv) for kv in values[k]]
                for qv in values[q]
            ]
        )
        selected &= table[idx[q][:, :, None], idx[k][:, None, :]]
    if causal:
        selected &= np.tril(np.ones((length, length), bool))
    return selected


def embed(residual, idx, values=SOP_VALUES):
    """[batch, 1 + length, d]: BOS at position 0 (one = bos = 1), then one = 1 and the
    one-hot of every SOp's value (nothing for None)."""
    batch, length = next(iter(idx.values())).shape
    x = np.zeros((batch, 1 + length, residual.num_dims))
    x[:, :, residual.index(blocks.ONE)] = 1.0
    x[:, 0, residual.index(blocks.BOS)] = 1.0
    b, p = np.indices((batch, length))
    for sop, ids in idx.items():
        cols = np.array([residual.index(D(sop, v)) if v is not None else -1 for v in values[sop]])
        hot = cols[ids] >= 0
        x[b[hot], 1 + p[hot], cols[ids][hot]] = 1.0
    return x
