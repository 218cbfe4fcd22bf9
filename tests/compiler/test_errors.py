"""Every refusal names the offending expression and the reason; bad input is rejected."""

from __future__ import annotations

import pytest

from tracr.compiler import basis_inference, compiling, lib, validating
from tracr.rasp import rasp


@pytest.fixture(scope="module")
def reverse_model():
    return compiling.compile_rasp_to_model(
        lib.make_reverse(rasp.tokens), vocab={1, 2, 3}, max_seq_len=4, compiler_bos="BOS"
    )


def test_token_outside_vocab(reverse_model):
    with pytest.raises(ValueError, match=r"tokens \[7\] are not in the vocab \[1, 2, 3\]"):
        reverse_model.apply(["BOS", 1, 7])


def test_sequence_too_long(reverse_model):
    with pytest.raises(ValueError, match="6 tokens .* more than the 5"):
        reverse_model.apply(["BOS", 1, 2, 3, 1, 2])


def test_missing_bos(reverse_model):
    with pytest.raises(ValueError, match="first token must be the BOS token 'BOS', got 1"):
        reverse_model.apply([1, 2, 3])


def test_bos_in_the_middle(reverse_model):
    with pytest.raises(ValueError, match="BOS token 'BOS' may only stand at position 0"):
        reverse_model.apply(["BOS", 1, "BOS"])


def test_pad_before_tokens(reverse_model):
    with pytest.raises(ValueError, match="PAD token 'compiler_pad' may only end a sequence"):
        reverse_model.apply(["BOS", "compiler_pad", 1])


def test_empty_batch(reverse_model):
    with pytest.raises(ValueError, match="at least one sequence"):
        reverse_model.apply_batch([])


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"vocab": {1, "BOS"}, "compiler_bos": "BOS"},
            ValueError,
            "BOS token 'BOS' must not be in the vocab",
        ),
        (
            {"vocab": {1, "compiler_pad"}},
            ValueError,
            "PAD token 'compiler_pad' must not be in the vocab",
        ),
        ({"vocab": set()}, ValueError, "vocab must hold at least one token"),
        ({"max_seq_len": 0}, ValueError, "max_seq_len must be a positive int, got 0"),
        ({"mlp_exactness": 0}, ValueError, "mlp_exactness must be positive"),
    ],
)
def test_bad_compile_arguments(kwargs, error, message):
    arguments = {"vocab": {1, 2}, "max_seq_len": 3, **kwargs}
    with pytest.raises(error, match=message):
        compiling.compile_rasp_to_model(rasp.Map(lambda x: x, rasp.tokens), **arguments)


@pytest.mark.parametrize("vocab", [[[1], [2]], 5])
def test_vocab_must_hold_hashable_tokens(vocab):
    with pytest.raises(TypeError, match="vocab must be an iterable of hashable tokens"):
        compiling.compile_rasp_to_model(
            rasp.Map(lambda x: x, rasp.tokens), vocab=vocab, max_seq_len=2
        )


def test_program_must_be_an_sop():
    selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    with pytest.raises(TypeError, match="program must be a RASP SOp, got Select"):
        compiling.compile_rasp_to_model(selector, vocab={1}, max_seq_len=2)


def test_program_without_tokens():
    program = rasp.Map(lambda i: i + 1, rasp.indices)
    with pytest.raises(ValueError, match="does not use rasp.tokens"):
        compiling.compile_rasp_to_model(program, vocab={1}, max_seq_len=2)


def _refusal(program, **kwargs) -> validating.UnsupportedProgramError:
    arguments = {"vocab": {1, 2, 3}, "max_seq_len": 4, **kwargs}
    with pytest.raises(validating.UnsupportedProgramError) as info:
        compiling.compile_rasp_to_model(program, **arguments)
    assert isinstance(info.value, NotImplementedError)
    return info.value


def test_all_unsupported_expressions_are_listed_at_once():
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    bad_default = rasp.Aggregate(select, rasp.tokens, default=1).named("bad_default")
    bad_encoding = rasp.numerical(rasp.Aggregate(select, rasp.tokens, default=0)).named("bad_enc")
    program = rasp.SequenceMap(
        lambda a, b: a, bad_default, rasp.categorical(rasp.Map(lambda x: x, bad_encoding))
    )
    error = _refusal(program)
    assert {u.expr.label for u in error.unsupported} == {bad_default.label, bad_encoding.label}
    message = str(error)
    assert f"{bad_default.label}: a categorical Aggregate needs default=None, got 1" in message
    assert f"{bad_encoding.label}: an Aggregate's encoding (numerical) must match" in message


def test_numerical_aggregate_default_must_be_zero():
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    ones = rasp.numerical(rasp.Map(lambda x: 1, rasp.tokens))
    program = rasp.numerical(rasp.Aggregate(select, ones, default=2)).named("agg")
    message = str(_refusal(program))
    assert f"{program.label}: a numerical Aggregate needs default=0, got 2" in message


def test_length_in_a_causal_program():
    program = rasp.Map(lambda n: n, rasp.length).named("uses_length")
    error = _refusal(rasp.SequenceMap(lambda a, b: a, program, rasp.tokens), causal=True)
    assert "length:" in str(error) and "causal model cannot see" in str(error)


def test_categorical_aggregate_that_averages_numbers():
    program = rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ), rasp.tokens
    ).named("avg")
    error = _refusal(program)
    assert f"{program.label}: a categorical Aggregate that can select several" in str(error)


def test_selectors_over_different_sops_cannot_combine():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    program = rasp.SelectorWidth(rasp.SelectorOr(a, b)).named("width")
    message = str(_refusal(program))
    assert f"{program.label}: its selector" in message and "ors selectors over different" in message


def test_predicate_that_selects_none():
    maybe_none = rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1), rasp.tokens
    )
    program = rasp.SelectorWidth(rasp.Select(maybe_none, rasp.tokens, lambda k, q: k != q)).named(
        "w"
    )
    message = str(_refusal(program))
    assert f"{program.label}: its selector's predicate selects a None key" in message


def test_numerical_sop_that_can_be_none():
    maybe_none = rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1), rasp.tokens
    )
    program = rasp.numerical(rasp.Map(lambda x: x * 2, maybe_none)).named("twice")
    assert f"{program.label}: a numerical SOp that can be None" in str(_refusal(program))


def test_numerical_values_too_close_for_float32():
    close = rasp.numerical(rasp.Map(lambda t: 1 + t * 1e-7, rasp.tokens))
    program = rasp.Map(lambda x: x > 1.00000015, close, simplify=False)
    message = str(_refusal(program))
    assert f"{program.label}: its input values" in message
    assert "map to different outputs but are too close" in message


def test_numerical_input_that_is_not_a_number():
    """A numerical Map whose input takes a string is refused by name, not a traceback."""
    mixed = rasp.numerical(rasp.Map(lambda x: "a" if x == 1 else x, rasp.tokens)).named("mixed")
    program = rasp.numerical(rasp.Map(lambda x: 1 if x == 2 else 0, mixed, simplify=False))
    message = str(_refusal(program))
    assert f"{program.label}: its numerical input {mixed.label!r} takes values that are not" in (
        message
    )
    assert "'a'" in message


def test_affine_map_of_close_values_compiles():
    """An affine Map needs no discretisation, so close inputs are no problem."""
    close = rasp.numerical(rasp.Map(lambda t: 1 + t * 1e-4, rasp.tokens))
    program = rasp.numerical(rasp.Map(lambda x: x * 2, close, simplify=False))
    model = compiling.compile_rasp_to_model(
        program, vocab={1, 2, 3}, max_seq_len=3, compiler_bos="BOS"
    )
    assert model.apply(["BOS", 3, 1]).decoded[1:] == pytest.approx([2.0006, 2.0002], rel=1e-6)


def test_constant_sop_is_refused():
    program = rasp.SequenceMap(lambda a, b: a, rasp.tokens, rasp.ConstantSOp([1, 2, 3]))
    assert "ConstantSOp holds one fixed sequence" in str(_refusal(program))


def test_map_that_raises_while_enumerating_values():
    program = rasp.Map(lambda x: {1: "a"}[x], rasp.tokens)
    expected = f"Map '{program.label}' raised KeyError: 2 on input 2"
    with pytest.raises(basis_inference.ValueSetError, match=expected):
        compiling.compile_rasp_to_model(program, vocab={1, 2}, max_seq_len=2)


def test_arithmetic_errors_are_skipped_like_the_reference():
    program = rasp.numerical(rasp.Map(lambda x: 1 / x, rasp.tokens))
    model = compiling.compile_rasp_to_model(
        program, vocab={0, 1, 2}, max_seq_len=2, compiler_bos="BOS"
    )
    assert model.apply(["BOS", 2, 1]).decoded[1:] == pytest.approx([0.5, 1.0])


def test_dynamic_validation_reports_averaging_aggregates():
    mean_idx = rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE), rasp.indices
    ).named("mean_idx")
    found = validating.dynamic_validate(mean_idx, [5, 6])
    assert [u.expr.label for u in found] == [mean_idx.label]
    assert "selects different values [0, 1]" in found[0].reason
    same = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), rasp.tokens)
    assert validating.dynamic_validate(same, [2, 2]) == []


def test_input_that_makes_an_aggregate_average_is_rejected_not_misdecoded():
    """rasp.evaluate averages indices 0 and 1 here (0.5); the model refuses the input."""
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    program = rasp.Aggregate(same_token, rasp.indices)
    model = compiling.compile_rasp_to_model(
        program, vocab={"a", "b"}, max_seq_len=3, compiler_bos="BOS"
    )
    assert rasp.evaluate(program, ["a", "b", "a"]) == [1.0, 1, 1.0]
    assert model.apply(["BOS", "a", "b"]).decoded == ["BOS", 0, 1]
    with pytest.raises(
        ValueError,
        match=(
            rf"position 1: the categorical SOp '{program.label}' holds the mixture "
            r"\{'0': 0.5, '2': 0.5\}"
        ),
    ):
        model.apply(["BOS", "a", "b", "a"])
    with pytest.raises(ValueError, match="sequence 1, position 1"):
        model.apply_batch([["BOS", "a", "b"], ["BOS", "b", "b"]])
    # strict=False runs it anyway (for edited weights), decoding the argmax of the mixture.
    assert model.apply(["BOS", "b", "b"], strict=False).decoded[1] in (0, 1)


@pytest.mark.parametrize("tokens", [None, "BOS12", 5])
def test_input_must_be_a_token_list(reverse_model, tokens):
    with pytest.raises(TypeError, match="a model input must be a list of tokens starting with BOS"):
        reverse_model.apply(tokens)
    with pytest.raises(TypeError, match="must be a list of tokens"):
        reverse_model.apply_batch([["BOS", 1], tokens])


def test_a_one_in_two_hundred_mixture_is_still_rejected():
    """At max_seq_len 200 an Aggregate can mix in a value with weight 1/199, below the
    default tolerance of 0.01: its tolerance is 1/(2 max_seq_len) there."""
    everything = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE)
    program = rasp.Aggregate(everything, rasp.tokens).named("majority")
    model = compiling.compile_rasp_to_model(
        program, vocab={"a", "b"}, max_seq_len=200, compiler_bos="BOS"
    )
    assert model.apply(["BOS"] + ["a"] * 199).decoded[1:] == ["a"] * 199
    assert model.mixture_tolerances[program.label] <= 1 / 400
    with pytest.raises(ValueError, match=f"the categorical SOp '{program.label}' holds"):
        model.apply(["BOS"] + ["a"] * 198 + ["b"])


def test_the_mixture_check_reads_columns_edited_in_place():
    """The one-hot check's layout is remembered between calls; editing a categorical SOp's
    columns in place must take effect (not serve the layout of the old columns)."""
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    program = rasp.Aggregate(same_token, rasp.indices)
    model = compiling.compile_rasp_to_model(
        program, vocab={"a", "b"}, max_seq_len=3, compiler_bos="BOS"
    )
    with pytest.raises(ValueError, match="holds the mixture"):
        model.apply(["BOS", "a", "b", "a"])
    cols = model.categorical_sops[program.label]
    # The first columns of `indices`, a clean one-hot: nothing to reject.
    cols[:] = [model.residual_labels.index(f"indices:{i}") for i in range(len(cols))]
    assert model.apply(["BOS", "a", "b", "a"]).decoded[0] == "BOS"
