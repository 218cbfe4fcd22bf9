"""Learned compression of the residual stream (superposition), Tracr report Section 5.

`compress(model, d)` trains W with PyTorch (extra `torch`); the `CompressedModel` it
returns runs in numpy. `sweep` compresses to several widths; `save` / `load` keep a
compressed model in one .npz file. The pictures in `tracr.compress.plots` need the extra
`plot` (matplotlib).
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
