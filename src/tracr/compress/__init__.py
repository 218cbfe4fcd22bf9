"""Learned compression of the residual stream (superposition), Tracr report Section 5.

`compress(model, d)` trains W with PyTorch (extra `torch`); the `CompressedModel` it
returns runs in numpy. `sweep` compresses to several widths; `save` / `load` keep a
compressed model in one file: .npz (numpy only), or .safetensors (extra `export`), the
model file that `tracr.export` and the `tracr` command read. `CompressedModel.as_model()`
is the d-wide plain transformer that `tracr.export.to_torch` and `to_transformer_lens`
export. The pictures in `tracr.compress.plots` need the extra `plot` (matplotlib).
"""

from tracr.compress.compressed_model import CompressedModel, TrainingHistory
from tracr.compress.io import load, save
from tracr.compress.scoring import FaithfulnessReport
from tracr.compress.sweep import SweepResult, sweep
from tracr.compress.training import compress

__all__ = [
    "CompressedModel",
    "FaithfulnessReport",
    "SweepResult",
    "TrainingHistory",
    "compress",
    "load",
    "save",
    "sweep",
]
