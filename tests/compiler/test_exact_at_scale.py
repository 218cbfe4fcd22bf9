"""The exactness promise at the sizes where the reference compiler breaks.

The reference gets 58% of inputs right for make_length and make_reverse at max_seq_len
16, and 82% for make_sort_unique; ours must get every input right, in float32.
"""

from __future__ import annotations

import pytest

from tests import cases
from tests.compiler import exactness
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

VOCAB16 = set(range(16))


def _unique_sequences(per_length, max_len, seed=0):
    import random

    rng = random.Random(seed)
    return [
        rng.sample(sorted(VOCAB16), n) for n in range(1, max_len + 1) for _ in range(per_length)
    ]


LARGE = [
    ("length", lambda: lib.make_length(), VOCAB16),
    ("reverse", lambda: lib.make_reverse(rasp.tokens), VOCAB16),
    ("hist", lambda: lib.make_hist(), VOCAB16),
    ("sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), VOCAB16),
    ("sort", lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=16, min_key=1), VOCAB16),
    ("frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == 3), VOCAB16),
    ("count_less_freq", lambda: lib.make_count_less_freq(2), VOCAB16),
    ("count", lambda: lib.make_count(rasp.tokens, 5), VOCAB16),
    ("sort_freq", lambda: lib.make_sort_freq(16), VOCAB16),
    ("pair_balance", lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), {"(", ")", "a"}),
    ("shuffle_dyck2", lambda: lib.make_shuffle_dyck2(), {"(", ")", "{", "}"}),
    ("detect_pattern", lambda: lib.detect_pattern(rasp.tokens, "abc"), {"a", "b", "c"}),
    ("shift_by", lambda: lib.shift_by(2, rasp.tokens), VOCAB16),
    (
        "earlier_same_token",
        lambda: cases.CASES_BY_NAME["earlier_same_token"].make_program(),
        set("abcd"),
    ),
    (
        "previous_same_token_index",
        lambda: cases.CASES_BY_NAME["previous_same_token_index"].make_program(),
        set("abcd"),
    ),
]


@pytest.mark.parametrize("name,make,vocab", LARGE, ids=[c[0] for c in LARGE])
def test_lib_program_exact_at_seq_len_16(name, make, vocab):
    program = make()
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=16, compiler_bos="BOS"
    )
    if name == "sort_unique":
        sequences = _unique_sequences(300, 16)
    else:
        sequences = exactness.sampled_sequences(vocab, 16, per_length=300)
    assert exactness.mismatches(model, program, sequences) == []


@pytest.mark.parametrize(
    "name,make",
    [
        ("length", lambda: lib.make_length()),
        ("reverse", lambda: lib.make_reverse(rasp.tokens)),
        ("frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "a")),
        ("hist", lambda: lib.make_hist()),
    ],
)
def test_lib_program_exact_at_seq_len_32(name, make):
    program = make()
    vocab = {"a", "b", "c"}
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=32, compiler_bos="BOS"
    )
    sequences = exactness.sampled_sequences(vocab, 32, per_length=300, seed=1)
    assert exactness.mismatches(model, program, sequences) == []


CAUSAL = [
    ("frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "a"), {"a", "b"}),
    ("prefix_length", lambda: lib.make_length(), {"a", "b"}),
    ("pair_balance", lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), {"(", ")"}),
    ("shift_by", lambda: lib.shift_by(1, rasp.tokens), {"a", "b"}),
    ("hist", lambda: lib.make_hist(), {"a", "b", "c"}),
    (
        "earlier_same_token",
        lambda: cases.CASES_BY_NAME["earlier_same_token"].make_program(),
        {"a", "b"},
    ),
]


@pytest.mark.parametrize("name,make,vocab", CAUSAL, ids=[c[0] for c in CAUSAL])
def test_causal_model_agrees_with_causal_eval(name, make, vocab):
    program = make()
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=8, causal=True, compiler_bos="BOS"
    )
    assert model.model_config.causal
    sequences = (
        exactness.all_sequences(vocab, 6) if len(vocab) <= 2 else exactness.all_sequences(vocab, 5)
    )
    sequences += exactness.sampled_sequences(vocab, 8, per_length=50)
    assert exactness.mismatches(model, program, sequences, causal=True) == []


def _numerical_length_map(f):
    length = rasp.numerical(lib.make_length())
    return rasp.numerical(rasp.Map(f, length, simplify=False))


@pytest.mark.parametrize(
    "f,max_seq_len",
    [(lambda n: n + 1, 100), (lambda n: 3 - 2 * n, 100), (lambda n: 1 / n, 32)],
    ids=["plus1", "affine", "inv"],
)
def test_numerical_map_of_many_values_is_exact(f, max_seq_len):
    """An affine Map needs no discretisation; 1/n is discretised within float32 budget."""
    program = _numerical_length_map(f)
    model = compiling.compile_rasp_to_model(
        program, vocab={"a"}, max_seq_len=max_seq_len, compiler_bos="BOS"
    )
    sequences = [["a"] * n for n in range(1, max_seq_len + 1)]
    assert exactness.mismatches(model, program, sequences) == []


@pytest.mark.parametrize("max_seq_len", [13, 15])
def test_shuffle_dyck_at_lengths_once_refused_is_exact_in_every_order(max_seq_len):
    """At these lengths has_neg, the share of positions where a balance went negative,
    takes values (4/13 and 10/13 at 13) on the ramps of not_has_neg's discretiser step
    between 1/13 and 1. That step writes nothing (its two outputs are equal), so it may
    switch; the compiler refused these lengths while it counted such units. Inputs with
    every count of negative positions are checked, in every summation order."""
    from tests.transformer import adversarial

    program = lib.make_shuffle_dyck2()
    model = compiling.compile_rasp_to_model(
        program, vocab=set("(){}"), max_seq_len=max_seq_len, compiler_bos="BOS"
    )
    n = max_seq_len
    # k leading ")" make the first k balances negative; "(" and "{" fill the rest.
    sequences = [[")"] * k + ["(", "{"] * n for k in range(n + 1)]
    sequences = [s[:n] for s in sequences]
    sequences += [s[:n] for s in (["(", ")"] * n, ["{", "(", ")", "}"] * n, ["}"] * n)]
    sequences += exactness.sampled_sequences(set("(){}"), n, per_length=2)
    assert exactness.mismatches(model, program, sequences) == []
    for order in adversarial.ORDERS:
        assert exactness.adversarial_mismatches(model, program, sequences, order) == [], order


def test_sort_freq_at_a_length_that_once_crashed_the_bounds_is_exact():
    """make_sort_freq at max_seq_len 12 (and 31, 35) once failed with a numpy casting
    error in the MLP bounds (a block with every unit off on a chunk of rows)."""
    program = lib.make_sort_freq(12)
    vocab = {1, 2, 3, 4}
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=12, compiler_bos="BOS"
    )
    sequences = exactness.sampled_sequences(vocab, 12, per_length=8)
    assert exactness.mismatches(model, program, sequences) == []
