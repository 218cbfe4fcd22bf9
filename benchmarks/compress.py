"""Learned residual-stream compression (tracr.compress) of five library programs.

Run: python benchmarks/compress.py [--out DIR] [--max-steps N] [--init random] [--width-d]
Prints one table: d_model, the rank of what the compiled blocks write (a W of that width
with the PCA start is exact, no training needed), the smallest d whose held-out output
accuracy is >= 99%, the per-SOp accuracies at that d and the training time (CPU here).
The search trains at d = rank - 1, rank - 2, ... and stops at the first d below 99%.
Also saves the frac_prevs embedding heatmaps (WᵀW, raw and normalised) and its sweep
plot under DIR (default benchmarks/out).

Below each program, the geometry of the passing W, measured against the two findings the
report states for its compressed models (NeurIPS 2023 version, contributions, Section 5):
"compressed models drop unnecessary features, and represent less important features in
superposition". A direction is unnecessary when no block and not the unembedding reads it
(its rows of W_Q, W_K, W_V, W_in and W_U are all zero); it counts as dropped when its column
of W is shorter than DROPPED (the PCA start gives unit columns). Two kept directions share
dimensions when the cosine of their columns exceeds SHARED in magnitude.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tracr import compress
from tracr.compiler import compiling, lib
from tracr.compress import compressed_model, inputs, plots
from tracr.rasp import rasp

LETTERS = {"a", "b", "c", "d"}
PROGRAMS = [
    ("frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "x"), {"x", "y"}, 5),
    ("sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), {1, 2, 3, 4}, 5),
    ("length", lib.make_length, LETTERS, 5),
    ("hist", lib.make_hist, LETTERS, 5),
    ("reverse", lambda: lib.make_reverse(rasp.tokens), LETTERS, 5),
]


def activation_rank(model) -> int:
    """The dimension of the span of everything the compiled model writes on valid inputs."""
    data = inputs.valid_inputs(model, np.random.default_rng(0), 20_000)
    out = model.forward(model.params, data.token_ids).transformer_output
    real = data.key_mask
    rows = np.concatenate([a[real] for a in (out.input_embeddings, *out.layer_outputs)])
    return int(np.linalg.matrix_rank(rows.astype(np.float64), tol=1e-6))


DROPPED = 0.25
SHARED = 0.1


def read_directions(model) -> np.ndarray:
    """[D] bool: residual directions some block or the unembedding reads."""
    read = np.any(model.get_compiled_model().unembed_matrix != 0, axis=1)
    for name, arrays in model.params.items():
        if name.endswith(compressed_model.READ_MODULES):
            read |= np.any(arrays["w"] != 0, axis=1)
    return read


def geometry(cm) -> str:
    """One line: unnecessary directions dropped, and kept directions sharing dimensions."""
    labels = cm.residual_labels
    read = read_directions(cm.model)
    norms = np.linalg.norm(cm.W, axis=0)
    dropped = norms < DROPPED
    cos = np.abs(cm.embedding_gram(normalise=True))
    kept = ~dropped
    cos[~kept, :] = 0
    cos[:, ~kept] = 0
    np.fill_diagonal(cos, 0)
    shared = np.flatnonzero(cos.max(axis=0) > SHARED)
    i, j = np.unravel_index(np.argmax(cos), cos.shape)
    return (
        f"unread {int((~read).sum())}, of them dropped {int((~read & dropped).sum())}; "
        f"read {int(read.sum())}, of them dropped {int((read & dropped).sum())}; "
        f"kept directions sharing dimensions: {len(shared)} of {int(kept.sum())}"
        f" (largest |cos| {cos[i, j]:.2f}: {labels[i]} ~ {labels[j]})"
    )


def search(model, rank: int, options: dict):
    """(smallest passing CompressedModel, every run) training downward from rank - 1."""
    runs = {}
    passing = None
    for d in range(min(rank, len(model.residual_labels) - 1), 0, -1):
        cm = compress.compress(model, d, **options)
        runs[d] = cm
        if cm.report.output_accuracy < 0.99:
            break
        passing = cm
    return passing, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--init", choices=["pca", "random"], default="pca")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="default: compress's, by init"
    )
    parser.add_argument(
        "--width-d", action="store_true", help="unembed_at_every_layer=False (d-wide blocks)"
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    options = dict(
        max_steps=args.max_steps,
        n_held_out=256,
        init=args.init,
        learning_rate=args.learning_rate,
        unembed_at_every_layer=not args.width_d,
        progress=False,
    )
    print(f"options: {options}, Adam, batch 128, seed 0, CPU")
    header = f"{'program':<12} {'vocab':>5} {'n':>2} {'d_model':>7} {'rank':>4} {'min d':>5}"
    print(header + "  held-out  runs  time[s]  per-SOp accuracy at min d")
    total = time.perf_counter()
    for name, make, vocab, n in PROGRAMS:
        model = compiling.compile_rasp_to_model(make(), vocab, n, compiler_bos="BOS")
        rank = activation_rank(model)
        started = time.perf_counter()
        best, runs = search(model, rank, options)
        seconds = time.perf_counter() - started
        shown = best or runs[max(runs)]  # no width passed: show the widest run
        report = shown.report
        held = "all" if report.exhaustive else str(report.n_inputs)
        sops = ", ".join(f"{k} {v:.1%}" for k, v in report.sop_accuracy.items())
        print(
            f"{name:<12} {len(vocab):>5} {n:>2} {shown.d_model:>7} {rank:>4} "
            f"{best.d if best else 'none':>5}  "
            f"{report.output_accuracy:>7.1%} {held:>4} {len(runs):>4} {seconds:8.1f}  {sops}"
        )
        tried = ", ".join(
            f"d={d}: {cm.report.output_accuracy:.1%} ({cm.history.seconds:.0f}s)"
            for d, cm in sorted(runs.items())
        )
        print(f"{'':<12} runs: {tried}")
        if best is not None:
            print(f"{'':<12} geometry at d={best.d}: {geometry(best)}")
        if name == "frac_prevs" and best is not None:
            for normalise in (False, True):
                fig = plots.plot_embedding_gram(best, normalise=normalise)
                suffix = "_normalised" if normalise else ""
                fig.savefig(os.path.join(args.out, f"frac_prevs_gram{suffix}.png"), dpi=110)
            below = runs.get(best.d - 1)
            if below is not None:
                fig = plots.plot_embedding_gram(below, normalise=True)
                fig.savefig(os.path.join(args.out, f"frac_prevs_gram_d{below.d}.png"), dpi=110)
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
