"""Compile a RASP program into a transformer: the passes, read top to bottom."""

from __future__ import annotations

from collections.abc import Iterable

from tracr import caches
from tracr.compiler import (
    assemble,
    basis_inference,
    circuit,
    craft_graph_to_model,
    expr_to_craft_graph,
    float_bounds,
    traced,
    validating,
)
from tracr.craft import bases
from tracr.rasp import rasp
from tracr.transformer import runtime

#: Empties every cache the compiler and the forward pass keep (`tracr.caches`).
clear_caches = caches.clear

COMPILER_BOS = "compiler_bos"
COMPILER_PAD = "compiler_pad"


def _check_arguments(program, vocab, max_seq_len, compiler_bos, compiler_pad, mlp_exactness):
    if not isinstance(program, rasp.SOp):
        raise TypeError(f"program must be a RASP SOp, got {type(program).__name__}: {program!r}")
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    if not vocab:
        raise ValueError("vocab must hold at least one token, got an empty collection")
    if compiler_bos == compiler_pad:
        raise ValueError(f"compiler_bos and compiler_pad must differ, both are {compiler_bos!r}")
    for role, token in (("BOS", compiler_bos), ("PAD", compiler_pad)):
        if token in vocab:
            raise ValueError(f"the compiler {role} token {token!r} must not be in the vocab")
    if isinstance(mlp_exactness, bool) or not isinstance(mlp_exactness, (int, float)):
        raise TypeError(f"mlp_exactness must be a number, got {mlp_exactness!r}")
    if mlp_exactness <= 0:
        raise ValueError(f"mlp_exactness must be positive, got {mlp_exactness!r}")


def compile_rasp_to_model(
    program: rasp.SOp,
    vocab: Iterable[rasp.Value],
    max_seq_len: int,
    causal: bool = False,
    compiler_bos: str = COMPILER_BOS,
    compiler_pad: str = COMPILER_PAD,
    mlp_exactness: int = 100,
) -> assemble.AssembledTransformerModel:
    """Compiles `program` into a transformer that computes it exactly.

    The model agrees with `rasp.evaluate` (with `causal_eval.evaluate` when `causal`) on
    every input over `vocab` of every length up to `max_seq_len`; where that cannot be
    guaranteed, compilation fails with `validating.UnsupportedProgramError` (a
    NotImplementedError) naming each offending expression and the reason.

    Args:
      program: the RASP SOp to compile; it must use rasp.tokens.
      vocab: the input tokens the model accepts.
      max_seq_len: the longest input, BOS not counted.
      causal: compile a causally masked model.
      compiler_bos: the BOS token every input starts with; not in vocab.
      compiler_pad: the token that pads batched inputs; not in vocab.
      mlp_exactness: kept for compatibility. Every sharpness constant is derived from
        the program's value sets, so the model is exact for any value; it must be > 0.
    """
    try:
        vocab = frozenset(vocab)
    except TypeError as err:
        raise TypeError(
            f"vocab must be an iterable of hashable tokens, got {vocab!r} ({err})"
        ) from err
    _check_arguments(program, vocab, max_seq_len, compiler_bos, compiler_pad, mlp_exactness)
    # Every compile makes fresh weight arrays: freed ones are reused rather than handed
    # back and faulted in afresh (sort at max_seq_len 16: 2.8 ms a compile instead of 6).
    runtime.keep_freed_memory()

    # static_validate, then extract_rasp_graph; kept while the program is unchanged
    extracted = traced.trace(program)
    if rasp.tokens.label not in extracted.graph:
        raise ValueError(
            "the program does not use rasp.tokens; a compiled model reads its input "
            "through tokens, so a program must depend on it"
        )
    groupings: dict = {}  # numerical value sets, sorted once for the passes below
    value_sets = basis_inference.infer_bases(
        extracted, vocab=vocab, max_seq_len=max_seq_len, groupings=groupings
    )

    unsupported = validating.validate_value_sets(
        program, value_sets, max_seq_len=max_seq_len, causal=causal, groupings=groupings
    )
    if unsupported:
        raise validating.UnsupportedProgramError(unsupported)

    lowered, bounds = expr_to_craft_graph.lower_with_bounds(
        extracted,
        value_sets=value_sets,
        vocab=vocab,
        bos_dir=bases.BasisDirection(rasp.tokens.label, compiler_bos),
        max_seq_len=max_seq_len,
        causal=causal,
        groupings=groupings,
    )
    unsupported = float_bounds.findings(
        lowered,
        {label: node.error for label, node in lowered.items()},
        bounds,
        output_label=program.label,
    )
    if unsupported:
        raise validating.UnsupportedProgramError(unsupported)
    craft_model = craft_graph_to_model.craft_graph_to_model(extracted, lowered)

    tokens_space = bases.sorted_space(rasp.tokens.label, vocab | {compiler_bos, compiler_pad})
    indices = lowered.get(rasp.indices.label)  # its space is this one, where the program reads it
    indices_space = (
        indices.space if indices else bases.sorted_space(rasp.indices.label, range(max_seq_len))
    )
    constants = {
        node.space.basis[0]: node.constant for node in lowered.values() if node.constant is not None
    }
    model = assemble.assemble_craft_model(
        craft_model,
        tokens_space=tokens_space,
        indices_space=indices_space,
        output_space=lowered[program.label].space,
        categorical_output=rasp.is_categorical(program),
        causal=causal,
        token_constants=constants,
        mixture_tolerances={
            label: _mixture_tolerance(node, max_seq_len)
            for label, node in lowered.items()
            if rasp.is_categorical(node.expr) and node.block is not None
        },
        categorical_spaces={
            label: node.space
            for label, node in lowered.items()
            if rasp.is_categorical(node.expr) and node.block is not None
        },
        bos_token=compiler_bos,
        pad_token=compiler_pad,
        max_seq_len=max_seq_len,
    )
    model.circuit = circuit.extract_circuit(extracted, lowered, craft_model, model.residual_labels)
    return model


def _mixture_tolerance(node, max_seq_len: int) -> float:
    """How far a categorical SOp may be from a one-hot before `apply` calls it a mixture:
    twice its proven error bound, and at least MIXTURE_TOLERANCE, except at categorical
    Aggregates, where a mixture starts: one of up to max_seq_len selected positions
    carries 1/max_seq_len, so the floor there is 1/(2 max_seq_len) when that is lower."""
    floor = assemble.MIXTURE_TOLERANCE
    if isinstance(node.expr, rasp.Aggregate):
        floor = min(floor, 1 / (2 * max_seq_len))
    return max(floor, 2 * node.error.worst(0.0), 2 * node.error.l1)
