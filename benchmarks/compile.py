"""Compile time, model size and forward speed of the library programs.

Run: python benchmarks/compile.py   (prints one table; numbers are wall-clock on this machine)
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import lib_programs  # a sibling script module

from tracr.compiler import compiling, lib
from tracr.rasp import rasp

LETTERS = {"a", "b", "c", "d"}


def _measure(name, program, vocab, max_seq_len, batch=256):
    start = time.perf_counter()
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=max_seq_len, compiler_bos="BOS"
    )
    compile_s = time.perf_counter() - start
    rng = random.Random(0)
    symbols = sorted(vocab, key=repr)
    seqs = [["BOS"] + [rng.choice(symbols) for _ in range(max_seq_len)] for _ in range(batch)]
    model.apply(seqs[0])
    start = time.perf_counter()
    for seq in seqs[:20]:
        model.apply(seq)
    single_ms = (time.perf_counter() - start) / 20 * 1e3
    start = time.perf_counter()
    model.apply_batch(seqs)
    batch_ms = (time.perf_counter() - start) / batch * 1e3
    params = sum(a.size for module in model.params.values() for a in module.values())
    cfg = model.model_config
    return (
        f"| {name} | {len(vocab)} | {max_seq_len} | {compile_s:.3f} | {cfg.num_layers} | "
        f"{len(model.residual_labels)} | {params:,} | {single_ms:.2f} | {batch_ms:.3f} |"
    )


def _cold_import_s(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(3)]
    return min(times)


def main() -> None:
    print(
        "| program | vocab | max_seq_len | compile s | layers | d_model | params "
        "| forward ms (1 seq) | forward ms/seq (batch) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, n in (("small", 5), ("large", 16)):
        for name, program, vocab in lib_programs.programs(lib, rasp, size, n):
            print(_measure(name, program, vocab, n), flush=True)
    for n in (20, 40, 80):
        print(
            _measure("make_reverse", lib.make_reverse(rasp.tokens), LETTERS, n, batch=64),
            flush=True,
        )
    seqmap = rasp.SequenceMap(lambda t, i: (t + i) % 7, rasp.tokens, rasp.indices)
    print(
        _measure("SequenceMap(tokens, indices)", seqmap, set(range(300)), 10, batch=64), flush=True
    )
    print()
    print("| module | cold import s |")
    print("|---|---|")
    for module in ("tracr.rasp.rasp", "tracr.compiler.compiling"):
        print(f"| {module} | {_cold_import_s(module):.3f} |")


if __name__ == "__main__":
    main()
