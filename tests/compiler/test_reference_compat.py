"""Details of the reference's public API that scripts rely on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tracr.compiler import assemble, assembled_model, compiling, lib, readout
from tracr.rasp import rasp


def test_selector_width_column_has_the_reference_label():
    hist = lib.make_hist()
    model = compiling.compile_rasp_to_model(hist, vocab={"a", "b"}, max_seq_len=3)
    column = f"{hist.label}_selector_width_attn_output"
    assert column in model.residual_labels
    assert not [label for label in model.residual_labels if label.startswith("_hidden")]
    # Sorted with the SOp's own columns, as in the reference's residual order.
    index = model.residual_labels.index(column)
    assert model.residual_labels[index - 1] == f"{hist.label}:3"


def test_output_is_a_mapping_like_the_reference_chex_dataclass():
    model = compiling.compile_rasp_to_model(
        lib.make_reverse(rasp.tokens), vocab={1, 2}, max_seq_len=3, compiler_bos="BOS"
    )
    out = model.apply(["BOS", 1, 2])
    assert out["decoded"] == ["BOS", 2, 1]
    assert list(out.keys()) == [f.name for f in dataclasses.fields(out)]
    assert "residuals" in out and len(out) == 7
    assert dict(out)["unembedded"] is out.unembedded
    changed = out.replace(decoded=["x"])
    assert changed.decoded == ["x"] and out.decoded == ["BOS", 2, 1]
    assert changed.residuals is out.residuals
    np.testing.assert_array_equal(out["transformer_output"], out.transformer_output)
    with pytest.raises(KeyError, match="nope"):
        out["nope"]


def test_assemble_keeps_the_reference_names():
    # The runnable model moved to `assembled_model`; scripts import it from `assemble`.
    for name in [
        "AssembledTransformerModel",
        "AssembledTransformerModelOutput",
        "CompiledTransformerModel",
        "CompiledTransformerModelOutput",
        "Params",
        "build_model",
        "decode",
        "read_scores",
        "unembed",
        "NONE_THRESHOLD",
        "MIXTURE_TOLERANCE",
        "MANY_POSITIONS",
    ]:
        assert getattr(assemble, name) is getattr(assembled_model, name), name
    for name in ["decode", "read_scores", "unembed", "NONE_THRESHOLD"]:  # from readout
        assert getattr(assembled_model, name) is getattr(readout, name), name
    model = compiling.compile_rasp_to_model(rasp.tokens, vocab={1}, max_seq_len=1)
    assert isinstance(model, assemble.AssembledTransformerModel)
    assert callable(assemble.assemble_craft_model)
