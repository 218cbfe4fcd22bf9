"""Compiled models in the tools people use: safetensors files, PyTorch, TransformerLens.

Public functions (each imports its extra only when called, so `import tracr.export` stays
numpy-only):

- `save(model, path)` / `load(path)`: one `.safetensors` file with the weights and JSON
  metadata (config, encoders, residual labels, circuit); extra `export`
  (`pip install 'tracr[export]'`), numpy only.
- `to_torch(model)`: a `torch.nn.Module`; extra `torch`.
- `to_transformer_lens(model)`: a TransformerLens 4 `TransformerBridge` (a `HookedTransformer`
  where TransformerLens 3.x is installed); extra `lens`.

Each takes a compiled model (`AssembledTransformerModel`) or a compressed one
(`tracr.compress.CompressedModel`): a compressed model saves with its W, training history
and report and loads back as a CompressedModel; it exports as the plain transformer of
width d that computes it, `CompressedModel.as_model()`.

Modules: `files` (save/load), `torch_model`, `lens`.
"""

from __future__ import annotations

from typing import Any


def save(model: Any, path: Any) -> None:
    """Writes `model` (an AssembledTransformerModel or a CompressedModel) to one
    `.safetensors` file."""
    from tracr.export import files

    files.save(model, path)


def load(path: Any) -> Any:
    """Reads a model written by `save`, of the class it was saved as; it runs like the
    original, bit for bit, without the program."""
    from tracr.export import files

    return files.load(path)


def to_torch(model: Any, *, dtype: Any = None) -> Any:
    """The model as a `torch.nn.Module` (float32 unless `dtype` is given)."""
    from tracr.export import torch_model

    return torch_model.to_torch(model, dtype=dtype)


def to_transformer_lens(model: Any, *, dtype: Any = None) -> Any:
    """The model as a TransformerLens 4 `TransformerBridge` (3.x: a `HookedTransformer`),
    every weight loaded with strict=True."""
    from tracr.export import lens

    return lens.to_transformer_lens(model, dtype=dtype)


def as_assembled(model: Any, caller: str) -> Any:
    """`model` as an AssembledTransformerModel to export: itself, or for a CompressedModel
    its d-wide transformer `as_model()`; anything else is a TypeError naming its type."""
    from tracr.compiler import assembled_model
    from tracr.compress import compressed_model

    if isinstance(model, compressed_model.CompressedModel):
        return model.as_model()
    if isinstance(model, assembled_model.AssembledTransformerModel):
        return model
    raise TypeError(
        f"{caller} expects an AssembledTransformerModel or a CompressedModel, got "
        f"{type(model).__name__}"
    )


def require(module: str, extra: str) -> Any:
    """Imports `module`, or raises ImportError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this needs the {module.split('.')[0]!r} package: pip install 'tracr[{extra}]'"
        ) from err
