"""make_reverse at large max_seq_len (issue 11): opp_idx = length - indices splits into
per-input parts, so it takes a block of width linear in max_seq_len; past ~50 that block
reads the length as a number from its head (the length's one-hot is too noisy for a
linear read). The model stays small, keeps its 4 layers and is exact."""

from __future__ import annotations

import numpy as np

from tests.compiler import exactness, test_passes
from tests.transformer import adversarial
from tracr.compiler import basis_inference, compiling, expr_to_craft_graph, float_bounds, lib
from tracr.craft import bases
from tracr.rasp import rasp

LETTERS = {"a", "b", "c"}


def _params(model) -> int:
    return sum(a.size for module in model.params.values() for a in module.values())


def test_reverse_at_160_has_under_5m_parameters_in_4_layers_and_is_exact():
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(
        program, vocab=LETTERS, max_seq_len=160, compiler_bos="BOS"
    )
    assert _params(model) < 5_000_000
    assert model.model_config.num_layers == 4
    assert any(label.endswith("_mean_index") for label in model.residual_labels)
    rng = np.random.default_rng(0)
    lengths = [1, 2, 3, 80, 158, 159, 160, 160]
    sequences = [list(rng.choice(sorted(LETTERS), size=n)) for n in lengths]
    assert exactness.mismatches(model, program, sequences) == []
    assert exactness.adversarial_mismatches(model, program, sequences[-1:], "reversed") == []


def test_reverse_reading_the_length_as_a_number_is_exact_at_every_length():
    """At 60 opp_idx reads the length as a number: every length 1..60 (two inputs each;
    opp_idx depends on the length and the index only), in BLAS's order and three others."""
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(
        program, vocab={"a", "b"}, max_seq_len=60, compiler_bos="BOS"
    )
    assert any(label.endswith("_mean_index") for label in model.residual_labels)
    sequences = exactness.sampled_sequences({"a", "b"}, 60, per_length=2, seed=5)
    assert exactness.mismatches(model, program, sequences) == []
    some = sequences[::9]
    for order in ("reversed", "pairwise", "fma"):
        assert exactness.adversarial_mismatches(model, program, some, order) == [], order


def test_width_numbers_stay_within_their_bounds_in_every_order():
    """The length head's t = 1/(w+1) and mean index m = w (w - 1) / (2 (w + 1)), as the
    compiled model computes them at every length, are within float_bounds.width_numbers
    of their ideal values, in BLAS's order and in three others."""
    n = 60
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(program, vocab={"a"}, max_seq_len=n, compiler_bos="BOS")
    extracted, lowered = test_passes._lower(program, {"a"}, n)
    sets = basis_inference.infer_bases(extracted, vocab={"a"}, max_seq_len=n)
    length = next(label for label in lowered if label.startswith("length"))
    ctx = float_bounds.Context(
        lowered,
        sets,
        bases.BasisDirection("tokens", "bos"),
        expr_to_craft_graph.ONE,
        n,
    )
    errors = {label: node.error for label, node in lowered.items()}
    numbers = float_bounds.width_numbers(lowered[length].block, length, ctx, errors)
    cols = [model.residual_labels.index(name) for name in numbers.directions]
    compiled = model.get_compiled_model()
    widths = list(range(1, n + 1))
    finals = [(widths, model.apply_batch([["BOS", *["a"] * w] for w in widths]).residuals[-1])]
    some = [1, 2, 3, n // 2, n - 1, n]  # the reordered forward passes are slow
    ids = np.full((len(some), n + 1), compiled.pad_encoding, dtype=np.int64)
    for row, w in enumerate(some):
        ids[row, : w + 1] = model._encode(["BOS", *["a"] * w])[0]
    for order in ("reversed", "pairwise", "fma"):
        mask = ids != compiled.pad_encoding
        finals.append(
            (some, adversarial.forward(compiled.params, compiled.config, ids, mask, order))
        )
    for lengths, final in finals:
        for row, w in enumerate(lengths):
            got = final[row, 1 : w + 1][:, cols].astype(np.float64)  # every position
            assert np.all(np.abs(got - numbers.ideal[w]) <= numbers.error[w]), w
        bos = final[:, 0][:, cols].astype(np.float64)
        assert np.all(np.abs(bos - numbers.bos_ideal) <= numbers.bos_error)
