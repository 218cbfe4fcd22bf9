"""The exactness suites again, with every dot product summed in orders BLAS does not use
(tests/transformer/adversarial.py): reversed, pairwise, largest first, and fused
multiply-adds. The compiler's guarantees are proven for any order, so these must agree
with the evaluator exactly as the numpy forward does."""

from __future__ import annotations

import pytest

from tests import cases
from tests.compiler import exactness, test_exact_at_scale
from tests.transformer import adversarial
from tracr.compiler import compiling

ORDERS = adversarial.ORDERS


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_shared_cases_in_every_order(case):
    program = case.make_program()
    model = compiling.compile_rasp_to_model(
        program, vocab=case.vocab, max_seq_len=case.max_seq_len, compiler_bos="BOS"
    )
    sequences = [list(xs) for xs in case.inputs]
    sequences += exactness.sampled_sequences(case.vocab, case.max_seq_len, per_length=4)
    for order in ORDERS:
        assert exactness.adversarial_mismatches(model, program, sequences, order) == [], order


@pytest.mark.parametrize(
    "name,make,vocab", test_exact_at_scale.LARGE, ids=[c[0] for c in test_exact_at_scale.LARGE]
)
def test_lib_programs_at_seq_len_16_in_every_order(name, make, vocab):
    program = make()
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=16, compiler_bos="BOS"
    )
    # One input per length (two for the smaller models): the reordered forward is slow.
    per_length = 1 if len(model.residual_labels) > 200 else 2
    sequences = exactness.sampled_sequences(vocab, 16, per_length=per_length, seed=3)
    if name == "sort_unique":
        sequences = test_exact_at_scale._unique_sequences(per_length, 16, seed=3)
    for order in ORDERS:
        assert exactness.adversarial_mismatches(model, program, sequences, order) == [], order


@pytest.mark.parametrize("name,make,vocab", test_exact_at_scale.CAUSAL[:3])
def test_causal_models_in_every_order(name, make, vocab):
    program = make()
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=8, causal=True, compiler_bos="BOS"
    )
    sequences = exactness.sampled_sequences(vocab, 8, per_length=3)
    for order in ORDERS:
        found = exactness.adversarial_mismatches(model, program, sequences, order, causal=True)
        assert found == [], order
