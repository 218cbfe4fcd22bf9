"""TransformerLens 4.3's own tracr converter agrees with our models once its key names are
fixed: our params follow the standard attention convention that converters expect."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.utilities import tracr as tl_tracr

from tests.export import programs
from tracr import export
from tracr.export import lens


def test_transformer_lens_4_is_installed():
    assert lens.major_version() >= 4


@pytest.mark.parametrize(
    "name", ["lib16/make_reverse", "lib16/make_hist", "lib16/make_sort_unique", "sort_freq"]
)
def test_transformer_lens_own_converter_agrees_once_keys_are_fixed(name):
    """TransformerLens 4.3's tracr converter writes fc_in/fc_out for the MLP and no unembed
    bias; with those fixed it loads strictly and, since our params use the standard
    attention scale, decodes like our model."""
    model, seqs, ref = programs.reference(name)
    converted = tl_tracr.make_tracr_transformer_bridge_state_dict(model, model.circuit.output)
    fixed = {
        key.replace("mlp.fc_in.", "mlp.in.").replace("mlp.fc_out.", "mlp.out."): value
        for key, value in converted.items()
    }
    fixed["head.bias"] = torch.zeros(fixed["head.weight"].shape[0])
    bridge = export.to_transformer_lens(model)  # any bridge of the right shape
    with torch.no_grad():
        for p in bridge.parameters():
            p.fill_(0.5)
    bridge.load_state_dict(fixed, strict=True)
    assert programs.same_outputs(lens.run(bridge, model, seqs), ref.decoded)
