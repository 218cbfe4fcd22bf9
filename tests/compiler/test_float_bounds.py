"""compiler/float_bounds: the compiler's worst-case float32 bounds, its refusals and the
constructions it picks to stay exact (noise-cleaning lookups, two-stage widths)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compiler import exactness, test_passes
from tests.transformer import adversarial
from tracr.compiler import (
    compiling,
    expr_to_craft_graph,
    float_bounds,
    lib,
    rasp_to_graph,
    validating,
)
from tracr.rasp import rasp


def test_refusal_names_the_sop_the_bound_the_budget_and_a_fix():
    frac = lib.make_frac_prevs(rasp.tokens == "a")
    program = rasp.numerical(rasp.Map(lambda x: np.sin(20 * x), frac)).named("wiggle")
    with pytest.raises(validating.UnsupportedProgramError) as info:
        compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=16)
    message = str(info.value)
    assert "wiggle" in message and "frac_prevs" in message  # the SOp and its input
    assert "float32 error bound" in message and "exceeds the budget" in message
    assert "shrink the value set" in message


@pytest.mark.parametrize("f", [lambda n: n * n, lambda n: n % 3, lambda n: 1 / n])
def test_maps_of_a_numerical_length_read_its_one_hot_exactly(f):
    """Through the number these are beyond float32 at N = 100 (and were refused); through
    the width's one-hot they are exact lookup tables."""
    length = rasp.numerical(lib.make_length())
    program = rasp.numerical(rasp.Map(f, length, simplify=False))
    model = compiling.compile_rasp_to_model(
        program, vocab={"a"}, max_seq_len=100, compiler_bos="BOS"
    )
    sequences = [["a"] * n for n in range(1, 101)]
    assert exactness.mismatches(model, program, sequences) == []


def test_numerical_width_reads_through_a_one_hot_at_large_sizes():
    """One readout MLP adds up every step on one side of t (error ~N^3 u); past a size
    the compiler adds a second MLP reading w from its one-hot, exactly."""
    program = rasp.numerical(lib.make_length())
    small = compiling.compile_rasp_to_model(program, vocab={"a"}, max_seq_len=4)
    large = compiling.compile_rasp_to_model(
        program, vocab={"a"}, max_seq_len=100, compiler_bos="BOS"
    )
    assert small.model_config.num_layers == 1
    assert large.model_config.num_layers == 2
    assert any("width" in label for label in large.residual_labels)
    sequences = [["a"] * n for n in range(1, 101)]
    assert exactness.mismatches(large, program, sequences) == []


def test_lookups_reading_noisy_one_hots_are_cleaned():
    """length comes out of a readout with float32 noise; a SequenceMap reading it that
    does not split into per-input parts (a lookup table) gets the two-unit cleaning
    indicators, so its own output is clean again. (make_reverse's opp_idx = length -
    indices splits, and takes the robust separable block instead, whose error is its
    own rounding; the Map reading opp_idx is cleaned.)"""
    length = lib.make_length()
    table = rasp.SequenceMap(lambda n, i: (n * i) % 7, length, rasp.indices).named("mod")
    errors = _errors(table, {"a"}, 16)
    assert (
        max(errors["mod"].abs, errors["mod"].l1)
        < max(errors["length"].abs, errors["length"].l1) / 2
    )
    reverse = _errors(lib.make_reverse(rasp.tokens), set(range(16)), 16)
    assert reverse["opp_idx-1"].l1 < reverse["opp_idx"].l1 / 2


def test_a_difference_of_two_noisy_widths_is_refused_at_80():
    """Neither width can be read exactly enough: their one-hots carry float32 noise that a
    linear read multiplies by ~max_seq_len, only one of them can be read as a number, and
    the lookup table is too large to bound input by input. Refused, naming the SOp; no
    numerical input is involved, so the hint does not ask for one to be made categorical."""
    every = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    count = rasp.SelectorWidth(every).named("count")
    program = rasp.SequenceMap(lambda a, b: a - b, lib.make_length(), count).named("diff")
    with pytest.raises(validating.UnsupportedProgramError) as info:
        compiling.compile_rasp_to_model(program, vocab={"a"}, max_seq_len=80, compiler_bos="BOS")
    message = str(info.value)
    assert "diff" in message and "exceeds the budget" in message
    assert "numerical input" not in message and "max_seq_len" in message


@pytest.mark.parametrize("max_seq_len", [5, 16])
def test_lookups_reading_clean_one_hots_keep_their_plain_table(max_seq_len):
    """sort_freq cleans -hist (its input, hist, is a noisy readout), so the SequenceMap of
    -hist and indices reads one-hots within CLEAN_ABOVE: it keeps one unit per pair of
    values (the reference's width), not the cleaned table's two. (Exactness at 16:
    test_exact_at_scale and test_adversarial_order.)"""
    program = lib.make_sort_freq(max_seq_len)
    vocab = set(range(1, 5)) if max_seq_len == 5 else set(range(16))
    _, lowered = test_passes._lower(program, vocab, max_seq_len)
    by_name = {label.rsplit("_", 1)[0]: node for label, node in lowered.items()}
    neg_hist, keys = by_name["map"], by_name["sequence_map"]
    assert max(neg_hist.error.abs, neg_hist.error.l1) <= expr_to_craft_graph.CLEAN_ABOVE
    assert keys.block.hidden_space.num_dims == neg_hist.space.num_dims * max_seq_len


def test_sort_freq_with_its_plain_table_is_exact_on_every_input():
    program = lib.make_sort_freq(5)
    vocab = {1, 2, 3, 4}
    model = compiling.compile_rasp_to_model(program, vocab=vocab, max_seq_len=5, compiler_bos="BOS")
    assert exactness.mismatches(model, program, exactness.all_sequences(vocab, 5)) == []
    sequences = exactness.sampled_sequences(vocab, 5, per_length=20)
    for order in adversarial.ORDERS:
        assert exactness.adversarial_mismatches(model, program, sequences, order) == [], order


def _errors(program, vocab, max_seq_len):
    """label without its id -> the compiler's error bound for that SOp."""
    _, lowered = test_passes._lower(program, vocab, max_seq_len)
    return {label.rsplit("_", 1)[0]: node.error for label, node in lowered.items()}


def test_exact_inputs_give_exact_lookups():
    errors = _errors(lib.make_hist(), {"a", "b"}, 4)
    assert errors["tokens"] == float_bounds.EXACT
    assert errors["hist"].abs > 0  # the readout of t = 1/(w+1) rounds


def test_numerical_budget_is_relative_to_the_value_or_the_scale():
    assert float_bounds.numerical_budget(2.0) == pytest.approx(2e-5)
    assert float_bounds.numerical_budget(0.0) == 1e-6
    assert float_bounds.numerical_budget(0.0, scale=1.0) == pytest.approx(1e-5)
    values = np.array([2.0, 0.0, -3e-3, 1e3])
    np.testing.assert_array_equal(
        float_bounds.numerical_budget(values, scale=0.5),
        [float_bounds.numerical_budget(v, scale=0.5) for v in values],
    )


def test_sop_error_at_many_matches_at():
    err = float_bounds.SOpError(
        1e-6, rel=1e-7, values=np.array([0.0, 0.5, 1.0]), per_value=np.array([1.0, 2.0, 3.0])
    )
    assert err.at(0.5) == 2.0
    assert err.at(0.25) == pytest.approx(1e-6 + 0.25e-7)
    np.testing.assert_allclose(err.at_many(np.array([1.0, 0.0, 7.0])), [3.0, 1.0, 1e-6 + 7e-7])


@pytest.mark.parametrize("max_seq_len", [16, 32])
def test_lib_programs_compile_at_16_and_32(max_seq_len):
    vocab = set(range(16))
    programs = [
        lib.make_length(),
        lib.make_reverse(rasp.tokens),
        lib.make_hist(),
        lib.make_sort_unique(rasp.tokens, rasp.tokens),
        lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=max_seq_len, min_key=1),
        lib.make_sort_freq(max_seq_len),
        lib.make_frac_prevs(rasp.tokens == 3),
        lib.make_pair_balance(rasp.tokens, 1, 2),
        lib.shift_by(2, rasp.tokens),
        lib.detect_pattern(rasp.tokens, [1, 2, 3]),
        lib.make_count(rasp.tokens, 5),
        lib.make_count_less_freq(2),
    ]
    for program in programs:
        compiling.compile_rasp_to_model(program, vocab=vocab, max_seq_len=max_seq_len)


def test_apply_in_float64_agrees_and_keeps_the_dtype():
    program = lib.make_frac_prevs(rasp.tokens == "a")
    model = compiling.compile_rasp_to_model(
        program, vocab={"a", "b"}, max_seq_len=5, compiler_bos="BOS"
    )
    out = model.apply(["BOS", "a", "b", "a"], dtype=np.float64)
    assert out.transformer_output.dtype == np.float64
    assert model.apply(["BOS", "a"]).transformer_output.dtype == np.float32
    np.testing.assert_allclose(out.decoded[1:], [1.0, 0.5, 2 / 3], rtol=1e-8)
    batch = model.apply_batch([["BOS", "a"], ["BOS", "b", "a"]], dtype=np.float64)
    assert all(r.dtype == np.float64 for r in batch.residuals)
    with pytest.raises(ValueError, match="float32 or numpy.float64"):
        model.apply(["BOS", "a"], dtype=np.int32)


def test_same_labelled_copies_that_compute_the_same_thing_are_one_node():
    program = rasp.SequenceMap(lambda a, b: a + b, rasp.indices, rasp.indices.named("indices"))
    graph = rasp_to_graph.extract_rasp_graph(program + rasp.tokens).graph
    assert sum(1 for label in graph if label == "indices") == 1
    model = compiling.compile_rasp_to_model(
        program + rasp.tokens, vocab={1}, max_seq_len=3, compiler_bos="BOS"
    )
    assert model.apply(["BOS", 1, 1, 1]).decoded == ["BOS", 1, 3, 5]


def test_same_labelled_expressions_that_differ_are_refused_with_the_difference():
    program = rasp.SequenceMap(lambda a, b: a + b, rasp.indices, rasp.numerical(rasp.indices))
    with pytest.raises(ValueError, match="'indices'.*annotations"):
        rasp_to_graph.extract_rasp_graph(program)


def test_selector_width_of_noisy_one_hots_cleans_them_first():
    """count_less_freq's head reads hist, a readout with float32 noise; at 32 the width
    needs tighter logit ties than that allows, so the compiler cleans hist first (one
    more layer) and the model is exact."""
    program = lib.make_count_less_freq(2)
    vocab = set(range(16))
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=32, compiler_bos="BOS"
    )
    assert any("clean_hist" in label for label in model.residual_labels)
    sequences = exactness.sampled_sequences(vocab, 32, per_length=4)
    assert exactness.mismatches(model, program, sequences) == []
    assert model.circuit is not None
