"""to_torch on an accelerator: parity with the numpy model and forward time.

For every model of the export tests (tests/export/programs.py): up to LIMIT valid inputs,
decoded by the torch module on `--device` (default cuda) against the numpy model, the
largest final-residual difference, and the forward time of a batch of 256 random inputs of
full length on that device and on the CPU (float32, no_grad, best of 5).

Run: PYTHONPATH=src python benchmarks/export_torch_device.py [--device cuda] [--limit 1000]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.export import programs  # noqa: E402

from tracr import export  # noqa: E402

LIMITS = {"lib16/make_sort": 512, "lib16/make_nary_sequencemap": 128}


def _time(net, ids, mask, device) -> float:
    best = float("inf")
    with torch.no_grad():
        for _ in range(5):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(ids, mask)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args()
    print(f"device {args.device}: {torch.cuda.get_device_name() if 'cuda' in args.device else ''}")
    print("| model | inputs | decode mismatches | max residual diff | ms/256 device | ms/256 cpu |")
    print("|---|---|---|---|---|---|")
    for name in programs.NAMES:
        _, model, vocab, max_len = programs.compiled(name)
        seqs = programs.inputs(name, LIMITS.get(name, args.limit), seed=3)
        net = export.to_torch(model).to(args.device)
        bad, diff = 0, 0.0
        for i in range(0, len(seqs), 256):
            chunk = seqs[i : i + 256]
            ref = model.apply_batch(chunk)
            ids, mask = net.encode(chunk)
            with torch.no_grad():
                out = net(ids.to(args.device), mask.to(args.device))
            got = net.decode(out.logits, mask)
            bad += sum(not programs.same_outputs([a], [b]) for a, b in zip(got, ref.decoded))
            res = out.residual.cpu().numpy().astype(np.float64)
            diff = max(diff, float(np.abs(res - ref.transformer_output)[mask.numpy()].max()))
        rng = random.Random(0)
        symbols = sorted(vocab, key=repr)
        batch = [["BOS"] + [rng.choice(symbols) for _ in range(max_len)] for _ in range(256)]
        ids, mask = net.encode(batch)
        dev_s = _time(net, ids.to(args.device), mask.to(args.device), args.device)
        cpu_s = _time(export.to_torch(model), ids, mask, "cpu")
        row = f"| {name} | {len(seqs)} | {bad} | {diff:.1e} | {dev_s * 1e3:.2f} |"
        print(f"{row} {cpu_s * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
