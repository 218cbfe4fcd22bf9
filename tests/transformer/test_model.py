"""The numpy forward pass and the encoders, on weights written by hand."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from tracr.compiler import compiling, lib
from tracr.craft import bases
from tracr.rasp import rasp
from tracr.transformer import encoder, model


@pytest.fixture(autouse=True, params=["dense", "sparse"])
def forward_path(request, monkeypatch):
    """Every test runs on both forward paths: full matrices, and non-zero blocks only."""
    monkeypatch.setattr(model, "DENSE_WORK", 10**18 if request.param == "dense" else 0)
    return request.param


def _zero_layer(d_model, d_attn, d_mlp):
    def linear(rows, cols):
        return {"w": np.zeros((rows, cols)), "b": np.zeros(cols)}

    return {
        "transformer/layer_0/attn/query": linear(d_model, d_attn),
        "transformer/layer_0/attn/key": linear(d_model, d_attn),
        "transformer/layer_0/attn/value": linear(d_model, d_attn),
        "transformer/layer_0/attn/linear": linear(d_attn, d_model),
        "transformer/layer_0/mlp/linear_1": linear(d_model, d_mlp),
        "transformer/layer_0/mlp/linear_2": linear(d_mlp, d_model),
    }


def _averaging_model(causal):
    """Residual [x, mean]: the head attends uniformly and copies x into `mean`."""
    params = {
        "token_embed": {"embeddings": np.array([[1.0, 0.0], [3.0, 0.0], [8.0, 0.0]])},
        "pos_embed": {"embeddings": np.zeros((4, 2))},
        **_zero_layer(2, 1, 1),
    }
    params["transformer/layer_0/attn/value"]["w"][0, 0] = 1.0
    params["transformer/layer_0/attn/linear"]["w"][0, 1] = 1.0
    config = model.TransformerConfig(
        num_heads=1, num_layers=1, key_size=1, mlp_hidden_size=1, causal=causal
    )
    return params, config


def test_uniform_attention_takes_the_mean():
    params, config = _averaging_model(causal=False)
    out = model.forward(params, config, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(out.output[0, :, 1], [4.0, 4.0, 4.0])
    assert [a.shape for a in out.attn_logits] == [(1, 1, 3, 3)]
    assert len(out.residuals) == len(out.layer_outputs) == 2


def test_causal_mask_averages_the_prefix():
    params, config = _averaging_model(causal=True)
    out = model.forward(params, config, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(out.output[0, :, 1], [1.0, 2.0, 4.0])


def test_key_mask_hides_padding():
    params, config = _averaging_model(causal=False)
    out = model.forward(params, config, np.array([[0, 1, 2]]), np.array([[True, True, False]]))
    np.testing.assert_allclose(out.output[0, :, 1], [2.0, 2.0, 2.0])


def test_mlp_applies_relu():
    params, config = _averaging_model(causal=False)
    params["transformer/layer_0/attn/value"]["w"][:] = 0.0
    params["transformer/layer_0/mlp/linear_1"]["w"][0, 0] = 1.0
    params["transformer/layer_0/mlp/linear_1"]["b"][0] = -2.0
    params["transformer/layer_0/mlp/linear_2"]["w"][0, 1] = 1.0
    out = model.forward(params, config, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(out.output[0, :, 1], [0.0, 1.0, 6.0])


def test_config_transformerlens_aliases():
    config = model.TransformerConfig(num_heads=2, num_layers=3, key_size=4, mlp_hidden_size=5)
    assert (config.n_heads, config.n_layers, config.d_head, config.d_mlp) == (2, 3, 4, 5)


def _encoder():
    basis = [bases.BasisDirection("tokens", v) for v in ["BOS", "PAD", "a", "b"]]
    return encoder.CategoricalEncoder(
        basis, enforce_bos=True, bos_token="BOS", pad_token="PAD", max_seq_len=3
    )


def test_categorical_encoder_round_trip():
    enc = _encoder()
    assert enc.encode(["BOS", "b", "a"]) == [0, 3, 2]
    assert enc.decode([0, 3, 2]) == ["BOS", "b", "a"]
    assert (enc.bos_encoding, enc.pad_encoding, enc.vocab_size) == (0, 1, 4)


@pytest.mark.parametrize(
    "tokens,message",
    [
        (["a"], "first token must be the BOS token 'BOS', got 'a'"),
        ([], "got an empty sequence"),
        (["BOS", "a", "b", "a"], "4 tokens .* more than the 3"),
        (["BOS", "z"], r"tokens \['z'\] are not in the vocab \['a', 'b'\]"),
        (["BOS", ["a"]], r"not in the vocab"),
    ],
)
def test_categorical_encoder_errors(tokens, message):
    with pytest.raises(ValueError, match=message):
        _encoder().encode(tokens)


def test_decode_unknown_id():
    with pytest.raises(ValueError, match=r"ids \[9\] are not in 0..3"):
        _encoder().decode([9])


def test_numerical_encoder_is_identity():
    enc = encoder.NumericalEncoder()
    assert enc.encode([1.5, 2]) == [1.5, 2] and enc.decode([0.25]) == [0.25]


def test_used_mlp_widths_and_skipping_them_changes_nothing():
    params, config = _averaging_model(causal=False)
    params["transformer/layer_0/mlp/linear_1"] = {"w": np.zeros((2, 4)), "b": np.zeros(4)}
    params["transformer/layer_0/mlp/linear_2"] = {"w": np.zeros((4, 2)), "b": np.zeros(2)}
    params["transformer/layer_0/mlp/linear_1"]["w"][0, 1] = 1.0
    params["transformer/layer_0/mlp/linear_2"]["w"][1, 1] = 2.0
    assert model.used_mlp_widths(params, config) == [2]
    ids = np.array([[0, 2, 1]])
    full = model.forward(params, config, ids)
    sliced = model.forward(params, config, ids, mlp_widths=[2])
    np.testing.assert_array_equal(full.output, sliced.output)
    np.testing.assert_allclose(full.output[0, :, 1], [4.0 + 2.0, 4.0 + 16.0, 4.0 + 6.0])


def test_tiny_values_are_flushed_to_zero():
    """Block outputs below FLUSH_BELOW become exact zeros (no subnormal arithmetic)."""
    params, config = _averaging_model(causal=False)
    params["token_embed"]["embeddings"][:, 0] = [1e-35, 3.0, 0.0]
    out = model.forward(params, config, np.array([[0, 0, 2]]))
    np.testing.assert_array_equal(out.layer_outputs[0][0, :, 1], [0.0, 0.0, 0.0])
    out = model.forward(params, config, np.array([[0, 1]]))
    np.testing.assert_allclose(out.layer_outputs[0][0, :, 1], [1.5, 1.5])


def test_sparse_and_dense_paths_agree_on_a_compiled_model(monkeypatch):
    compiled = compiling.compile_rasp_to_model(
        lib.make_sort_unique(rasp.tokens, rasp.tokens), vocab={1, 2, 3, 4}, max_seq_len=5
    )
    rng = np.random.default_rng(0)
    batch = [
        ["compiler_bos", *rng.permutation([1, 2, 3, 4])[: rng.integers(1, 5)]] for _ in range(9)
    ]
    outs = {}
    for path, work in (("dense", 10**18), ("sparse", 0)):
        monkeypatch.setattr(model, "DENSE_WORK", work)
        outs[path] = compiled.apply_batch(batch)
    assert outs["dense"].decoded == outs["sparse"].decoded
    for a, b in zip(outs["dense"].residuals, outs["sparse"].residuals):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for a, b in zip(outs["dense"].attn_logits, outs["sparse"].attn_logits):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-3)


def test_edits_anywhere_take_effect_on_the_next_call():
    """A hidden unit that was all zero, switched on by hand, is computed at once."""
    params, config = _averaging_model(causal=False)
    ids = np.array([[0, 1, 2]])
    before = model.forward(params, config, ids).output[0, :, 1].copy()
    params["transformer/layer_0/mlp/linear_1"]["w"][0, 0] = 1.0
    params["transformer/layer_0/mlp/linear_2"]["w"][0, 1] = 1.0
    after = model.forward(params, config, ids).output[0, :, 1]
    np.testing.assert_allclose(after - before, [1.0, 3.0, 8.0])


def test_softmax_matches_float64_and_flushes_tiny_weights():
    """Rows sum to 1 and match a float64 softmax; weights below FLUSH_BELOW are exact zeros
    (no subnormal numbers), including rows of masked logits and huge gaps."""
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((3, 5, 7, 9)) * 40).astype(np.float32)
    logits[0, 0, 0, :4] = model.MASKED_LOGIT
    logits[1, 2, 3] = [0, -68, -69, -70, -80, -90, -150, -1e4, model.MASKED_LOGIT]
    weights = model._softmax(logits.copy())
    exact = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    exact /= exact.sum(axis=-1, keepdims=True)
    exact[exact < model.FLUSH_BELOW] = 0.0
    np.testing.assert_allclose(weights, exact, rtol=1e-5, atol=1e-30)
    assert not ((weights > 0) & (weights < np.finfo(np.float32).tiny)).any()
    assert (weights[1, 2, 3, 3:] == 0).all() and weights[1, 2, 3, 2] > 0
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)


def test_keep_freed_memory_can_be_switched_off():
    """TRACR_KEEP_FREED_MEMORY=0 leaves glibc's settings alone; otherwise, on glibc Linux,
    the first forward pass raises its thresholds once."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from tracr.transformer import model, runtime\n"
        "params = {'token_embed': {'embeddings': np.eye(2)}, 'pos_embed': "
        "{'embeddings': np.zeros((2, 2))}}\n"
        "config = model.TransformerConfig(num_heads=1, num_layers=0, key_size=1, "
        "mlp_hidden_size=1)\n"
        "model.forward(params, config, np.array([[0, 1]]))\n"
        "print(runtime._MALLOC_TUNED)\n"
    )
    env_off = {**os.environ, "TRACR_KEEP_FREED_MEMORY": "0"}
    off = subprocess.run([sys.executable, "-c", code], env=env_off, capture_output=True, text=True)
    assert off.stdout.strip() == "[False]", off.stderr
    env_on = {k: v for k, v in os.environ.items() if k != "TRACR_KEEP_FREED_MEMORY"}
    on = subprocess.run([sys.executable, "-c", code], env=env_on, capture_output=True, text=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert on.stdout.strip() == ("[True]" if glibc else "[False]"), on.stderr


def test_a_compile_keeps_freed_memory_too():
    """Every compile makes fresh weight arrays: the first one raises glibc's thresholds
    as the first forward pass does (and leaves them alone with TRACR_KEEP_FREED_MEMORY=0)."""
    import subprocess
    import sys

    code = (
        "from tracr.compiler import compiling, lib\n"
        "from tracr.transformer import runtime\n"
        "compiling.compile_rasp_to_model(lib.make_length(), vocab={'a'}, max_seq_len=2)\n"
        "print(runtime._MALLOC_TUNED)\n"
    )
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    for setting, expected in (("0", "[False]"), ("1", "[True]" if glibc else "[False]")):
        env = {**os.environ, "TRACR_KEEP_FREED_MEMORY": setting}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.stdout.strip() == expected, run.stderr


def test_a_weight_moved_outside_the_known_rectangle_takes_effect():
    """The sparse path remembers where each matrix's non-zeros are; an edit that keeps
    their number but moves one elsewhere (a swap) must still be seen on the next call."""
    params, config = _averaging_model(causal=False)
    params["token_embed"]["embeddings"][:, 1] = 10.0  # `mean` starts at 10
    ids = np.array([[0, 1, 2]])
    value = params["transformer/layer_0/attn/value"]["w"]  # [2, 1]: only value[0, 0] = 1
    np.testing.assert_allclose(model.forward(params, config, ids).output[0, :, 1], 14.0)
    value[0, 0], value[1, 0] = 0.0, 1.0  # same count, other row: averages `mean` (10)
    np.testing.assert_allclose(model.forward(params, config, ids).output[0, :, 1], 20.0)
    value[1, 0] = -0.0  # a zero with another bit pattern: still zero
    np.testing.assert_allclose(model.forward(params, config, ids).output[0, :, 1], 10.0)
    params["transformer/layer_0/attn/value"]["w"] = np.array([[2.0], [0.0]])  # replaced
    np.testing.assert_allclose(model.forward(params, config, ids).output[0, :, 1], 18.0)


def test_ablating_a_compiled_head_in_place_takes_effect():
    compiled = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={"a", "b"}, max_seq_len=4, compiler_bos="BOS"
    )
    assert compiled.apply(["BOS", "a", "b"]).decoded == ["BOS", 2, 2]
    compiled.params["transformer/layer_0/attn/value"]["w"][:] = 0
    out = compiled.apply(["BOS", "a", "b"], strict=False)
    assert out.decoded != ["BOS", 2, 2]


def test_relu_in_place_then_flush_is_relu_then_flush_bit_for_bit():
    values = [-0.0, 0.0, -1.0, 2.0, 1e-31, -1e-31, 3e-30, np.nan, np.inf, -np.inf, 1e-45]
    for dtype in (np.float32, np.float64):
        x = np.array(values * 3, dtype=dtype).reshape(3, -1)
        expected = model._flush(model.relu(x))
        got = model._activate(model.relu, x.copy())
        assert got.tobytes() == expected.tobytes()
        assert np.signbit(got[got == 0]).sum() == 0  # relu's zeros are +0.0


def test_other_activations_are_applied_then_flushed():
    x = np.array([[-2.0, 1e-31, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(model._activate(np.abs, x.copy()), [[2.0, 0.0, 3.0]])


def _sort_unique_model():
    return compiling.compile_rasp_to_model(
        lib.make_sort_unique(rasp.tokens, rasp.tokens), vocab={1, 2, 3, 4}, max_seq_len=4
    )


# 2 sequences: fewer than the vocab's rows, embedded directly; 30: from the batch's table.
@pytest.mark.parametrize("count", [2, 30])
def test_each_residual_is_the_one_before_plus_its_blocks_output(count):
    """The stage arrays are built when first read; residual k is still residual k - 1 plus
    block k's output, starting from the embeddings, and the last is the output."""
    compiled = _sort_unique_model()
    rng = np.random.default_rng(2)
    batch = [["compiler_bos", *rng.permutation([1, 2, 3, 4])[:3]] for _ in range(count)]
    out = compiled.apply_batch(batch)
    layers = compiled.model_config.num_layers
    assert len(out.layer_outputs) == len(out.residuals) == 2 * layers
    before = out.input_embeddings
    for block_output, residual in zip(out.layer_outputs, out.residuals):
        np.testing.assert_array_equal(residual, before + block_output)
        before = residual
    assert out.residuals[-1] is out.transformer_output
    assert out.layer_outputs[0] is out.layer_outputs[0]  # built once, then kept


@pytest.mark.parametrize("count", [2, 30])
def test_stages_read_after_an_edit_are_those_of_the_call(count):
    """Weights edited after a forward pass do not change the arrays it returns, even
    those built later, when first read."""
    compiled = _sort_unique_model()
    batch = [["compiler_bos", 4, 1, 3]] * count
    seen = compiled.apply_batch(batch)
    expected = {name: [a.copy() for a in seen[name]] for name in ("layer_outputs", "residuals")}
    expected["input_embeddings"] = seen.input_embeddings.copy()
    out = compiled.apply_batch(batch)
    compiled.params["token_embed"]["embeddings"] += 1.0
    compiled.params["pos_embed"]["embeddings"] += 1.0
    for linear in compiled.params.values():
        for array in linear.values():
            array *= 2.0
    np.testing.assert_array_equal(out.input_embeddings, expected["input_embeddings"])
    for name in ("layer_outputs", "residuals"):
        for a, b in zip(out[name], expected[name]):
            np.testing.assert_array_equal(a, b)


def test_outputs_with_stages_not_yet_built_copy_pickle_and_replace():
    import copy
    import dataclasses
    import pickle

    compiled = _sort_unique_model()
    batch = [["compiler_bos", 2, 4]] * 3
    reference = compiled.apply_batch(batch)
    fields = ("layer_outputs", "residuals", "input_embeddings")
    twins = [
        pickle.loads(pickle.dumps(compiled.apply_batch(batch))),
        copy.deepcopy(compiled.apply_batch(batch)),
        copy.copy(compiled.apply_batch(batch)),
        compiled.apply_batch(batch).replace(decoded=None),
        dataclasses.replace(compiled.apply_batch(batch)),
    ]
    forward = compiled.forward(compiled.params, np.array([[0, 1, 2]] * 3))
    raw = pickle.loads(pickle.dumps(forward.transformer_output))
    assert len(raw.residuals) == 2 * compiled.model_config.num_layers
    for twin in twins:
        assert sorted(dict(twin)) == sorted(reference.keys())
        for name in fields:
            np.testing.assert_array_equal(np.stack(twin[name]), np.stack(reference[name]))
    with pytest.raises(AttributeError, match="no attribute 'residual'"):
        reference.residual  # noqa: B018
