"""How long an exhaustive `tracr verify` takes, and where the time goes.

Run: python benchmarks/verify.py   (prints one table; wall-clock seconds on this machine)

Each row compiles a lib program, then checks the model against `rasp.evaluate` on every
input of every length up to max_seq_len (`tracr.verifying.verify`, what `tracr verify`
runs). The last two columns time the halves apart on the same inputs: the evaluator alone
(a Python loop over inputs) and the model alone (`apply_batch` in chunks of 2048).
"""

from __future__ import annotations

import itertools
import time

from tracr import verifying
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

CASES = [
    ("make_sort", 4, 5),
    ("make_sort", 8, 5),
    ("make_sort", 8, 6),  # 299,592 inputs: the figure quoted in the README
    ("make_sort_unique", 8, 6),
    ("make_hist", 8, 6),
]


def _program(name: str, max_seq_len: int) -> rasp.SOp:
    if name == "make_sort":
        return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=max_seq_len, min_key=1)
    if name == "make_sort_unique":
        return lib.make_sort_unique(rasp.tokens, rasp.tokens)
    return getattr(lib, name)()


def main() -> None:
    header = f"{'program':<18}{'vocab':>6}{'n':>3}{'inputs':>10}{'verify s':>10}"
    print(header + f"{'inputs/s':>10}{'eval s':>9}{'model s':>9}  result")
    for name, vocab_size, max_seq_len in CASES:
        program = _program(name, max_seq_len)
        model = compiling.compile_rasp_to_model(
            program, vocab=range(1, vocab_size + 1), max_seq_len=max_seq_len
        )
        start = time.perf_counter()
        result = verifying.verify(model, program)
        seconds = time.perf_counter() - start
        inputs = [list(x) for x in verifying.all_inputs(range(1, vocab_size + 1), max_seq_len)]
        start = time.perf_counter()
        for x in inputs:
            rasp.evaluate(program, x)
        evaluating = time.perf_counter() - start
        start = time.perf_counter()
        bos = model.input_encoder.bos_token
        for chunk in (
            itertools.batched(inputs, 2048)
            if hasattr(itertools, "batched")
            else [inputs[i : i + 2048] for i in range(0, len(inputs), 2048)]
        ):
            model.apply_batch([[bos, *x] for x in chunk], strict=True)
        running = time.perf_counter() - start
        outcome = "ok" if result.ok else f"{result.mismatch} MISMATCHES"
        print(
            f"{name:<18}{vocab_size:>6}{max_seq_len:>3}{result.total:>10,}{seconds:>10.1f}"
            f"{result.total / seconds:>10,.0f}{evaluating:>9.1f}{running:>9.1f}  {outcome}"
        )


if __name__ == "__main__":
    main()
