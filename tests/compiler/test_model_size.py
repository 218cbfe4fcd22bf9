"""Our compiled models are never larger than the reference's (layers / d_model)."""

from __future__ import annotations

import pytest

from tracr.compiler import compiling, lib
from tracr.rasp import rasp

LETTERS = {"a", "b", "c", "d"}
NUMBERS = {1, 2, 3, 4}

# (name, program factory, vocab, max_seq_len, reference layers, reference d_model)
REFERENCE_SIZES = [
    ("make_length", lambda: lib.make_length(), LETTERS, 3, 1, 15),
    ("make_reverse", lambda: lib.make_reverse(rasp.tokens), LETTERS, 5, 4, 43),
    ("make_hist", lambda: lib.make_hist(), LETTERS, 5, 1, 19),
    ("make_sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), NUMBERS, 5, 2, 23),
    (
        "make_sort",
        lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
        NUMBERS,
        5,
        3,
        43,
    ),
    ("make_sort_freq", lambda: lib.make_sort_freq(5), NUMBERS, 5, 5, 66),
    ("make_frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "l"), set("helo"), 5, 2, 14),
    (
        "make_pair_balance",
        lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
        set("abc()"),
        10,
        2,
        23,
    ),
    ("make_shuffle_dyck2", lambda: lib.make_shuffle_dyck2(), set("(){}"), 5, 8, 55),
    (
        "make_shuffle_dyck",
        lambda: lib.make_shuffle_dyck(["()", "{}", "[]"]),
        set("(){}[]"),
        6,
        9,
        73,
    ),
    ("detect_pattern", lambda: lib.detect_pattern(rasp.tokens, "abc"), set("abc"), 6, 3, 26),
    (
        "make_nary_sequencemap",
        lambda: lib.make_nary_sequencemap(
            lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
        ),
        {1, 2, 3},
        5,
        3,
        74,
    ),
]


@pytest.mark.parametrize(
    "name,make,vocab,max_seq_len,layers,d_model",
    REFERENCE_SIZES,
    ids=[r[0] for r in REFERENCE_SIZES],
)
def test_never_larger_than_reference(name, make, vocab, max_seq_len, layers, d_model):
    model = compiling.compile_rasp_to_model(make(), vocab=vocab, max_seq_len=max_seq_len)
    assert model.model_config.num_layers <= layers
    assert len(model.residual_labels) <= d_model


LETTERS16 = {chr(ord("a") + i) for i in range(16)}

# (name, program factory, vocab, max_seq_len, reference layers, reference parameters),
# the reference (tracr-pypi) compiled with compiler_bos="BOS".
REFERENCE_PARAMS = [
    ("frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "a"), LETTERS16, 16, 2, 7029),
    (
        "pair_balance",
        lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
        set("abcdefghijklmn()"),
        16,
        2,
        13944,
    ),
    ("detect_pattern", lambda: lib.detect_pattern(rasp.tokens, "abc"), LETTERS16, 16, 3, 25283),
    ("detect_pattern_5", lambda: lib.detect_pattern(rasp.tokens, "abc"), LETTERS16, 5, 3, 9036),
    ("count_less_freq", lambda: lib.make_count_less_freq(2), LETTERS16, 16, 2, 23399),
    ("hist", lambda: lib.make_hist(), LETTERS16, 16, 1, 9469),
    ("shift_by", lambda: lib.shift_by(2, rasp.tokens), LETTERS16, 16, 1, 5716),
    ("reverse", lambda: lib.make_reverse(rasp.tokens), LETTERS16, 16, 4, 368975),
    (
        "sort_unique",
        lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
        set(range(16)),
        16,
        2,
        22187,
    ),
    ("shuffle_dyck2", lambda: lib.make_shuffle_dyck2(), set("(){}"), 16, 8, 3079592),
    ("sort_freq_5", lambda: lib.make_sort_freq(5), NUMBERS, 5, 5, 64122),
    ("sort_freq", lambda: lib.make_sort_freq(16), set(range(16)), 16, 5, 3105590),
]


@pytest.mark.parametrize(
    "name,make,vocab,max_seq_len,layers,params",
    REFERENCE_PARAMS,
    ids=[r[0] for r in REFERENCE_PARAMS],
)
def test_never_more_parameters_than_reference(name, make, vocab, max_seq_len, layers, params):
    model = compiling.compile_rasp_to_model(
        make(), vocab=vocab, max_seq_len=max_seq_len, compiler_bos="BOS"
    )
    assert model.model_config.num_layers <= layers
    assert sum(a.size for module in model.params.values() for a in module.values()) <= params
