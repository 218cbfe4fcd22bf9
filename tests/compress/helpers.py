"""Small compiled models shared by the compression tests (compiled once per session)."""

from __future__ import annotations

import functools

from tracr.compiler import compiling, lib
from tracr.rasp import rasp


@functools.cache
def frac_prevs(max_seq_len: int = 3):
    """frac_prevs of tokens == "x" over {x, y}: d_model 10 at max_seq_len 3, 12 at 5."""
    program = lib.make_frac_prevs(rasp.tokens == "x")
    return compiling.compile_rasp_to_model(
        program, vocab={"x", "y"}, max_seq_len=max_seq_len, compiler_bos="BOS"
    )


@functools.cache
def reverse():
    """reverse over {1, 2}, max_seq_len 3: a categorical output."""
    return compiling.compile_rasp_to_model(
        lib.make_reverse(rasp.tokens), vocab={1, 2}, max_seq_len=3, compiler_bos="BOS"
    )


def every_input(vocab, max_seq_len):
    """Every token list (BOS first) over `vocab` of every length 1..max_seq_len."""
    import itertools

    return [
        ["BOS", *seq]
        for n in range(1, max_seq_len + 1)
        for seq in itertools.product(sorted(vocab), repeat=n)
    ]


@functools.cache
def trained(name: str, unembed_at_every_layer: bool = True):
    """A CompressedModel with a trained W, d = d_model - 2, for "frac_prevs" (numerical
    output) or "reverse" (categorical); a few seconds of training, once per session."""
    from tracr import compress

    model = {"frac_prevs": frac_prevs, "reverse": reverse}[name]()
    d = len(model.residual_labels) - 2
    return compress.compress(
        model,
        d,
        unembed_at_every_layer=unembed_at_every_layer,
        max_steps=100,
        eval_every=20,
        seed=0,
        progress=False,
    )


def vocab(model) -> set:
    """The input tokens of a compiled model, BOS and PAD left out."""
    enc = model.input_encoder
    return {t for t in enc.encoding_map if t not in (enc.bos_token, enc.pad_token)}
