"""The torch forward used in training computes what the numpy forward computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import cases
from tracr.compiler import compiling
from tracr.compress import compressed_model, torch_forward


def _encode(model, inputs):
    encoded = [model.input_encoder.encode(["BOS", *xs]) for xs in inputs]
    width = max(map(len, encoded))
    ids = np.full((len(encoded), width), model.input_encoder.pad_encoding)
    mask = np.zeros((len(encoded), width), dtype=bool)
    for row, seq in enumerate(encoded):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = True
    return ids, mask


@pytest.mark.parametrize("layout", [True, False], ids=["unembed_every_layer", "width_d"])
@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_torch_and_numpy_compressed_forwards_agree(case, layout):
    model = compiling.compile_rasp_to_model(
        case.make_program(), case.vocab, case.max_seq_len, compiler_bos="BOS"
    )
    d_model = len(model.residual_labels)
    # A W near a real compression (the identity on the first d directions) plus noise,
    # so that attention stays as sharp as compiled and every code path is exercised.
    d = max(1, d_model - 2)
    rng = np.random.default_rng(0)
    W = np.eye(d, d_model) + 0.01 * rng.standard_normal((d, d_model))
    ids, mask = _encode(model, case.inputs)
    want = compressed_model.compressed_forward(
        model.params, model.model_config, W, ids, mask, unembed_at_every_layer=layout
    )
    frozen = torch_forward.frozen_weights(
        model.params, model.model_config, "cpu", dtype=torch.float64
    )
    embedded, layers, output = torch_forward.forward(
        frozen,
        torch.as_tensor(W),
        torch.as_tensor(ids),
        torch.as_tensor(mask),
        unembed_at_every_layer=layout,
    )
    real = mask[..., None]  # padded positions may differ (numpy does not mask queries)
    scale = max(1.0, float(np.abs(want.output).max()))
    assert len(layers) == len(want.layer_outputs)
    for got, expected in zip(layers, want.layer_outputs):
        np.testing.assert_allclose(got.numpy() * real, expected * real, atol=1e-6 * scale)
    np.testing.assert_allclose(output.numpy() * real, want.output * real, atol=1e-6 * scale)
    np.testing.assert_allclose(embedded.numpy(), want.input_embeddings @ W.T @ W, atol=1e-9)


def test_without_W_the_torch_forward_is_the_compiled_model():
    case = next(c for c in cases.CASES if c.name == "sort_unique")
    model = compiling.compile_rasp_to_model(
        case.make_program(), case.vocab, case.max_seq_len, compiler_bos="BOS"
    )
    ids, mask = _encode(model, case.inputs)
    compiled = model.forward(model.params, ids).transformer_output
    frozen = torch_forward.frozen_weights(
        model.params, model.model_config, "cpu", dtype=torch.float64
    )
    _, layers, output = torch_forward.forward(
        frozen, None, torch.as_tensor(ids), torch.as_tensor(mask)
    )
    real = mask[..., None]
    np.testing.assert_allclose(output.numpy() * real, compiled.output * real, atol=1e-5)


def test_the_frozen_blocks_take_no_gradient():
    """Only W trains: the compiled weights stay as compiled."""
    model = compiling.compile_rasp_to_model(
        cases.CASES[0].make_program(), cases.CASES[0].vocab, 3, compiler_bos="BOS"
    )
    frozen = torch_forward.frozen_weights(model.params, model.model_config, "cpu")
    assert frozen.blocks and not any(
        p.requires_grad for block in frozen.blocks for p in block.parameters()
    )
