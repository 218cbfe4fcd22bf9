"""Learned compression of the residual stream (superposition), Tracr report Section 5.

`compress(model, d)` trains W with PyTorch (extra `torch`); the `CompressedModel` it
returns runs in numpy. Plots need the extra `plot`.
"""

from tracr.compress.compressed_model import CompressedModel, TrainingHistory
from tracr.compress.scoring import FaithfulnessReport
from tracr.compress.training import compress

__all__ = ["CompressedModel", "FaithfulnessReport", "TrainingHistory", "compress"]
