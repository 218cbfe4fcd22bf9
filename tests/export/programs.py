"""The models every export is checked on: each case of `tests/cases.py` at its own small
size, and the 15 `lib` programs at vocab 16 / max_seq_len 16; with valid inputs for each.

Compiled models are cached per name, so the torch, TransformerLens and file tests share them.
"""

from __future__ import annotations

import functools
import itertools
import random
import string

from tests import cases
from tests.compiler import exactness
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

BOS = "BOS"
N = 16
DIGITS = set(range(N))
LETTERS = set(string.ascii_lowercase[:N])


def _padded(symbols: str) -> set:
    """`symbols` and enough letters to make a vocab of 16."""
    fill = [c for c in string.ascii_lowercase if c not in symbols]
    return set(symbols) | set(fill[: N - len(symbols)])


# name -> (program factory, vocab); all 15 programs of tracr.compiler.lib.
LIB16 = {
    "make_length": (lib.make_length, LETTERS),
    "make_reverse": (lambda: lib.make_reverse(rasp.tokens), LETTERS),
    "make_hist": (lib.make_hist, LETTERS),
    "make_sort_unique": (lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), DIGITS),
    "make_sort": (
        lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=N, min_key=1),
        DIGITS,
    ),
    "make_sort_freq": (lambda: lib.make_sort_freq(N), DIGITS),
    "make_frac_prevs": (lambda: lib.make_frac_prevs(rasp.tokens == "a"), LETTERS),
    "make_pair_balance": (lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), _padded("()")),
    "make_shuffle_dyck": (lambda: lib.make_shuffle_dyck(["()", "{}", "[]"]), _padded("(){}[]")),
    "make_shuffle_dyck2": (lib.make_shuffle_dyck2, _padded("(){}")),
    "shift_by": (lambda: lib.shift_by(2, rasp.tokens), LETTERS),
    "detect_pattern": (lambda: lib.detect_pattern(rasp.tokens, "abc"), LETTERS),
    "make_count_less_freq": (lambda: lib.make_count_less_freq(2), LETTERS),
    "make_count": (lambda: lib.make_count(rasp.tokens, "a"), LETTERS),
    "make_nary_sequencemap": (
        lambda: lib.make_nary_sequencemap(
            lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
        ),
        DIGITS,
    ),
}

NAMES = [c.name for c in cases.CASES] + [f"lib16/{name}" for name in LIB16]


@functools.cache
def compiled(name: str):
    """(program, model, vocab, max_seq_len) for a case name or "lib16/<lib function>"."""
    if name.startswith("lib16/"):
        make, vocab = LIB16[name.removeprefix("lib16/")]
        max_seq_len = N
    else:
        case = cases.CASES_BY_NAME[name]
        make, vocab, max_seq_len = case.make_program, case.vocab, case.max_seq_len
    program = make()
    model = compiling.compile_rasp_to_model(
        program, vocab=vocab, max_seq_len=max_seq_len, compiler_bos=BOS
    )
    return program, model, vocab, max_seq_len


def _count(vocab, max_len: int) -> int:
    return sum(len(vocab) ** n for n in range(1, max_len + 1))


def inputs(name: str, limit: int, seed: int = 0) -> list[list]:
    """Valid inputs (BOS first) of the model `name`: every sequence when there are at most
    `limit`, else a seeded sample of about `limit` spread over all lengths; for a case,
    its own inputs come first. Inputs the program rejects are left out."""
    program, _, vocab, max_len = compiled(name)
    symbols = sorted(vocab, key=repr)
    if name == "lib16/make_sort_unique":  # its keys must be unique
        rng = random.Random(seed)
        per_length = max(1, limit // max_len)
        seqs = [rng.sample(symbols, n) for n in range(1, max_len + 1) for _ in range(per_length)]
    elif _count(vocab, max_len) <= limit:
        seqs = exactness.all_sequences(vocab, max_len)
    else:
        seqs = exactness.sampled_sequences(vocab, max_len, max(1, limit // max_len), seed)
    if name in cases.CASES_BY_NAME:
        seqs = cases.CASES_BY_NAME[name].inputs + seqs
    seqs = [s for s, _ in itertools.groupby(seqs)]
    return [[BOS, *s] for s in seqs if exactness.expected_output(program, s, False) is not None]


# Inputs per model in the test suite (the verification script checks many more).
SMALL_LIMIT = 300
LARGE_LIMIT = 48
SLOW = {"lib16/make_sort": 8, "lib16/make_nary_sequencemap": 4, "lib16/make_sort_freq": 8}


@functools.cache
def reference(name: str):
    """(model, inputs, numpy output of apply_batch) for the test-suite inputs of `name`."""
    limit = SLOW.get(name, LARGE_LIMIT if name.startswith("lib16/") else SMALL_LIMIT)
    _, model, _, _ = compiled(name)
    seqs = inputs(name, limit)
    return model, seqs, model.apply_batch(seqs)


def same_outputs(got: list, want: list) -> bool:
    """Decoded rows agree: equal values, numbers within 1e-5 relative (float32 rounding)."""
    return len(got) == len(want) and all(
        cases.outputs_match(g, w, rel_tol=1e-5, abs_tol=1e-6) for g, w in zip(got, want)
    )
