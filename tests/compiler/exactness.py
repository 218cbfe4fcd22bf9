"""Compare a compiled model with the RASP evaluator on many inputs at once."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

import numpy as np

from tests import cases
from tracr.rasp import causal_eval, rasp

BOS = "BOS"


def all_sequences(vocab: Iterable, max_len: int) -> list[list]:
    """Every sequence over `vocab` of every length 1..max_len."""
    symbols = sorted(vocab, key=repr)
    return [
        list(seq)
        for length in range(1, max_len + 1)
        for seq in itertools.product(symbols, repeat=length)
    ]


def sampled_sequences(vocab: Iterable, max_len: int, per_length: int, seed: int = 0) -> list:
    """`per_length` random sequences of every length 1..max_len (fixed seed)."""
    rng = random.Random(seed)
    symbols = sorted(vocab, key=repr)
    return [
        [rng.choice(symbols) for _ in range(length)]
        for length in range(1, max_len + 1)
        for _ in range(per_length)
    ]


def expected_output(program: rasp.SOp, xs: Sequence, causal: bool):
    """The evaluator's output, or None when the input is not valid for the program."""
    evaluate = causal_eval.evaluate if causal else rasp.evaluate
    try:
        return evaluate(program, list(xs))
    except (ValueError, TypeError, ArithmeticError):
        return None


def mismatches(model, program, sequences, *, causal=False, batch=512) -> list:
    """(input, model output, evaluator output) for every input where they differ."""
    bad = []
    for start in range(0, len(sequences), batch):
        chunk = sequences[start : start + batch]
        decoded = model.apply_batch([[BOS, *xs] for xs in chunk]).decoded
        bad += _compare(program, chunk, decoded, causal)
    return bad


def _compare(program, sequences, decoded, causal) -> list:
    """(input, model output, evaluator output) where the decoded rows (BOS first) differ."""
    bad = []
    for xs, row in zip(sequences, decoded):
        want = expected_output(program, xs, causal)
        if want is None:
            continue
        got = row[1 : 1 + len(xs)]
        if not cases.outputs_match(got, want):
            bad.append((xs, got, want))
    return bad


def adversarial_mismatches(model, program, sequences, order, *, causal=False, batch=256):
    """Like `mismatches`, with the forward pass of tests/transformer/adversarial.py: every
    dot product summed in `order` instead of BLAS's."""
    from tests.transformer import adversarial
    from tracr.compiler import assemble
    from tracr.transformer import model as forward_model

    compiled = model.get_compiled_model()
    bad = []
    for start in range(0, len(sequences), batch):
        chunk = sequences[start : start + batch]
        encoded = [model._encode([BOS, *xs]) for xs in chunk]
        width = max(len(ids) for ids, _ in encoded)
        ids = np.full((len(chunk), width), compiled.pad_encoding, dtype=np.int64)
        for row, (seq, _) in enumerate(encoded):
            ids[row, : len(seq)] = seq
        final = adversarial.forward(
            compiled.params, compiled.config, ids, ids != compiled.pad_encoding, order
        )
        unembedded, present = compiled.unembed(final)
        result = forward_model.TransformerOutput([], [], [], final, final)
        out = assemble.CompiledTransformerModelOutput(result, unembedded, present)
        decoded = model._output(out, [n for _, n in encoded], batched=True).decoded
        bad += _compare(program, chunk, decoded, causal)
    return bad
