"""GPU check for tracr.compress: the same run on CUDA and CPU, with timings.

Run (on a machine whose torch sees a GPU): python benchmarks/compress_gpu_check.py
Prints, for reverse (d_model 43) at d = 27: held-out accuracy, steps, seconds on each
device, the largest difference between the two W, and whether a CUDA run repeats.
"""

from __future__ import annotations

import numpy as np
import torch

from tracr import compress
from tracr.compiler import compiling, lib
from tracr.rasp import rasp


def main() -> None:
    model = compiling.compile_rasp_to_model(
        lib.make_reverse(rasp.tokens), {"a", "b", "c", "d"}, 5, compiler_bos="BOS"
    )
    options = dict(max_steps=600, n_held_out=256, patience=100, progress=False)
    runs = {}
    for device in ("cuda", "cpu"):
        cm = compress.compress(model, 27, device=device, **options)
        runs[device] = cm
        print(
            f"{device}: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, "
            f"held-out {cm.report.output_accuracy:.1%}, {len(cm.history.step_loss)} steps, "
            f"{cm.history.seconds:.1f} s, best step {cm.history.best_step}"
        )
    again = compress.compress(model, 27, device="cuda", **options)
    print("max |W_cuda - W_cpu| =", float(np.abs(runs["cuda"].W - runs["cpu"].W).max()))
    print("cuda run repeats exactly:", bool(np.array_equal(again.W, runs["cuda"].W)))


if __name__ == "__main__":
    main()
