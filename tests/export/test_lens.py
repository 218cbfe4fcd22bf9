"""tracr.export.to_transformer_lens: a TransformerBridge that loads strictly and computes
what the numpy model computes, read through the bridge's own hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.compress import helpers
from tests.export import programs
from tracr import export
from tracr.compiler import compiling, lib
from tracr.export import lens
from tracr.rasp import rasp

TOLERANCE = 1e-5
# A compressed model's W is dense, so its float32 sums differ between backends by a few
# 1e-6 (see tests/export/test_compressed.py); 1e-4 is well above that and 100 times below
# scoring.ATOL, the distance at which a compressed number counts as wrong.
COMPRESSED_TOLERANCE = 1e-4


def _max_diff(got, want, mask) -> float:
    diff = np.abs(got.detach().numpy().astype(np.float64) - want.astype(np.float64))
    return float(diff[mask.numpy()].max(initial=0.0))


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("name", programs.NAMES)
def test_bridge_matches_numpy(name):
    model, seqs, ref = programs.reference(name)
    bridge = export.to_transformer_lens(model)
    assert programs.same_outputs(lens.run(bridge, model, seqs), ref.decoded)
    for rows, ids, mask in lens.batches(model, seqs):
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids, attention_mask=mask.long())
        width = ids.shape[1]
        checks = {"hook_resid_pre": [ref.input_embeddings] + ref.residuals[1::2][:-1]}
        checks |= {"hook_attn_out": ref.layer_outputs[0::2], "hook_resid_mid": ref.residuals[0::2]}
        checks |= {"hook_mlp_out": ref.layer_outputs[1::2], "hook_resid_post": ref.residuals[1::2]}
        for hook, wanted in checks.items():
            for layer, want in enumerate(wanted):
                got = cache[f"blocks.{layer}.{hook}"]
                assert _max_diff(got, want[rows][:, :width], mask) <= TOLERANCE, hook
        for layer, want in enumerate(ref.attn_logits):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"].numpy()  # [B, H, T, S]
            real = mask.numpy()[:, None, :, None] & np.ones(pattern.shape, dtype=bool)
            want = _softmax(want[rows][:, :, :width, :width])
            np.testing.assert_allclose(pattern[real], want[real], atol=TOLERANCE)


def test_config_describes_the_compiled_model():
    program, model, vocab, max_seq_len = programs.compiled("sort_freq")
    cfg = export.to_transformer_lens(model).cfg
    mc = model.model_config
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads) == (mc.n_layers, mc.d_model, mc.n_heads)
    assert (cfg.d_head, cfg.d_mlp) == (mc.d_head, mc.d_mlp)
    assert cfg.d_vocab == len(vocab) + 2  # BOS and PAD
    assert cfg.d_vocab_out == 4  # sort_freq over {1, 2, 3, 4} outputs one of 4 values
    assert cfg.n_ctx == max_seq_len + 1
    assert cfg.act_fn == "relu" and cfg.normalization_type is None
    assert cfg.attention_dir == "bidirectional"


def test_every_weight_is_loaded_strictly():
    model = programs.compiled("sort_freq")[1]
    bridge = export.to_transformer_lens(model)
    ours = lens.state_dict(model)
    lens.load_weights(bridge, ours)  # load_state_dict(strict=True): no key missing or extra
    buffers = dict(bridge.named_buffers())
    loaded = {k: v for k, v in bridge.state_dict().items() if k not in buffers}
    assert set(loaded) == set(ours)
    for key, value in ours.items():
        assert torch.equal(loaded[key], value), key


def test_unembedding_follows_the_output_encoder():
    model = programs.compiled("lib16/make_sort_unique")[1]
    w_u = export.to_transformer_lens(model).W_U.detach().numpy()  # [d_model, d_vocab_out]
    for value, column in model.output_encoder.encoding_map.items():
        row = model.residual_labels.index(f"{model.circuit.output}:{value}")
        assert w_u[row, column] == 1.0 and w_u[:, column].sum() == 1.0


def test_causal_bridge_matches_numpy():
    model = compiling.compile_rasp_to_model(
        lib.make_frac_prevs(rasp.tokens == "a"), {"a", "b"}, 6, causal=True, compiler_bos="BOS"
    )
    bridge = export.to_transformer_lens(model)
    assert bridge.cfg.attention_dir == "causal"
    seqs = [["BOS", *s] for s in (list("abab"), list("bba"), list("aaaaab"), list("b"))]
    assert programs.same_outputs(lens.run(bridge, model, seqs), model.apply_batch(seqs).decoded)


def test_read_sop_gives_an_intermediate_value():
    model = programs.compiled("lib16/make_sort_freq")[1]
    bridge = export.to_transformer_lens(model)
    tokens = [3, 1, 3, 7, 3, 1]
    ((_, ids, mask),) = lens.batches(model, [["BOS", *tokens]])
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids, attention_mask=mask.long())
    hist = model.circuit.nodes[3].label  # SelectorWidth "hist_<id>": the count of each token
    assert model.circuit[hist].expr == "SelectorWidth"
    last = f"blocks.{model.model_config.n_layers - 1}.hook_resid_post"
    columns = lens.read_sop(model, cache[last], hist)[0, 1:]  # [pos, values]
    values = [int(label.split(":")[1]) for label in lens.value_labels(model, hist)]
    assert [values[i] for i in columns.argmax(dim=-1).tolist()] == [3, 2, 3, 1, 3, 2]


def test_read_sop_rejects_unknown_labels():
    model = programs.compiled("reverse")[1]
    with pytest.raises(KeyError, match="nope"):
        lens.read_sop(model, np.zeros((1, 2, model.model_config.d_model)), "nope")


@pytest.mark.parametrize("name", ["frac_prevs", "reverse"])
def test_a_compressed_model_exports_as_its_d_wide_transformer(name):
    """The bridge of a CompressedModel is `cm.as_model()`, loaded strictly; it decodes what
    the numpy compressed model decodes, and read_sop reads its d-wide stream back through W."""
    cm = helpers.trained(name)
    bridge = export.to_transformer_lens(cm)
    assert bridge.cfg.d_model == cm.d < cm.d_model
    lens.load_weights(bridge, lens.state_dict(cm.as_model()))  # strict: every key, no more
    seqs = helpers.every_input(helpers.vocab(cm.model), 3)
    assert programs.same_outputs(lens.run(bridge, cm, seqs), cm.apply_batch(seqs).decoded)
    want = cm.apply_batch(seqs)
    for rows, ids, mask in lens.batches(cm, seqs):
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids, attention_mask=mask.long())
        last = cache[f"blocks.{cm.model.model_config.n_layers - 1}.hook_resid_post"]
        width = ids.shape[1]
        assert _max_diff(last, want.residuals[-1][rows][:, :width], mask) <= COMPRESSED_TOLERANCE
        sop = "tokens"
        got = lens.read_sop(cm, last, sop)  # [batch, pos, 4]: one column per token, read back
        expected = cm.read(want.residuals[-1][rows][:, :width], sop)
        assert _max_diff(got, expected, mask) <= COMPRESSED_TOLERANCE
