"""Numerical Maps over a numerical `length`: exact or refused, at growing max_seq_len.

For each function and size, compiles rasp.numerical(Map(f, rasp.numerical(make_length())))
and, when it compiles, checks every input length 1..N against the evaluator. Prints one
table row per function: "exact", "WRONG k/N" (a silently wrong model) or "refused".
Run it in two checkouts (PYTHONPATH=<checkout>/src) to compare versions.
"""

from __future__ import annotations

import math
import time

from tracr.compiler import compiling, lib
from tracr.rasp import rasp

FUNCTIONS = {
    "n + 1": lambda n: n + 1,
    "3 - 2n": lambda n: 3 - 2 * n,
    "n^2": lambda n: n * n,
    "sqrt(n)": math.sqrt,
    "1/n": lambda n: 1 / n,
    "n mod 3": lambda n: n % 3,
    "parity": lambda n: n % 2,
}
SIZES = (16, 32, 64, 100)


def _close(got, want) -> bool:
    return abs(got - want) <= max(1e-5 * abs(want), 1e-6)


def verdict(f, n: int) -> str:
    length = rasp.numerical(lib.make_length())
    program = rasp.numerical(rasp.Map(f, length, simplify=False))
    try:
        model = compiling.compile_rasp_to_model(
            program, vocab={"a"}, max_seq_len=n, compiler_bos="BOS"
        )
    except NotImplementedError:
        return "refused"
    inputs = [["BOS"] + ["a"] * k for k in range(1, n + 1)]
    decoded = model.apply_batch(inputs).decoded
    wrong = sum(
        not all(_close(g, f(k)) for g in row[1 : k + 1]) for k, row in zip(range(1, n + 1), decoded)
    )
    return "exact" if wrong == 0 else f"WRONG {wrong}/{n}"


def main() -> None:
    start = time.perf_counter()
    print(f"| f(n) | {' | '.join(f'N = {n}' for n in SIZES)} |")
    print(f"|---|{'---|' * len(SIZES)}")
    for name, f in FUNCTIONS.items():
        print(f"| {name} | {' | '.join(verdict(f, n) for n in SIZES)} |", flush=True)
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
