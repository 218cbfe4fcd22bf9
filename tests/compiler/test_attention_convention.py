"""Compiled params follow the standard attention convention: logits = q.k / sqrt(d_head),
as in the reference, PyTorch's scaled_dot_product_attention and TransformerLens."""

from __future__ import annotations

import numpy as np
import pytest

from tests import cases
from tests.compiler import exactness
from tracr.compiler import compiling, lib
from tracr.rasp import rasp


def _logits_from_params(model, residual: np.ndarray, layer: int) -> np.ndarray:
    """[B, H, T, T] logits computed in float64 from the params alone."""
    p, cfg = model.params, model.model_config
    prefix = f"transformer/layer_{layer}/attn"
    x = residual.astype(np.float64)
    batch, seq, _ = x.shape

    def project(name):
        w, b = p[f"{prefix}/{name}"]["w"], p[f"{prefix}/{name}"]["b"]
        return (x @ w.astype(np.float64) + b).reshape(batch, seq, cfg.n_heads, cfg.d_head)

    q, k = project("query"), project("key")
    return np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(cfg.d_head)


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_attn_logits_are_q_dot_k_over_sqrt_key_size(case):
    model = compiling.compile_rasp_to_model(
        case.make_program(), vocab=case.vocab, max_seq_len=case.max_seq_len, compiler_bos="BOS"
    )
    out = model.apply_batch([["BOS", *xs] for xs in case.inputs])
    width = out.transformer_output.shape[1]
    lengths = np.array([len(xs) + 1 for xs in case.inputs])
    visible = (np.arange(width)[None, :] < lengths[:, None])[:, None, None, :]  # real keys
    before = [out.input_embeddings] + out.residuals[1::2]  # residual entering each layer
    for layer, logits in enumerate(out.attn_logits):
        want = _logits_from_params(model, before[layer], layer)
        mask = np.broadcast_to(visible, want.shape)
        np.testing.assert_allclose(logits[mask], want[mask], rtol=1e-5, atol=1e-3)


def test_key_size_above_one_is_exact():
    """With d_head > 1 the scaling matters (TransformerLens agreed on only 19 of 150 inputs
    of make_sort_freq(16) before it); the model stays exact on every input."""
    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    model = compiling.compile_rasp_to_model(
        program, vocab={1, 2, 3, 4}, max_seq_len=5, compiler_bos="BOS"
    )
    assert model.model_config.key_size > 1
    seqs = exactness.all_sequences({1, 2, 3, 4}, 4)
    assert exactness.mismatches(model, program, [s for s in seqs if len(set(s)) == len(s)]) == []
