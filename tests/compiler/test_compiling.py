"""End-to-end: compiled models agree with the evaluator (the exactness promise)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import cases
from tests.compiler import exactness
from tracr.compiler import assemble, compiling, lib
from tracr.rasp import rasp


def test_quick_start_reverse():
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(
        program, vocab={1, 2, 3}, max_seq_len=5, compiler_bos="BOS"
    )
    assert model.apply(["BOS", 1, 2, 3]).decoded == ["BOS", 3, 2, 1]


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_shared_case_table(case):
    program = case.make_program()
    model = compiling.compile_rasp_to_model(
        program, vocab=case.vocab, max_seq_len=case.max_seq_len, compiler_bos="BOS"
    )
    for xs, want in zip(case.inputs, case.expected):
        got = model.apply(["BOS", *xs]).decoded
        assert got[0] == "BOS"
        assert cases.outputs_match(got[1:], want), (xs, got, want)


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_shared_cases_exhaustively_small(case):
    """Every input up to a small length, not only the table's hand-picked ones."""
    program = case.make_program()
    model = compiling.compile_rasp_to_model(
        program, vocab=case.vocab, max_seq_len=case.max_seq_len, compiler_bos="BOS"
    )
    max_len = case.max_seq_len
    while len(case.vocab) ** max_len > 6000:
        max_len -= 1
    sequences = exactness.all_sequences(case.vocab, max_len)
    assert exactness.mismatches(model, program, sequences) == []


def test_apply_output_fields_have_reference_shapes():
    model = compiling.compile_rasp_to_model(
        lib.make_hist(), vocab={"a", "b"}, max_seq_len=4, compiler_bos="BOS"
    )
    out = model.apply(["BOS", "a", "b", "a"])
    d_model = len(model.residual_labels)
    assert model.model_config.d_model == d_model
    layers = model.model_config.num_layers
    assert out.decoded == ["BOS", 2, 1, 2]
    assert out.unembedded.shape == (1, 4)
    assert out.input_embeddings.shape == (1, 4, d_model)
    assert out.transformer_output.shape == (1, 4, d_model)
    assert len(out.residuals) == len(out.layer_outputs) == 2 * layers
    assert [r.shape for r in out.residuals] == [(1, 4, d_model)] * (2 * layers)
    heads = model.model_config.num_heads
    assert [a.shape for a in out.attn_logits] == [(1, heads, 4, 4)] * layers


def test_residual_stream_holds_every_intermediate_value():
    """The subspace named after an SOp holds its value: one-hot for categorical SOps."""
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(
        program, vocab={1, 2, 3}, max_seq_len=5, compiler_bos="BOS"
    )
    out = model.apply(["BOS", 3, 1, 2])
    final = out.transformer_output[0]
    labels = model.residual_labels
    # "opp_idx-1" = length - indices - 1 is 2, 1, 0 on a length-3 input.
    for position, want in zip((1, 2, 3), (2, 1, 0)):
        row = {
            lab: final[position, i] for i, lab in enumerate(labels) if lab.startswith("opp_idx-1_")
        }
        hot = [lab for lab, value in row.items() if value > 0.5]
        assert [lab.split(":")[1] for lab in hot] == [str(want)]
    assert "one" in labels and "tokens:BOS" in labels and "indices:0" in labels


def test_numerical_output_decodes_to_floats():
    model = compiling.compile_rasp_to_model(
        lib.make_frac_prevs(rasp.tokens == "a"), vocab={"a", "b"}, max_seq_len=4, compiler_bos="BOS"
    )
    decoded = model.apply(["BOS", "a", "b", "a", "a"]).decoded
    assert decoded[0] == "BOS"
    assert decoded[1:] == pytest.approx([1.0, 0.5, 2 / 3, 0.75], rel=1e-5)


def test_none_output_decodes_to_none():
    program = rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1), rasp.tokens
    )
    model = compiling.compile_rasp_to_model(program, vocab={"x", "y"}, max_seq_len=4)
    decoded = model.apply(["compiler_bos", "x", "y", "y"]).decoded
    assert decoded == ["compiler_bos", "y", "y", None]


def test_batched_apply_equals_single_apply_and_pads():
    model = compiling.compile_rasp_to_model(
        lib.make_sort_unique(rasp.tokens, rasp.tokens),
        vocab={1, 2, 3, 4},
        max_seq_len=4,
        compiler_bos="BOS",
    )
    batch = [["BOS", 3, 1], ["BOS", 4, 2, 3, 1], ["BOS", 2]]
    out = model.apply_batch(batch)
    assert out.decoded == [
        ["BOS", 1, 3, "compiler_pad", "compiler_pad"],
        ["BOS", 1, 2, 3, 4],
        ["BOS", 2, "compiler_pad", "compiler_pad", "compiler_pad"],
    ]
    for seq, row in zip(batch, out.decoded):
        assert model.apply(seq).decoded == row[: len(seq)]


@pytest.mark.parametrize("vocab_size", [3, 254, 255, 300])
def test_batches_are_encoded_right_on_either_side_of_256_ids(vocab_size):
    """A batch of 256 tokens or more reads ids below 256 as bytes, others as integers: with
    BOS and PAD, vocabs of 254 and 300 tokens have their last ids at 255 and 301."""
    vocab = set(range(vocab_size))
    model = compiling.compile_rasp_to_model(
        rasp.numerical(rasp.Map(lambda x: x % 7, rasp.tokens)),
        vocab=vocab,
        max_seq_len=3,
        compiler_bos="BOS",
    )
    ids = model.input_encoder.encoding_map
    top = max(vocab, key=ids.__getitem__)  # the token with the largest id
    batch = [["BOS", top, 0, 1], ["BOS", 2, top], ["BOS", top]]
    pad = model.input_encoder.pad_token
    expected = [["BOS", top % 7, 0, 1], ["BOS", 2, top % 7, pad], ["BOS", top % 7, pad, pad]]
    for copies in (1, 30):  # 9 tokens, and 270
        assert model.apply_batch(batch * copies).decoded == expected * copies


def test_trailing_padding_in_apply_is_masked():
    model = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={"a"}, max_seq_len=4, compiler_bos="BOS"
    )
    assert model.apply(["BOS", "a", "a", "compiler_pad"]).decoded == ["BOS", 2, 2, "compiler_pad"]


def test_weights_edited_in_place_take_effect():
    """Ablating a head by zeroing its weights changes the output, as users expect."""
    model = compiling.compile_rasp_to_model(
        lib.make_hist(), vocab={"a", "b"}, max_seq_len=3, compiler_bos="BOS"
    )
    assert model.apply(["BOS", "a", "a"]).decoded == ["BOS", 2, 2]
    model.params["transformer/layer_0/attn/value"]["w"][:] = 0
    assert model.apply(["BOS", "a", "a"]).decoded != ["BOS", 2, 2]


def test_unembed_picks_the_first_largest_value_and_flags_absent_outputs():
    """argmax semantics (ties go to the first value) and the None threshold, per position."""
    unembed = np.zeros((4, 3), dtype=np.float32)
    unembed[1:, :] = np.eye(3)  # direction 0 is not read
    output = np.array(
        [[[9, 1, 0, 0], [9, 0.7, 0.7, 0.2], [0, 0.1, 0.4, 0.3]]], dtype=np.float32
    )  # [B=1, T=3, D=4]
    ids, present = assemble.unembed(output, unembed, use_argmax=True)
    np.testing.assert_array_equal(ids, [[0, 0, 1]])
    np.testing.assert_array_equal(present, [[True, True, False]])
    numbers, all_present = assemble.unembed(output, unembed[:, :1], use_argmax=False)
    np.testing.assert_array_equal(numbers, np.float32([[1, 0.7, 0.1]]))
    assert all_present.all()


def test_weights_replaced_by_other_array_types_still_run():
    model = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={"a", "b"}, max_seq_len=4, compiler_bos="BOS"
    )
    want = model.apply(["BOS", "a", "b"]).decoded
    value = model.params["transformer/layer_0/attn/value"]
    value["w"] = value["w"].tolist()  # a nested list, as a user might write it
    assert model.apply(["BOS", "a", "b"]).decoded == want
