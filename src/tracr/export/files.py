"""Save a compiled model to one `.safetensors` file and load it back, numpy only.

The file holds the weights as tensors named `<module>/<name>` (the keys of `model.params`,
e.g. `transformer/layer_0/attn/query/w`) plus `unembed`, and, in the header's
`__metadata__` under the key "tracr", one JSON document:

    format: "tracr-model"            what the file is
    format_version: 1                bumped when a reader must change; newer files are refused
    tracr_version                    the package that wrote it
    model_kind: "assembled"          which model class to rebuild (room for compressed models)
    config                           TransformerConfig fields (activation: "relu")
    input_encoder, output_encoder    the token lists in id order, BOS, PAD, max_seq_len
    residual_labels, categorical_sops, circuit

Tokens and output values must be JSON scalars (str, int, float, bool, None) so that they come
back as the same Python values; anything else is refused when saving. The round trip is
bit-exact: the tensors are stored in their own dtype.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import struct
from typing import Any

import numpy as np

from tracr.compiler import assemble, circuit
from tracr.craft import bases
from tracr.transformer import encoder, model

FORMAT = "tracr-model"
FORMAT_VERSION = 1
METADATA_KEY = "tracr"
UNEMBED = "unembed"
ASSEMBLED = "assembled"


class ModelFileError(ValueError):
    """A file that is not a readable tracr model; the message names the file and the problem."""


def _safetensors_numpy():
    from tracr import export

    return export.require("safetensors.numpy", "export")


def _version() -> str:
    try:
        return importlib.metadata.version("tracr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _json_value(value: Any, what: str, path: Any) -> Any:
    """`value` if JSON gives it back unchanged, else a ModelFileError."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ModelFileError(
        f"cannot save {path}: the {what} {value!r} ({type(value).__name__}) has no exact "
        "JSON form; tokens and output values must be str, int, finite float, bool or None"
    )


def _tokens(enc: encoder.CategoricalEncoder, what: str, path: Any) -> list[Any]:
    return [_json_value(enc.decoding_map[i], what, path) for i in range(len(enc.decoding_map))]


def _metadata(m: assemble.AssembledTransformerModel, path: Any) -> dict[str, Any]:
    config = m.model_config
    if config.activation_function is not model.relu:
        raise ModelFileError(f"cannot save {path}: only ReLU models can be saved")
    enc = m.input_encoder
    out_enc = m.output_encoder
    if isinstance(out_enc, encoder.CategoricalEncoder):
        output = {"kind": "categorical", "values": _tokens(out_enc, "output value", path)}
    elif out_enc is None:
        output = None
    else:
        output = {"kind": "numerical"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tracr_version": _version(),
        "model_kind": ASSEMBLED,
        "config": {
            "num_heads": config.num_heads,
            "num_layers": config.num_layers,
            "key_size": config.key_size,
            "mlp_hidden_size": config.mlp_hidden_size,
            "dropout_rate": config.dropout_rate,
            "layer_norm": config.layer_norm,
            "causal": config.causal,
            "d_model": config.d_model,
            "activation": "relu",
        },
        "input_encoder": {
            "kind": "categorical",
            "tokens": _tokens(enc, "token", path),
            "bos_token": _json_value(enc.bos_token, "BOS token", path),
            "pad_token": _json_value(enc.pad_token, "PAD token", path),
            "enforce_bos": enc.enforce_bos,
            "max_seq_len": enc.max_seq_len,
        },
        "output_encoder": output,
        "residual_labels": list(m.residual_labels),
        "categorical_sops": {k: [int(i) for i in v] for k, v in m.categorical_sops.items()},
        "mixture_tolerances": {k: float(v) for k, v in m.mixture_tolerances.items()},
        "circuit": None if m.circuit is None else m.circuit.to_json(),
    }


def save(m: assemble.AssembledTransformerModel, path: str | os.PathLike) -> None:
    """Writes the weights and the metadata of `m` to the `.safetensors` file `path`."""
    st = _safetensors_numpy()
    if not isinstance(m, assemble.AssembledTransformerModel):
        raise TypeError(f"save expects an AssembledTransformerModel, got {type(m).__name__}")
    metadata = json.dumps(_metadata(m, path), allow_nan=False)
    tensors = {
        f"{module}/{name}": np.ascontiguousarray(array)
        for module, arrays in m.params.items()
        for name, array in arrays.items()
    }
    tensors[UNEMBED] = np.ascontiguousarray(m.get_compiled_model().unembed_matrix)
    st.save_file(tensors, os.fspath(path), metadata={METADATA_KEY: metadata})


def _read_header(data: bytes, path: Any) -> dict[str, Any]:
    if len(data) < 8:
        raise ModelFileError(f"{path}: {len(data)} bytes, too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ModelFileError(
            f"{path}: truncated or not a safetensors file (its header claims {size} bytes, "
            f"the file has {len(data) - 8} after the length)"
        )
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: corrupt safetensors header ({err})") from err
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header


def _read_metadata(header: dict[str, Any], path: Any) -> dict[str, Any]:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(
            f"{path}: a safetensors file, but not a tracr model (no {METADATA_KEY!r} entry "
            "in its metadata); write models with tracr.export.save"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: corrupt tracr metadata ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: the metadata is not that of a {FORMAT!r} file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in format version {version} by tracr "
            f"{meta.get('tracr_version')}; this tracr ({_version()}) reads versions up to "
            f"{FORMAT_VERSION}: upgrade tracr"
        )
    if meta.get("model_kind") != ASSEMBLED:
        raise ModelFileError(
            f"{path}: holds a model of kind {meta.get('model_kind')!r}; this tracr loads "
            f"{ASSEMBLED!r} models"
        )
    return meta


def _params(tensors: dict[str, np.ndarray], config: model.TransformerConfig, path: Any):
    expected = ["token_embed/embeddings", "pos_embed/embeddings", UNEMBED]
    for layer in range(config.num_layers):
        for part in ("attn/query", "attn/key", "attn/value", "attn/linear"):
            expected += [f"transformer/layer_{layer}/{part}/{n}" for n in ("w", "b")]
        for part in ("mlp/linear_1", "mlp/linear_2"):
            expected += [f"transformer/layer_{layer}/{part}/{n}" for n in ("w", "b")]
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{path}: the tensors do not match the config (missing {missing}, unexpected {extra})"
        )
    params: assemble.Params = {
        "token_embed": {"embeddings": tensors["token_embed/embeddings"]},
        "pos_embed": {"embeddings": tensors["pos_embed/embeddings"]},
    }
    for key in expected[3:]:
        module, name = key.rsplit("/", 1)
        params.setdefault(module, {})[name] = tensors[key]
    return params


def load(path: str | os.PathLike) -> assemble.AssembledTransformerModel:
    """Reads a model written by `save`; raises ModelFileError naming the file and problem."""
    st = _safetensors_numpy()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the file ({err})") from err
    meta = _read_metadata(_read_header(data, path), path)
    try:
        tensors = st.load(data)
    except Exception as err:  # safetensors raises its own error types for bad files
        raise ModelFileError(f"{path}: corrupt safetensors data ({err})") from err
    try:
        return _build(meta, tensors, path)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: inconsistent tracr metadata ({err!r})") from err


def _build(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: Any):
    c = meta["config"]
    if c["activation"] != "relu":
        raise ModelFileError(f"{path}: unknown activation {c['activation']!r}")
    config = model.TransformerConfig(
        num_heads=c["num_heads"],
        num_layers=c["num_layers"],
        key_size=c["key_size"],
        mlp_hidden_size=c["mlp_hidden_size"],
        dropout_rate=c["dropout_rate"],
        layer_norm=c["layer_norm"],
        causal=c["causal"],
        d_model=c["d_model"],
    )
    e = meta["input_encoder"]
    input_encoder = encoder.CategoricalEncoder(
        basis=[bases.BasisDirection("tokens", t) for t in e["tokens"]],
        enforce_bos=e["enforce_bos"],
        bos_token=e["bos_token"],
        pad_token=e["pad_token"],
        max_seq_len=e["max_seq_len"],
    )
    o = meta["output_encoder"]
    if o is None:
        output_encoder = None
    elif o["kind"] == "categorical":
        output_encoder = encoder.CategoricalEncoder(
            basis=[bases.BasisDirection("output", v) for v in o["values"]]
        )
    else:
        output_encoder = encoder.NumericalEncoder()
    loaded = assemble.build_model(
        params=_params(tensors, config, path),
        config=config,
        unembed=tensors[UNEMBED],
        categorical_output=isinstance(output_encoder, encoder.CategoricalEncoder),
        input_encoder=input_encoder,
        output_encoder=output_encoder,
        residual_labels=list(meta["residual_labels"]),
        categorical_sops={
            k: np.asarray(v, dtype=np.int64) for k, v in meta["categorical_sops"].items()
        },
        mixture_tolerances=meta.get("mixture_tolerances", {}),
    )
    if meta["circuit"] is not None:
        loaded.circuit = circuit.Circuit.from_json(meta["circuit"])
    return loaded
