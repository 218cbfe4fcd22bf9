"""Warm compile time of library programs, A/B between two source trees.

A warm compile compiles the same program object again in the same process. Each round
starts one process per tree (alternating, so both see the same machine load), which
compiles each program `--warmup` times and then times `--repeats` compiles; the table
gives, per program and tree, the median of the rounds' medians and their min-max.

Run: python benchmarks/warm_compile_ab.py OLD_SRC NEW_SRC [--programs a,b] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {benchmarks!r})
import lib_programs
from tracr.compiler import compiling, lib
from tracr.rasp import rasp
wanted, warmup, repeats = {wanted!r}, {warmup}, {repeats}
out = {{}}
for name, program, vocab in lib_programs.programs(lib, rasp, "small", 5):
    if name not in wanted:
        continue
    def once():
        compiling.compile_rasp_to_model(program, vocab=vocab, max_seq_len=5, compiler_bos="BOS")
    for _ in range(warmup):
        once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    out[name] = statistics.median(times) * 1e3
print(json.dumps(out))
"""

_DEFAULT = "make_shuffle_dyck2,make_count_less_freq,make_shuffle_dyck,make_pair_balance"


def _run(src: str, wanted: list[str], warmup: int, repeats: int) -> dict[str, float]:
    code = _CHILD.format(
        benchmarks=os.path.dirname(os.path.abspath(__file__)),
        wanted=wanted,
        warmup=warmup,
        repeats=repeats,
    )
    env = dict(os.environ, PYTHONPATH=src)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_src")
    parser.add_argument("new_src")
    parser.add_argument("--programs", default=_DEFAULT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    wanted = args.programs.split(",")
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for tree, src in (("old", args.old_src), ("new", args.new_src)):
            runs[tree].append(_run(src, wanted, args.warmup, args.repeats))
    print("| program | old ms (min-max) | new ms (min-max) | new/old |")
    print("|---|---|---|---|")
    for name in wanted:
        cells = []
        for tree in ("old", "new"):
            ms = [run[name] for run in runs[tree]]
            cells.append((statistics.median(ms), min(ms), max(ms)))
        (old, *_), (new, *_) = cells
        shown = " | ".join(f"{m:.3f} ({lo:.3f}-{hi:.3f})" for m, lo, hi in cells)
        print(f"| {name} | {shown} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
