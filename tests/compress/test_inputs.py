"""The valid inputs of a model: enumerated when few, sampled otherwise, invalid ones dropped."""

from __future__ import annotations

import numpy as np

from tests.compress import helpers
from tracr.compiler import compiling
from tracr.compress import inputs
from tracr.rasp import rasp


def test_small_spaces_are_enumerated():
    data = inputs.valid_inputs(helpers.frac_prevs(), np.random.default_rng(0), 100)
    assert data.exhaustive
    assert len(data) == 2 + 4 + 8
    decoded = inputs.decode_inputs(helpers.frac_prevs(), data)
    assert ["BOS", "y", "x", "x"] in decoded
    assert all(seq[0] == "BOS" for seq in decoded)


def test_large_spaces_are_sampled_with_the_seed():
    model = helpers.frac_prevs(5)  # 62 inputs
    first = inputs.valid_inputs(model, np.random.default_rng(3), 20)
    again = inputs.valid_inputs(model, np.random.default_rng(3), 20)
    assert not first.exhaustive
    assert 1 <= len(first) <= 20
    assert np.array_equal(first.token_ids, again.token_ids)


def test_inputs_the_program_cannot_handle_are_dropped():
    # The Aggregate averages the indices of equal tokens: any repeated token makes it
    # hold a mixture, which `apply` refuses. Distinct tokens remain: a, b, ab, ba.
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    program = rasp.Aggregate(same_token, rasp.indices)
    model = compiling.compile_rasp_to_model(program, {"a", "b"}, 3, compiler_bos="BOS")
    data = inputs.valid_inputs(model, np.random.default_rng(0), 1000)
    assert sorted(inputs.decode_inputs(model, data)) == sorted(
        [["BOS", "a"], ["BOS", "b"], ["BOS", "a", "b"], ["BOS", "b", "a"]]
    )
