"""tracr.export.to_torch: the same outputs and activations as the numpy model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.export import programs
from tracr import export
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

TOLERANCE = 1e-5


def _close(got, want, mask=None):
    """Max |difference| of a torch tensor and a numpy array, at real positions."""
    diff = np.abs(got.detach().numpy().astype(np.float64) - want.astype(np.float64))
    if mask is not None:
        diff = diff[mask.numpy()]
    return float(diff.max(initial=0.0))


@pytest.mark.parametrize("name", programs.NAMES)
def test_torch_matches_numpy(name):
    model, seqs, ref = programs.reference(name)
    net = export.to_torch(model)
    ids, mask = net.encode(seqs)
    with torch.no_grad():
        out = net(ids, mask, return_activations=True)
    assert programs.same_outputs(net.decode(out.logits, mask), ref.decoded)
    acts = out.activations
    np.testing.assert_array_equal(acts["hook_embed"].numpy(), ref.input_embeddings)
    for layer in range(model.model_config.num_layers):
        block = f"blocks.{layer}"
        assert _close(acts[f"{block}.hook_attn_out"], ref.layer_outputs[2 * layer], mask) <= (
            TOLERANCE
        )
        assert _close(acts[f"{block}.hook_resid_mid"], ref.residuals[2 * layer], mask) <= TOLERANCE
        assert _close(acts[f"{block}.hook_mlp_out"], ref.layer_outputs[2 * layer + 1], mask) <= (
            TOLERANCE
        )
        assert _close(acts[f"{block}.hook_resid_post"], ref.residuals[2 * layer + 1], mask) <= (
            TOLERANCE
        )
        visible = np.isfinite(ref.attn_logits[layer]) & (ref.attn_logits[layer] > -1e29)
        scores = acts[f"{block}.attn.hook_attn_scores"].numpy()
        np.testing.assert_allclose(
            scores[visible], ref.attn_logits[layer][visible], rtol=1e-5, atol=1e-4
        )
    assert _close(out.residual, ref.transformer_output, mask) <= TOLERANCE


def test_causal_model_matches_numpy():
    model = compiling.compile_rasp_to_model(
        lib.make_frac_prevs(rasp.tokens == "a"), {"a", "b"}, 6, causal=True, compiler_bos="BOS"
    )
    seqs = [["BOS", *s] for s in (list("abab"), list("bba"), list("aaaaab"), list("b"))]
    net = export.to_torch(model)
    assert net.causal
    ref = model.apply_batch(seqs)
    assert net.run(seqs) == ref.decoded
    ids, mask = net.encode(seqs)
    with torch.no_grad():
        out = net(ids, mask, return_activations=True)
    pattern = out.activations["blocks.0.attn.hook_pattern"]
    assert float(pattern.triu(diagonal=1).abs().max()) == 0.0  # no query sees a later key


def test_float32_by_default_and_float64_on_request():
    model = programs.compiled("reverse")[1]
    assert export.to_torch(model).W_E.dtype == torch.float32
    net = export.to_torch(model, dtype=torch.float64)
    assert net.W_E.dtype == torch.float64
    assert net.run([["BOS", "a", "b", "c"]]) == [["BOS", "c", "b", "a"]]


def test_weights_have_transformer_lens_shapes():
    model = programs.compiled("sort_freq")[1]
    cfg = model.model_config
    net = export.to_torch(model)
    block = net.blocks[0]
    assert tuple(block.W_Q.shape) == (cfg.n_heads, cfg.d_model, cfg.d_head)
    assert tuple(block.W_O.shape) == (cfg.n_heads, cfg.d_head, cfg.d_model)
    assert tuple(block.W_in.shape) == (cfg.d_model, cfg.d_mlp)
    assert tuple(net.W_pos.shape) == (6, cfg.d_model)  # max_seq_len 5, plus BOS
    assert tuple(net.W_U.shape) == (cfg.d_model, 4)  # output values 1..4


def test_encode_rejects_bad_input():
    net = export.to_torch(programs.compiled("reverse")[1])
    with pytest.raises(ValueError, match="BOS"):
        net.encode([["a", "b"]])
    with pytest.raises(ValueError, match="not in the vocab"):
        net.encode([["BOS", "z"]])
    with pytest.raises(ValueError, match="non-empty"):
        net.encode([])


def test_to_torch_rejects_other_objects():
    with pytest.raises(TypeError, match="AssembledTransformerModel"):
        export.to_torch("a model")
