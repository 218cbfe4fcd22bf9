"""categorical_attn: every (query, key) pattern up to length 3, and length-100 sequences
over 100 x 100 values, through craft, float32 and float64."""

from __future__ import annotations

import itertools
import math
import operator

import numpy as np
import pytest

from tests.craft import blocks
from tracr.craft import bases
from tracr.craft.chamber import _common, categorical_attn

D = bases.BasisDirection
PREDICATES = {
    "eq": lambda q, k: q == k,
    "lt": lambda q, k: q < k,
    "true": lambda q, k: True,
    "false": lambda q, k: False,
}


def _space(name, values):
    return bases.VectorSpaceWithBasis.from_values(name, values)


def _selected(qs, ks, attn_fn, causal):
    """Per non-BOS position i, the positions (1-based) its query selects."""
    return [
        [
            j + 1
            for j, k in enumerate(ks)
            if (not causal or j <= i) and q is not None and k is not None and attn_fn(q, k)
        ]
        for i, q in enumerate(qs)
    ]


def _rows(qs, ks, vs, numerical):
    rows = []
    for q, k, v in zip(qs, ks, vs):
        row = {}
        if q is not None:
            row[D("q", q)] = 1.0
        if k is not None:
            row[D("k", k)] = row.get(D("k", k), 0.0) + 1.0
        if numerical:
            row[D("v")] = v
        elif v is not None:
            row[D("v", v)] = 1.0
        rows.append(row)
    return rows


def _check(head, seqs, attn_fn, causal, numerical, values, leakage_check=True):
    """Run head on every sequence in seqs [(qs, ks, vs)] and compare with exact means."""
    out_space = bases.VectorSpaceWithBasis([D("o")]) if numerical else _space("o", values)
    residual = blocks.residual_with(head, out_space)
    x = blocks.sequences(residual, [_rows(*s, numerical) for s in seqs])
    expected = np.zeros(x.shape[:2] + (out_space.num_dims,))
    for b, (qs, ks, vs) in enumerate(seqs):
        for i, chosen in enumerate(_selected(qs, ks, attn_fn, causal), start=1):
            if not chosen:
                continue
            if numerical:
                expected[b, i, 0] = np.mean([vs[j - 1] for j in chosen])
            else:
                for j in chosen:
                    expected[b, i, values.index(vs[j - 1])] += 1 / len(chosen)
    cols = residual.indices(out_space.basis)
    for result in blocks.run_all(head, x, residual).values():
        blocks.assert_numbers(result[..., cols], expected)
        others = np.delete(result, cols, axis=-1)
        assert np.all(others == 0)
    if leakage_check:
        weights = head.attn_weights(residual.make_vector(x).project(head.residual_space))
        for b, (qs, ks, _) in enumerate(seqs):
            for i, chosen in enumerate(_selected(qs, ks, attn_fn, causal), start=1):
                outside = np.ones(x.shape[1], bool)
                outside[chosen or [0]] = False
                assert weights[b, i, outside].sum() <= 1e-9
            assert weights[b, 0, 1:].sum() <= 1e-9


@pytest.mark.parametrize("predicate", sorted(PREDICATES))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("numerical", [False, True])
def test_every_pattern_up_to_length_three(predicate, causal, numerical):
    qvals, kvals, vvals = [0, 1, 2], [0, 1, 2], ["a", "b", "c"]
    attn_fn = PREDICATES[predicate]
    out = bases.VectorSpaceWithBasis([D("o")]) if numerical else _space("o", vvals)
    value_space = bases.VectorSpaceWithBasis([D("v")]) if numerical else _space("v", vvals)
    head = categorical_attn.categorical_attn(
        _space("q", qvals),
        _space("k", kvals),
        value_space,
        out,
        blocks.BOS_SPACE,
        blocks.ONE_SPACE,
        attn_fn,
        max_seq_len=3,
        causal=causal,
    )
    seqs = []
    for length in (1, 2, 3):
        for qs in itertools.product(qvals + [None], repeat=length):
            for ks in itertools.product(kvals + [None], repeat=length):
                vs = [(-2.5 + 3 * p) if numerical else vvals[p] for p in range(length)]
                seqs.append((list(qs), list(ks), vs))
        by_length = [s for s in seqs if len(s[0]) == length]
        _check(head, by_length, attn_fn, causal, numerical, vvals)


def test_query_and_key_from_the_same_sop():
    space = _space("k", [0, 1, 2])
    head = categorical_attn.categorical_attn(
        space,
        space,
        _space("v", ["a", "b"]),
        _space("o", ["a", "b"]),
        blocks.BOS_SPACE,
        blocks.ONE_SPACE,
        lambda q, k: q == k,
        max_seq_len=4,
    )
    residual = blocks.residual_with(head)
    ks, vs = [0, 1, 0, 2], ["a", "b", "b", "a"]
    x = blocks.sequences(residual, [[{D("k", k): 1.0, D("v", v): 1.0} for k, v in zip(ks, vs)]])
    cols = residual.indices(_space("o", ["a", "b"]).basis)
    expected = [[0, 0], [0.5, 0.5], [0, 1], [0.5, 0.5], [1, 0]]
    for result in blocks.run_all(head, x, residual).values():
        blocks.assert_numbers(result[0][:, cols], np.array(expected, float))


@pytest.mark.parametrize("predicate", ["eq", "lt", "true"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("numerical", [False, True])
def test_length_100_over_100_values(predicate, causal, numerical):
    n = 100
    rng = np.random.default_rng(7)
    values = list(range(n))
    attn_fn = PREDICATES[predicate]
    out = bases.VectorSpaceWithBasis([D("o")]) if numerical else _space("o", values)
    value_space = bases.VectorSpaceWithBasis([D("v")]) if numerical else _space("v", values)
    head = categorical_attn.categorical_attn(
        _space("q", values),
        _space("k", values),
        value_space,
        out,
        blocks.BOS_SPACE,
        blocks.ONE_SPACE,
        attn_fn,
        max_seq_len=n,
        causal=causal,
    )
    seqs = []
    for _ in range(3):
        qs, ks = rng.integers(0, n, n).tolist(), rng.integers(0, n, n).tolist()
        vs = rng.normal(0, 10, n).tolist() if numerical else rng.integers(0, n, n).tolist()
        seqs.append((qs, ks, vs))
    seqs.append(([5] * n, [5] * n, seqs[0][2]))  # everything selected under eq
    _check(head, seqs, attn_fn, causal, numerical, values)


def test_coldness_follows_max_seq_len():
    assert categorical_attn.attention_coldness(100) == pytest.approx(2 * math.log(100 / 1e-9))
    assert categorical_attn.attention_coldness(1) < categorical_attn.attention_coldness(1000)
    with pytest.raises(ValueError, match="max_seq_len"):
        categorical_attn.attention_coldness(0)


def test_value_without_output_direction_is_named():
    with pytest.raises(ValueError, match="v:c"):
        categorical_attn.categorical_attn(
            _space("q", [1]),
            _space("k", [1]),
            _space("v", ["a", "c"]),
            _space("o", ["a"]),
            blocks.BOS_SPACE,
            blocks.ONE_SPACE,
            lambda q, k: True,
            max_seq_len=2,
        )


def test_bos_must_not_be_an_sop_direction():
    with pytest.raises(ValueError, match="bos"):
        categorical_attn.categorical_attn(
            blocks.BOS_SPACE,
            _space("k", [1]),
            _space("v", ["a"]),
            _space("o", ["a"]),
            blocks.BOS_SPACE,
            blocks.ONE_SPACE,
            lambda q, k: True,
            max_seq_len=2,
        )


def _loop_pairs(query_space, key_space, attn_fn):
    return {
        (i, j)
        for i, q in enumerate(query_space.basis)
        for j, k in enumerate(key_space.basis)
        if attn_fn(q.value, k.value)
    }


@pytest.mark.parametrize(
    "queries, keys",
    [
        (list("abcz"), list("bcdz")),  # strings: looked up in a dict
        ([1, 2.5, "a", False], [1.0, 2, "a", "b", 0]),  # mixed plain values
        ([float("nan"), 1.0, "x"], [float("nan"), 1, "y"]),  # NaN: left to the loop
        ([(1, 2), "a"], [(1, 2), "a"]),  # tuples: left to the loop
    ],
)
def test_selected_mask_fast_paths_select_what_the_predicate_selects(queries, keys):
    def eq(q, k):
        return k == q

    eq.numpy_op = operator.eq

    def every(q, k):
        return True

    every.selects_all = True
    query_space, key_space = _space("q", queries), _space("k", keys)
    for attn_fn in (eq, every):
        q_idx, k_idx = np.nonzero(_common.selected_mask(query_space, key_space, attn_fn))
        assert set(zip(q_idx.tolist(), k_idx.tolist())) == _loop_pairs(
            query_space, key_space, attn_fn
        )
