"""Check a compiled model against the RASP evaluator, input by input.

`verify(model, program)` runs every input over the model's vocab of every length from 1 to
max_seq_len when there are at most `exhaustive_limit` of them, else a seeded random sample,
and compares the model's decoded output with `rasp.evaluate` (`causal_eval.evaluate` for a
causal model). Inputs go through `model.apply_batch` in chunks, the way a user runs them.

Each input lands in one of four outcomes:
  agree      the decoded output equals the evaluator's (numbers to 1e-5 relative);
  mismatch   it does not: the model is wrong (the compiler promises this never happens);
  refused    the model raised ValueError on it (a categorical Aggregate would have to
             average different values there, which no one-hot encoding can hold);
  undefined  the evaluator itself raised (the program has no value on that input).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tracr.rasp import causal_eval, rasp

DEFAULT_EXHAUSTIVE_LIMIT = 1_000_000
DEFAULT_SAMPLES = 10_000
DEFAULT_BATCH_SIZE = 2048
REL_TOL, ABS_TOL = 1e-5, 1e-6


@dataclasses.dataclass(frozen=True)
class Mismatch:
    tokens: tuple  # the input, without BOS
    expected: tuple  # the evaluator's output
    actual: tuple  # the model's decoded output, without BOS


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """What `verify` found. `mismatches` and `refusals` keep the first `keep` of each."""

    exhaustive: bool
    total: int
    agree: int
    mismatch: int
    refused: int
    undefined: int
    mismatches: tuple[Mismatch, ...]
    refusals: tuple[tuple[tuple, str], ...]  # (input, the model's error message)

    @property
    def ok(self) -> bool:
        return self.mismatch == 0


def model_vocab(model) -> list:
    """The model's input tokens (BOS and PAD left out), in a stable order."""
    encoder = model.input_encoder
    specials = {encoder.bos_token, encoder.pad_token}
    return sorted((t for t in encoder.encoding_map if t not in specials), key=_order)


def model_max_seq_len(model) -> int:
    return model.params["pos_embed"]["embeddings"].shape[0] - 1


def _order(token: Any) -> tuple:
    return (
        (type(token).__name__, token)
        if isinstance(token, (int, float, str))
        else ("~", repr(token))
    )


def count_inputs(vocab_size: int, max_seq_len: int) -> int:
    """How many inputs of length 1..max_seq_len there are: sum of vocab_size**length."""
    return sum(vocab_size**length for length in range(1, max_seq_len + 1))


def all_inputs(vocab: Sequence, max_seq_len: int) -> Iterator[tuple]:
    for length in range(1, max_seq_len + 1):
        yield from itertools.product(vocab, repeat=length)


def sampled_inputs(vocab: Sequence, max_seq_len: int, samples: int, seed: int) -> Iterator[tuple]:
    """`samples` inputs: a length uniform in 1..max_seq_len, then uniform tokens."""
    rng = random.Random(seed)
    for _ in range(samples):
        length = rng.randint(1, max_seq_len)
        yield tuple(rng.choice(vocab) for _ in range(length))


def same_value(actual: Any, expected: Any) -> bool:
    """Equal, or for numbers equal to 1e-5 relative (1e-6 absolute near zero)."""
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(actual, expected, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return actual == expected


def verify(
    model,
    program: rasp.SOp,
    *,
    exhaustive_limit: int = DEFAULT_EXHAUSTIVE_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep: int = 5,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Compares `model` with the evaluator of `program` on every input, or a sample.

    Args:
      model: the model compiled from `program`.
      program: the RASP program.
      exhaustive_limit: check every input when there are at most this many.
      samples, seed: otherwise check this many random inputs drawn with this seed.
      batch_size: inputs per `apply_batch` call.
      keep: how many mismatches and refusals to keep for the report.
      progress: called with the number of inputs just checked, after each chunk.
    """
    if batch_size < 1 or samples < 1 or exhaustive_limit < 0:
        raise ValueError(
            f"batch_size and samples must be >= 1 and exhaustive_limit >= 0, got "
            f"{batch_size}, {samples}, {exhaustive_limit}"
        )
    vocab = model_vocab(model)
    max_seq_len = model_max_seq_len(model)
    evaluate = causal_eval.evaluate if model.model_config.causal else rasp.evaluate
    total = count_inputs(len(vocab), max_seq_len)
    exhaustive = total <= exhaustive_limit
    inputs = (
        all_inputs(vocab, max_seq_len)
        if exhaustive
        else sampled_inputs(vocab, max_seq_len, samples, seed)
    )
    counts = {"agree": 0, "mismatch": 0, "refused": 0, "undefined": 0}
    mismatches: list[Mismatch] = []
    refusals: list[tuple[tuple, str]] = []
    bos = model.input_encoder.bos_token
    while chunk := list(itertools.islice(inputs, batch_size)):
        for tokens, outcome in _run_chunk(model, [[bos, *x] for x in chunk]):
            try:
                expected = evaluate(program, list(tokens))
            except Exception:  # the program is undefined here; nothing to compare
                counts["undefined"] += 1
                continue
            if isinstance(outcome, str):
                counts["refused"] += 1
                if len(refusals) < keep:
                    refusals.append((tokens, outcome))
            elif all(same_value(a, e) for a, e in zip(outcome, expected)):
                counts["agree"] += 1
            else:
                counts["mismatch"] += 1
                if len(mismatches) < keep:
                    mismatches.append(Mismatch(tokens, tuple(expected), tuple(outcome)))
        if progress is not None:
            progress(len(chunk))
    return VerifyResult(
        exhaustive=exhaustive,
        total=sum(counts.values()),
        mismatches=tuple(mismatches),
        refusals=tuple(refusals),
        **counts,
    )


def _run_chunk(model, sequences: list[list]) -> list[tuple[tuple, Any]]:
    """(input without BOS, decoded output without BOS or the error text) per sequence.

    A chunk the model refuses as a whole (one input is outside the program's domain) is
    split in halves until the refused inputs are alone.
    """
    try:
        decoded = model.apply_batch(sequences).decoded
    except ValueError as err:
        if len(sequences) == 1:
            return [(tuple(sequences[0][1:]), str(err))]
        half = len(sequences) // 2
        return _run_chunk(model, sequences[:half]) + _run_chunk(model, sequences[half:])
    return [(tuple(seq[1:]), tuple(row[1 : len(seq)])) for seq, row in zip(sequences, decoded)]
