"""Save and load a CompressedModel: a .npz file (numpy only) or a .safetensors file.

`save` writes a `.safetensors` file when the path ends in `.safetensors`: the model file of
`tracr.export.save` (extra `export`), which `tracr.export.load`, the `tracr` command and
other safetensors readers open too. Any other path gets a .npz file, which needs nothing
but numpy. `load` tells the two apart by their first bytes (a .npz file is a zip
archive), whatever the file is called.

The .npz file holds W, the compiled model's parameters and unembedding, its config,
encoders and residual labels, the training history and the held-out report, so that a
loaded model applies without the RASP program. Nothing is pickled (`np.load` runs with
allow_pickle=False). Token and output values must be None, bool, int, float or str.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from tracr.compiler import assemble
from tracr.compress import compressed_model as cm_lib
from tracr.compress import scoring
from tracr.craft import bases
from tracr.transformer import encoder
from tracr.transformer import model as model_lib

FORMAT = "tracr.compress/1"
_CONFIG_FIELDS = ("num_heads", "num_layers", "key_size", "mlp_hidden_size", "causal", "d_model")


SAFETENSORS_SUFFIX = ".safetensors"
_ZIP_MAGIC = b"PK"  # every zip archive, hence every .npz file, starts with these bytes


def save(cm: cm_lib.CompressedModel, path: str | os.PathLike) -> None:
    """Writes `cm` to `path`: a .safetensors file where the name ends in `.safetensors`
    (through `tracr.export.save`), otherwise a .npz file."""
    if os.fspath(path).endswith(SAFETENSORS_SUFFIX):
        from tracr import export

        export.save(cm, path)
        return
    base = cm.model
    config = base.model_config
    if config.activation_function is not model_lib.relu or config.layer_norm:
        raise ValueError("only compiled models (ReLU MLPs, no layer norm) can be saved")
    compiled = base.get_compiled_model()
    enc = base.input_encoder
    out_enc = base.output_encoder
    meta = {
        "format": FORMAT,
        "config": {f: getattr(config, f) for f in _CONFIG_FIELDS},
        "residual_labels": base.residual_labels,
        "input_encoder": {
            "values": [_value(v) for v in _by_id(enc)],
            "bos": _value(enc.bos_token),
            "pad": _value(enc.pad_token),
            "max_seq_len": enc._max_seq_len,
        },
        "output_values": (
            [_value(v) for v in _by_id(out_enc)]
            if isinstance(out_enc, encoder.CategoricalEncoder)
            else None
        ),
        "categorical_sops": {k: [int(i) for i in v] for k, v in base.categorical_sops.items()},
        "unembed_at_every_layer": cm.unembed_at_every_layer,
        "history": None if cm.history is None else dataclasses.asdict(cm.history),
        "report": None if cm.report is None else dataclasses.asdict(cm.report),
    }
    arrays = {"W": cm.W, "unembed": compiled.unembed_matrix}
    for name, group in base.params.items():
        for key, value in group.items():
            arrays[f"params/{name}/{key}"] = value
    with open(path, "wb") as f:
        np.savez(f, metadata=np.asarray(json.dumps(meta)), **arrays)


def load(path: str | os.PathLike) -> cm_lib.CompressedModel:
    """Reads a CompressedModel written by `save`, from a .npz or a .safetensors file."""
    with open(path, "rb") as f:
        start = f.read(9)
    if start.startswith(_ZIP_MAGIC):
        return _load_npz(path)
    # A safetensors file: an 8-byte header length, then the JSON header.
    if len(start) == 9 and start[8:9] == b"{":
        return _load_safetensors(path)
    raise ValueError(
        f"{path} is neither a .npz nor a .safetensors file written by tracr.compress.save "
        f"(it starts with the bytes {start!r})"
    )


def _load_safetensors(path: str | os.PathLike) -> cm_lib.CompressedModel:
    from tracr import export

    loaded = export.load(path)
    if not isinstance(loaded, cm_lib.CompressedModel):
        raise ValueError(
            f"{path} holds a compiled model, not a compressed one: tracr.export.load reads "
            "it, and tracr.compress.compress(model, d) compresses it"
        )
    return loaded


def _load_npz(path: str | os.PathLike) -> cm_lib.CompressedModel:
    with np.load(path, allow_pickle=False) as data:
        if "metadata" not in data.files:
            raise ValueError(f"{path} is not a tracr.compress file: it has no metadata")
        meta = json.loads(str(data["metadata"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
        arrays = {k: data[k] for k in data.files if k != "metadata"}
    params: assemble.Params = {}
    for key, value in arrays.items():
        if key.startswith("params/"):
            name, _, leaf = key[len("params/") :].rpartition("/")
            params.setdefault(name, {})[leaf] = value
    base = _assembled(meta, params, arrays["unembed"])
    history = meta["history"] and cm_lib.TrainingHistory(**meta["history"])
    report = meta["report"] and scoring.FaithfulnessReport(**meta["report"])
    return cm_lib.CompressedModel(
        base, arrays["W"], meta["unembed_at_every_layer"], history or None, report or None
    )


def _assembled(meta, params, unembed) -> assemble.AssembledTransformerModel:
    config = model_lib.TransformerConfig(**meta["config"])
    enc = meta["input_encoder"]
    input_encoder = encoder.CategoricalEncoder(
        basis=[bases.BasisDirection("tokens", _unvalue(v)) for v in enc["values"]],
        enforce_bos=True,
        bos_token=_unvalue(enc["bos"]),
        pad_token=_unvalue(enc["pad"]),
        max_seq_len=enc["max_seq_len"],
    )
    categorical = meta["output_values"] is not None
    if categorical:
        values = [bases.BasisDirection("output", _unvalue(v)) for v in meta["output_values"]]
        output_encoder: encoder.Encoder = encoder.CategoricalEncoder(basis=values)
    else:
        output_encoder = encoder.NumericalEncoder()

    def get_compiled_model() -> assemble.CompiledTransformerModel:
        return assemble.CompiledTransformerModel(
            params, config, unembed, categorical, input_encoder.pad_encoding
        )

    def forward(params_, token_ids):
        return dataclasses.replace(get_compiled_model(), params=params_)(token_ids)

    return assemble.AssembledTransformerModel(
        forward=forward,
        get_compiled_model=get_compiled_model,
        params=params,
        model_config=config,
        residual_labels=meta["residual_labels"],
        input_encoder=input_encoder,
        output_encoder=output_encoder,
        categorical_sops={k: np.asarray(v) for k, v in meta["categorical_sops"].items()},
    )


def _by_id(enc: encoder.CategoricalEncoder) -> list[Any]:
    return [v for v, _ in sorted(enc.encoding_map.items(), key=lambda kv: kv[1])]


_TYPES = {"none": type(None), "bool": bool, "int": int, "float": float, "str": str}


def _value(value: Any) -> list:
    """A token or output value as JSON: [type name, value]."""
    for name, kind in _TYPES.items():
        if type(value) is kind or (name == "int" and isinstance(value, np.integer)):
            return [name, None if value is None else kind(value)]
    raise TypeError(
        f"cannot save the value {value!r} of type {type(value).__name__}: values must be "
        "None, bool, int, float or str"
    )


def _unvalue(pair: list) -> Any:
    name, value = pair
    return None if name == "none" else _TYPES[name](value)
