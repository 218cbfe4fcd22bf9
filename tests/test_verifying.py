"""tracr.verifying: the model against the evaluator on every input, or a seeded sample."""

from __future__ import annotations

import pytest

from tracr import verifying
from tracr.compiler import compiling, lib
from tracr.rasp import rasp


def _reverse_model():
    program = lib.make_reverse(rasp.tokens)
    return program, compiling.compile_rasp_to_model(program, vocab={1, 2}, max_seq_len=3)


def test_count_and_enumerate_inputs():
    assert verifying.count_inputs(8, 6) == 299_592
    inputs = list(verifying.all_inputs([1, 2], 3))
    assert len(inputs) == 2 + 4 + 8 == len(set(inputs))
    assert inputs[:3] == [(1,), (2,), (1, 1)]


def test_a_compiled_program_agrees_everywhere():
    program, model = _reverse_model()
    result = verifying.verify(model, program, batch_size=5)
    assert result.exhaustive and result.ok
    assert (result.total, result.agree, result.mismatch) == (14, 14, 0)


def test_a_different_program_gives_the_mismatches():
    _, model = _reverse_model()
    identity = rasp.Map(lambda t: t, rasp.tokens)
    result = verifying.verify(model, identity, keep=2)
    # reverse equals identity exactly on palindromes: 2 + 2 + 4 of the 14 inputs
    assert (result.agree, result.mismatch) == (8, 6)
    assert not result.ok
    first = result.mismatches[0]
    assert first.tokens == (1, 2) and first.expected == (1, 2) and first.actual == (2, 1)
    assert len(result.mismatches) == 2


def test_sample_is_seeded_and_sized():
    program, model = _reverse_model()
    result = verifying.verify(model, program, exhaustive_limit=10, samples=50, seed=3)
    assert not result.exhaustive and result.total == 50 and result.ok
    assert list(verifying.sampled_inputs([1, 2], 3, 20, seed=3)) == list(
        verifying.sampled_inputs([1, 2], 3, 20, seed=3)
    )


def test_undefined_inputs_are_counted_apart():
    # Each position reads every token: the evaluator raises wherever that selects two
    # positions (a non-numerical Aggregate cannot average), i.e. on every input of length 2.
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    program = rasp.Aggregate(everything, rasp.tokens)
    model = compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=2)
    result = verifying.verify(model, program)
    assert (result.agree, result.undefined, result.mismatch, result.refused) == (2, 4, 0, 0)


class _Refusing:
    """A model that refuses (ValueError, as the one-hot check does) any batch holding a 2."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def apply_batch(self, sequences):
        if any(2 in seq for seq in sequences):
            raise ValueError("position 1: refused")
        return self._model.apply_batch(sequences)


def test_refused_inputs_are_found_one_by_one_in_a_chunk():
    program, model = _reverse_model()
    result = verifying.verify(_Refusing(model), program, batch_size=8, keep=3)
    # the inputs without a 2: (1,), (1, 1), (1, 1, 1)
    assert (result.agree, result.refused, result.mismatch) == (3, 11, 0)
    assert result.ok
    assert [tokens for tokens, _ in result.refusals] == [(2,), (1, 2), (2, 1)]
    assert result.refusals[0][1] == "position 1: refused"


def test_progress_reports_every_input():
    program, model = _reverse_model()
    seen = []
    verifying.verify(model, program, batch_size=4, progress=seen.append)
    assert seen == [4, 4, 4, 2]


def test_bad_settings_are_refused():
    program, model = _reverse_model()
    with pytest.raises(ValueError, match="batch_size"):
        verifying.verify(model, program, batch_size=0)
