"""Forward time of the numpy model and its exports, and save/load time and file size.

Forward: a batch of 256 random inputs of length 16 (plus BOS) at vocab 16 / max_seq_len 16,
best of 5 runs, for the numpy forward pass (`model.forward`), the torch module (no_grad,
float32) and the TransformerLens bridge (no_grad, no cache). Save/load: `tracr.export.save`
and `load` of make_sort_freq at 16/16.

All on one CPU thread (numpy's BLAS and torch), so that the numbers compare the
implementations rather than thread scheduling on a shared machine.

Run: python benchmarks/export.py   (numbers are wall-clock on this machine)
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy and torch load their thread pools

import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tracr import export  # noqa: E402
from tracr.compiler import compiling, lib  # noqa: E402
from tracr.export import lens  # noqa: E402
from tracr.rasp import rasp  # noqa: E402

N = 16
DIGITS = set(range(N))
LETTERS = {chr(ord("a") + i) for i in range(N)}
BATCH = 256

PROGRAMS = [
    ("make_reverse", lambda: lib.make_reverse(rasp.tokens), LETTERS),
    ("make_hist", lib.make_hist, LETTERS),
    ("make_sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), DIGITS),
    (
        "make_sort",
        lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=N, min_key=1),
        DIGITS,
    ),
    ("make_sort_freq", lambda: lib.make_sort_freq(N), DIGITS),
    ("make_shuffle_dyck2", lib.make_shuffle_dyck2, set("(){}")),
]


def _best(f, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def _forward_row(name, make, vocab) -> str:
    model = compiling.compile_rasp_to_model(make(), vocab=vocab, max_seq_len=N, compiler_bos="BOS")
    rng = random.Random(0)
    symbols = sorted(vocab, key=repr)
    seqs = [["BOS"] + [rng.choice(symbols) for _ in range(N)] for _ in range(BATCH)]
    ids = np.array([model.input_encoder.encode(s) for s in seqs])
    net = export.to_torch(model)
    bridge = export.to_transformer_lens(model)
    t_ids, t_mask = lens.encode(model, seqs)
    with torch.no_grad():
        numpy_s = _best(lambda: model.forward(model.params, ids))
        torch_s = _best(lambda: net(t_ids, t_mask))
        lens_s = _best(lambda: bridge(t_ids, attention_mask=t_mask.long()))
    cfg = model.model_config
    return (
        f"| {name} | {cfg.n_layers} | {cfg.d_model} | {numpy_s * 1e3:.1f} | "
        f"{torch_s * 1e3:.1f} | {lens_s * 1e3:.1f} |"
    )


def _files_row() -> str:
    model = compiling.compile_rasp_to_model(
        lib.make_sort_freq(N), vocab=DIGITS, max_seq_len=N, compiler_bos="BOS"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "sort_freq.safetensors")
        save_s = _best(lambda: export.save(model, path))
        load_s = _best(lambda: export.load(path))
        size = os.path.getsize(path)
    return f"| make_sort_freq | {N} | {N} | {save_s * 1e3:.1f} | {load_s * 1e3:.1f} | {size:,} |"


def main() -> None:
    torch.set_num_threads(1)
    print(f"forward, batch of {BATCH} at max_seq_len {N} (ms, best of 5)")
    print("| program | layers | d_model | numpy | torch | TransformerLens bridge |")
    print("|---|---|---|---|---|---|")
    for name, make, vocab in PROGRAMS:
        print(_forward_row(name, make, vocab), flush=True)
    print()
    print("| program | vocab | max_seq_len | save ms | load ms | file bytes |")
    print("|---|---|---|---|---|---|")
    print(_files_row())


if __name__ == "__main__":
    main()
