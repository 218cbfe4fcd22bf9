"""CompressedModel: apply, read-back, the two layouts, the Gram matrix."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compress import helpers
from tracr.compiler import assemble
from tracr.compress import compressed_model
from tracr.transformer import model as model_lib


def _exact_W(model):
    """A W that drops only the PAD direction, which no real position ever holds."""
    labels = model.residual_labels
    keep = [i for i, label in enumerate(labels) if not label.endswith("compiler_pad")]
    return np.eye(len(labels))[keep]


@pytest.mark.parametrize("layout", [True, False])
def test_dropping_only_the_pad_direction_computes_the_program(layout):
    model = helpers.frac_prevs()
    cm = compressed_model.CompressedModel(model, _exact_W(model), layout)
    assert cm.d == cm.d_model - 1
    for tokens, expected in [
        (["BOS", "x", "y", "x"], [1.0, 0.5, 2 / 3]),
        (["BOS", "y", "y"], [0.0, 0.0]),
    ]:
        decoded = cm.apply(tokens).decoded
        assert decoded[0] == "BOS"
        np.testing.assert_allclose(decoded[1:], expected, atol=1e-5)


def test_apply_batch_decodes_each_sequence_like_apply():
    model = helpers.reverse()
    cm = compressed_model.CompressedModel(model, _exact_W(model))
    batch = cm.apply_batch([["BOS", 1, 2], ["BOS", 2, 1, 1]])
    assert batch.decoded[0][:3] == ["BOS", 2, 1]
    assert batch.decoded[1] == ["BOS", 1, 1, 2]
    assert cm.apply(["BOS", 2, 1, 1]).decoded == ["BOS", 1, 1, 2]


def test_residuals_are_compressed_and_read_back_by_label():
    model = helpers.frac_prevs()
    cm = compressed_model.CompressedModel(model, _exact_W(model))
    out = cm.apply(["BOS", "x", "y"])
    assert out.residuals[-1].shape == (1, 3, cm.d)
    assert out.transformer_output.shape == (1, 3, cm.d_model)
    frac = [label for label in model.residual_labels if label.startswith("frac_prevs")][0]
    np.testing.assert_allclose(cm.read(out.residuals[-1], frac)[0, 1:, 0], [1.0, 0.5], atol=1e-6)
    tokens = cm.read(out.residuals[-1], "tokens")  # one column per token value
    assert tokens.shape == (1, 3, 4)
    assert cm.read(out.residuals[-1], "tokens:x")[0, :, 0].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(KeyError, match="no residual label or SOp named 'nope'"):
        cm.read(out.residuals[-1], "nope")


def test_the_width_d_layout_is_a_plain_transformer_of_width_d():
    model = helpers.frac_prevs()
    rng = np.random.default_rng(1)
    W = _exact_W(model) + 0.05 * rng.standard_normal((model.model_config.d_model - 1, 10))
    cm = compressed_model.CompressedModel(model, W, unembed_at_every_layer=False)
    ids = np.asarray([model.input_encoder.encode(["BOS", "x", "y", "y"])])
    plain = model_lib.forward(cm.params, cm.model_config, ids)
    assert plain.output.shape == (1, 4, cm.d)
    assert cm.params["transformer/layer_0/attn/query"]["w"].shape[0] == cm.d
    # Same function as the read-through layout: the final residuals agree.
    other = compressed_model.CompressedModel(model, W, unembed_at_every_layer=True)
    np.testing.assert_allclose(plain.output, other.forward(ids).residuals[-1], atol=1e-5)


def test_embedding_gram_is_W_transpose_W_and_normalises_to_cosines():
    model = helpers.frac_prevs()
    W = np.arange(30, dtype=float).reshape(3, 10) - 7.0
    cm = compressed_model.CompressedModel(model, W)
    np.testing.assert_allclose(cm.embedding_gram(), W.T @ W, rtol=1e-6)
    cosines = cm.embedding_gram(normalise=True)
    np.testing.assert_allclose(np.diag(cosines), 1.0, rtol=1e-6)
    assert np.all(np.abs(cosines) <= 1 + 1e-6)


def test_W_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match=r"W must have shape \[d, d_model\] = \[d, 10\]"):
        compressed_model.CompressedModel(helpers.frac_prevs(), np.zeros((3, 9)))


def test_faithfulness_on_given_sequences():
    model = helpers.reverse()
    cm = compressed_model.CompressedModel(model, _exact_W(model))
    report = cm.faithfulness(helpers.every_input({1, 2}, 3))
    assert report.n_inputs == 14
    assert report.output_accuracy == 1.0
    with pytest.raises(ValueError, match="no held-out report"):
        cm.faithfulness()


def test_read_accepts_the_sop_itself():
    from tracr.compiler import compiling, lib
    from tracr.rasp import rasp

    program = lib.make_frac_prevs(rasp.tokens == "x")
    model = compiling.compile_rasp_to_model(program, {"x", "y"}, 3, compiler_bos="BOS")
    cm = compressed_model.CompressedModel(model, _exact_W(model))
    out = cm.apply(["BOS", "y", "x"])
    np.testing.assert_allclose(cm.read(out.residuals[-1], program)[0, 1:, 0], [0, 0.5], atol=1e-6)


# How far two float32 evaluations of the same compressed function may differ, per entry:
# each float32 operation rounds to 6e-8 relative, the blocks sum tens of terms, and the
# residual entries stay below 2 in these models, so two summation orders differ by a few
# 1e-6 (1.9e-6 measured). 1e-4 leaves a margin of 50 and is still 100 times below
# scoring.ATOL, the distance at which a compressed number counts as wrong.
SAME_FUNCTION = 1e-4


def _ids_and_mask(model):
    sequences = helpers.every_input(helpers.vocab(model), 3)
    ids, _ = model._encode_batch(sequences)
    return sequences, ids, ids != model.input_encoder.pad_encoding


def _max_diff(a, b, mask) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))[mask].max())


@pytest.mark.parametrize("name", ["frac_prevs", "reverse"])
def test_both_layouts_compute_the_same_function(name):
    """unembed_at_every_layer=True reads the stream through W before each compiled block;
    False folds W into the blocks. Same W, every input: the same residuals and outputs."""
    through = helpers.trained(name, unembed_at_every_layer=True)
    folded = compressed_model.CompressedModel(through.model, through.W, False)
    _, ids, mask = _ids_and_mask(through.model)
    a, b = through.forward(ids, mask), folded.forward(ids, mask)
    assert len(a.residuals) == len(b.residuals) == 2 * through.model.model_config.num_layers
    for got, want in zip(a.residuals, b.residuals):
        assert _max_diff(got, want, mask) <= SAME_FUNCTION
    # Folded, a block's output is d wide and read back through W (Wᵀ W o); through W, it
    # is the D-wide o itself. The two agree once o is compressed and read back the same way
    # (not after W alone: a trained W is not orthonormal, W Wᵀ is not the identity).
    W = through.W
    for got, want in zip(a.layer_outputs, b.layer_outputs):
        assert _max_diff(got @ W.T @ W, want, mask) <= SAME_FUNCTION
    assert _max_diff(a.output, b.output, mask) <= SAME_FUNCTION
    sequences = _ids_and_mask(through.model)[0]
    _assert_same_decoded(through.apply_batch(sequences), folded.apply_batch(sequences))


def _assert_same_decoded(got, want):
    """The same values at every position, numbers within SAME_FUNCTION."""
    assert len(got.decoded) == len(want.decoded)
    for row, expected in zip(got.decoded, want.decoded):
        assert len(row) == len(expected)
        for a, b in zip(row, expected):
            if isinstance(b, float):
                assert isinstance(a, float) and abs(a - b) <= SAME_FUNCTION
            else:
                assert a == b


@pytest.mark.parametrize("layout", [True, False], ids=["through_W", "folded"])
@pytest.mark.parametrize("name", ["frac_prevs", "reverse"])
def test_as_model_is_a_plain_transformer_of_width_d(name, layout):
    cm = helpers.trained(name, unembed_at_every_layer=layout)
    plain = cm.as_model()
    assert isinstance(plain, assemble.AssembledTransformerModel)
    assert plain.model_config.d_model == cm.d < cm.d_model
    assert plain.residual_labels == [f"compressed:{i}" for i in range(cm.d)]
    assert plain.categorical_sops == {} and plain.circuit is None
    assert plain.params["token_embed"]["embeddings"].shape[1] == cm.d
    assert plain.get_compiled_model().unembed_matrix.shape[0] == cm.d
    assert plain.input_encoder is cm.model.input_encoder
    assert plain.output_encoder is cm.model.output_encoder
    sequences, ids, mask = _ids_and_mask(cm.model)
    got, want = plain.apply_batch(sequences), cm.apply_batch(sequences)
    numpy_forward = compressed_model.compressed_forward(
        cm.model.params, cm.model.model_config, cm.W, ids, mask, unembed_at_every_layer=layout
    )
    for a, b in zip(got.residuals, numpy_forward.residuals):
        if layout:  # another summation order
            assert _max_diff(a, b, mask) <= SAME_FUNCTION
        else:  # the very same arithmetic
            np.testing.assert_array_equal(a[mask], b[mask])
    if name == "reverse" or not layout:  # categorical, or the same arithmetic: equal
        assert got.decoded == want.decoded
    else:  # numbers from another summation order
        _assert_same_decoded(got, want)


def test_bad_input_to_a_compressed_model_gets_the_compiled_models_errors():
    cm = compressed_model.CompressedModel(helpers.frac_prevs(), np.eye(8, 10))
    with pytest.raises(ValueError, match="at least one sequence"):
        cm.faithfulness([])
    with pytest.raises(ValueError, match="at least one sequence"):
        cm.apply_batch([])
    with pytest.raises(TypeError, match="a model input must be a list of tokens"):
        cm.apply("BOS x")
