"""This implementation against the reference Tracr, measured side by side in one run.

Run: make bench-reference   (creates .venv-ref with the reference, then runs this script)
  or python benchmarks/reference.py --reference-python .venv-ref/bin/python [--quick]

The reference (PyPI `tracr-pypi`, module `tracr`, with jax and dm-haiku) runs in a
subprocess of its own venv: this same file, started with `--worker`, imports whichever
`tracr` its interpreter has. Both sides build the same programs from the same library
names and time the same inputs. Every timing is the median of several runs with its
min-max; ratios are reference / ours (above 1: we are faster).

  Each sample is the mean time of as many calls as take MIN_SAMPLE_S (10 ms) at least, one
  call where that is longer.
  first compile: a program's first compile_rasp_to_model in a process that has imported
    everything and compiled other programs (one sample: caches keyed by content start
    empty for this program, but may hold blocks it shares with programs measured before)
  compile: warm compile_rasp_to_model, the program compiled again
  apply: one sequence of max_seq_len tokens through model.apply (the reference's is
    eager, as its users run it)
  batch: 256 sequences; ours is model.apply_batch (encoding, forward, one-hot check,
    decoding), the reference's is its forward under jax.jit on the ids (no decoding)
  frozen (ours only): `apply` after model.freeze() (read-only weights, no per-call check
    for in-place edits), and its ratio to the weight-read floor: one pass over every
    weight (np.count_nonzero of each array's bits), the least a forward pass must read
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

from lib_programs import programs  # a sibling script module

BATCH = 256
SIZES = (("small", 5), ("16/16", 16))


# A sample runs the call this many seconds at least, looping as often as that takes (as
# timeit's autorange does): one call of 0.2 ms is at the mercy of a single interrupt or
# context switch, which doubles its time; the mean of a few calls is not.
MIN_SAMPLE_S = 0.01


def _timings(fn, repeats: int) -> list[float]:
    """`repeats` samples of the seconds one call of fn takes (the mean of `loops` calls)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, math.ceil(MIN_SAMPLE_S / max(once, 1e-9)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) / loops)
    return times


def _inputs(vocab, n: int) -> list[list]:
    rng = random.Random(0)
    symbols = sorted(vocab, key=repr)
    return [["BOS"] + [rng.choice(symbols) for _ in range(n)] for _ in range(BATCH)]


def measure(name, program, vocab, n, *, reference: bool, repeats: int) -> dict:
    """One program at one size: compile, size, single apply and batch timings."""
    from tracr.compiler import compiling

    def compile_once():
        return compiling.compile_rasp_to_model(
            program, vocab=vocab, max_seq_len=n, compiler_bos="BOS"
        )

    start = time.perf_counter()
    model = compile_once()  # the program's first compile in this (warmed-up) process
    first_s = time.perf_counter() - start
    compile_s = _timings(compile_once, max(2, repeats // 2))
    params = sum(int(a.size) for module in model.params.values() for a in module.values())
    seqs = _inputs(vocab, n)
    model.apply(seqs[0])
    apply_s = _timings(lambda: model.apply(seqs[0]), repeats * 3)
    if reference:
        import jax
        import numpy as np

        ids = np.array([model.input_encoder.encode(s) for s in seqs])
        forward = jax.jit(model.forward)
        forward(model.params, ids).unembedded_output.block_until_ready()

        def batch():
            forward(model.params, ids).unembedded_output.block_until_ready()
    else:
        model.apply_batch(seqs)

        def batch():
            model.apply_batch(seqs)

    batch_s = _timings(batch, repeats)
    extra = {}
    if not reference:
        import numpy as np

        arrays = [
            a.view(f"u{a.itemsize}") for module in model.params.values() for a in module.values()
        ]  # counting non-zero bit patterns: a memory-bound pass
        extra["floor"] = _timings(lambda: [np.count_nonzero(a) for a in arrays], repeats * 3)
        model.freeze()
        model.apply(seqs[0])
        extra["frozen"] = _timings(lambda: model.apply(seqs[0]), repeats * 3)
    return {
        **extra,
        "name": name,
        "n": n,
        "params": params,
        "layers": model.model_config.num_layers,
        "first": [first_s],
        "compile": compile_s,
        "apply": apply_s,
        "batch": batch_s,
    }


def run_side(*, reference: bool, quick: bool, out) -> None:
    """Measures every program at every size, one JSON line each (errors too)."""
    from tracr.compiler import compiling, lib
    from tracr.rasp import rasp

    repeats = 3 if quick else 7
    # Imports and one-time set-up, before any measured compile: programs with every kind
    # of block (numerical and categorical MLPs and aggregates, a selector width) that
    # none of the measured ones shares a block with (other tokens, another length).
    for warm_up in (lib.make_frac_prevs(rasp.tokens == "z"), lib.make_sort_freq(3)):
        compiling.compile_rasp_to_model(
            warm_up, vocab={"y", "z"}, max_seq_len=3, compiler_bos="BOS"
        )
    for size, n in SIZES:
        for name, program, vocab in programs(lib, rasp, size, n):
            if reference and name == "make_nary_sequencemap" and n > 5:
                # the reference does not finish this one within minutes
                print(json.dumps({"name": name, "n": n, "error": "skipped"}), file=out)
                continue

            try:
                row = measure(name, program, vocab, n, reference=reference, repeats=repeats)
            except Exception as err:  # a program the implementation refuses or fails on
                row = {"name": name, "n": n, "error": f"{type(err).__name__}: {err}"[:80]}
            print(json.dumps(row), file=out, flush=True)


def _stat(times) -> str:
    if len(times) == 1:
        return f"{times[0] * 1e3:.2f}"
    return f"{statistics.median(times) * 1e3:.2f} [{min(times) * 1e3:.2f}-{max(times) * 1e3:.2f}]"


def _ratio(ref, ours) -> str:
    if not ref or not ours:
        return "-"
    return f"{statistics.median(ref) / statistics.median(ours):.1f}x"


def _cold_import_s(python: str, module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    times = [
        float(subprocess.check_output([python, "-c", code], env=env, cwd="/")) for _ in range(5)
    ]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", default=".venv-ref/bin/python")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_side(reference=True, quick=args.quick, out=sys.stdout)
        return

    import io

    ours_out = io.StringIO()
    print("measuring this implementation ...", file=sys.stderr, flush=True)
    run_side(reference=False, quick=args.quick, out=ours_out)
    ours = [json.loads(line) for line in ours_out.getvalue().splitlines()]
    print("measuring the reference (subprocess) ...", file=sys.stderr, flush=True)
    reference_python = os.path.abspath(args.reference_python)
    worker = [reference_python, os.path.abspath(__file__), "--worker"]
    if args.quick:
        worker.append("--quick")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(worker, capture_output=True, text=True, env=env, cwd="/", timeout=3600)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
    refs = {(r["name"], r["n"]): r for r in map(json.loads, done.stdout.splitlines())}

    print(
        "| program | n | params ours / ref | layers ours / ref | first compile ms ours | ref "
        "| ratio | compile ms ours | ref | ratio "
        "| apply ms ours | ref | ratio | batch-256 ms ours | ref (jit) | ratio "
        "| frozen apply ms | / floor |"
    )
    print("|---" * 18 + "|")
    for row in ours:
        ref = refs.get((row["name"], row["n"]), {})
        if "error" in row:
            print(f"| {row['name']} | {row['n']} | ours failed: {row['error']} |")
            continue
        note = ref.get("error")
        sizes = f"{row['params']:,} / " + (f"{ref['params']:,}" if not note else "-")
        layers = f"{row['layers']} / " + (str(ref["layers"]) if not note else "-")
        cells = [row["name"], str(row["n"]), sizes, layers]
        for key in ("first", "compile", "apply", "batch"):
            cells += [_stat(row[key]), "-" if note else _stat(ref[key])]
            cells.append("-" if note else _ratio(ref[key], row[key]))
        floor = statistics.median(row["floor"])
        cells += [_stat(row["frozen"]), f"{statistics.median(row['frozen']) / floor:.1f}x"]
        if note:
            cells.append(f"(reference: {note})")
        print("| " + " | ".join(cells) + " |")

    print()
    print("| cold import, median of 5 | s |")
    print("|---|---|")
    for module in ("numpy", "tracr.compiler.compiling"):
        print(f"| {module} (ours) | {_cold_import_s(sys.executable, module):.3f} |")
    for module in ("tracr.compiler.compiling",):
        ref_s = _cold_import_s(reference_python, module)
        print(f"| {module} (reference) | {ref_s:.3f} |")


if __name__ == "__main__":
    main()
