"""GPU check for tracr.compress: the same run on CUDA and CPU, with timings.

Run (on a machine whose torch sees a GPU): python benchmarks/compress_gpu_check.py
Prints, for reverse at d = 27: held-out accuracy, steps, seconds and the best step on each
device, how far the two training runs drift apart (loss per step, and W), and whether a
CUDA run repeats. compress's defaults: with the ones before (Adam 1e-2, eps 1e-8, no
warm-up) the start was the best W (best step 0), and at 1e-3 the two runs were 170% apart
after 7 steps.
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
            f"{cm.history.seconds:.1f} s, best step {cm.history.best_step}, "
            f"held-out loss {cm.history.eval_loss[0]:.4f} -> {cm.history.eval_loss[-1]:.4f}"
        )
        print("  held-out loss:", " ".join(f"{x:.4g}" for x in cm.history.eval_loss))
    again = compress.compress(model, 27, device="cuda", **options)
    steps = min(len(runs[k].history.step_loss) for k in ("cuda", "cpu"))
    cuda, cpu = (np.asarray(runs[k].history.step_loss[:steps]) for k in ("cuda", "cpu"))
    drift = np.abs(cuda - cpu) / np.abs(cpu)
    print("relative |loss_cuda - loss_cpu| per step: first 10 max", f"{drift[:10].max():.1e},")
    print("  all steps max", f"{drift.max():.1e}, at the end {drift[-1]:.1e}")
    print("max |W_cuda - W_cpu| (best W) =", float(np.abs(runs["cuda"].W - runs["cpu"].W).max()))
    print("cuda run repeats exactly:", bool(np.array_equal(again.W, runs["cuda"].W)))


if __name__ == "__main__":
    main()
