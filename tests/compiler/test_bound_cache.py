"""compiler/bound_cache and its users: bounds kept across compiles match only inputs that
are exactly the same, and give what a fresh computation gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tracr.compiler import (
    basis_inference,
    bound_cache,
    expr_to_craft_graph,
    float_bounds,
    lib,
    mlp_bounds,
    rasp_to_graph,
)
from tracr.craft import bases, rounding, transformers


def _key(*arrays):
    return bound_cache.Key(tuple(map(bound_cache.array_key, arrays)))


def test_keys_match_exactly_equal_arrays_only():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert _key(a) == _key(a.copy())
    assert _key(a) == _key(np.asfortranarray(a))  # the layout is not the contents
    assert _key(a) != _key(a.reshape(1, 4))  # same bytes, another shape
    assert _key(a) != _key(a.astype(np.float32).astype(np.float64) + 2.0**-30)
    assert _key(np.array([0.0])) != _key(np.array([-0.0]))  # == would call them equal
    assert _key(np.array([1, 2], np.int64)) != _key(np.array([1.0, 2.0]).view(np.int64))


def test_keys_of_large_sparse_arrays_match_exactly_equal_arrays_only():
    table = np.zeros((64, 128))
    table[np.arange(64), np.arange(64) * 2] = 1.0
    assert _key(table) == _key(table.copy())
    signed = table.copy()
    signed[5, 7] = -0.0  # == 0.0, other bits
    assert _key(signed) != _key(table)
    moved = table.copy()
    moved[0, 0], moved[0, 1] = 0.0, 1.0  # the same values elsewhere
    assert _key(moved) != _key(table)
    assert _key(table) != _key(table.reshape(128, 64))
    dense = np.arange(64 * 128, dtype=np.float64).reshape(64, 128)
    assert _key(dense) == _key(dense.copy()) and _key(dense) != _key(dense + 1.0)


def test_number_keys_tell_zeros_apart():
    assert bound_cache.number_key(0.0) != bound_cache.number_key(-0.0)
    assert bound_cache.number_key(0.1) == bound_cache.number_key(np.float64(0.1))


def test_known_drops_the_least_recently_used_beyond_its_bytes():
    known = bound_cache.Known(max_bytes=250)
    keys = [bound_cache.Key((i,)) for i in range(3)]
    known.put(keys[0], "zero", 100)
    known.put(keys[1], "one", 100)
    assert known.get(keys[0]) == "zero"  # now more recent than one
    known.put(keys[2], "two", 100)
    assert known.get(keys[1]) is None
    assert (known.get(keys[0]), known.get(keys[2])) == ("zero", "two")
    assert known.bytes == 200


def _bounds_context(program, vocab, max_seq_len):
    """The lowered SOps of `program`, their errors and the bounds context."""
    extracted = rasp_to_graph.extract_rasp_graph(program)
    sets = basis_inference.infer_bases(extracted, vocab=vocab, max_seq_len=max_seq_len)
    lowered, ctx = expr_to_craft_graph.lower_with_bounds(
        extracted,
        value_sets=sets,
        vocab=frozenset(vocab),
        bos_dir=bases.BasisDirection("tokens", "bos"),
        max_seq_len=max_seq_len,
    )
    return lowered, {label: node.error for label, node in lowered.items()}, ctx


@pytest.fixture
def empty_caches(monkeypatch):
    monkeypatch.setattr(mlp_bounds, "_ERRORS", bound_cache.Known(1 << 30))


def _mlps_with_noisy_inputs(lowered, errors, ctx):
    found = []
    for node in lowered.values():
        if isinstance(node.block, transformers.MLP):
            reads = {d.name for d in node.block.fst.input_space.basis} - {ctx.bos.name, "one"}
            if any(errors[label].abs > 0 for label in reads if label in errors):
                found.append((node, sorted(reads & errors.keys())))
    return found


def test_a_changed_input_error_is_bounded_afresh(monkeypatch, empty_caches):
    lowered, errors, ctx = _bounds_context(lib.make_shuffle_dyck(["()", "{}"]), set("(){}"), 5)
    changed = 0
    for node, reads in _mlps_with_noisy_inputs(lowered, errors, ctx):
        before = mlp_bounds.mlp_error(node.block, node.space, ctx, errors)
        noisier = dict(errors)
        for label in reads:
            noisier[label] = dataclasses.replace(errors[label], abs=errors[label].abs * 4 + 1e-4)
        after = mlp_bounds.mlp_error(node.block, node.space, ctx, noisier)
        with monkeypatch.context() as fresh_caches:
            fresh_caches.setattr(mlp_bounds, "_ERRORS", bound_cache.Known(1 << 30))
            fresh = mlp_bounds.mlp_error(node.block, node.space, ctx, noisier)
        assert (after.abs, after.l1, after.unstable) == (fresh.abs, fresh.l1, fresh.unstable)
        changed += (after.abs, after.l1) != (before.abs, before.l1)
    assert changed >= 2  # (noise-cleaning blocks keep their bound: they absorb it)


def test_kept_errors_are_what_a_fresh_bound_gives(monkeypatch, empty_caches):
    program = lib.make_shuffle_dyck(["()", "{}"])
    lowered, errors, ctx = _bounds_context(program, set("(){}"), 5)
    _, errors_again, _ = _bounds_context(program, set("(){}"), 5)  # from the caches
    monkeypatch.setattr(mlp_bounds, "_ERRORS", bound_cache.Known(1 << 30))
    for label, node in lowered.items():
        if isinstance(node.block, transformers.MLP):
            fresh = mlp_bounds.mlp_error(node.block, node.space, ctx, errors)  # empty caches
            kept = errors_again[label]
            assert (kept.abs, kept.rel, kept.l1, kept.unstable) == (
                fresh.abs,
                fresh.rel,
                fresh.l1,
                fresh.unstable,
            )
            for name in ("values", "per_value"):
                a, b = getattr(kept, name), getattr(fresh, name)
                assert (a is None and b is None) or np.array_equal(a, b)
            if kept.per_value is not None:
                assert not kept.per_value.flags.writeable  # shared: read-only


def test_attention_logit_bounds_are_kept_by_exact_arguments():
    w = np.array([[1.0, 0.0], [0.0, 2.0]])
    noisy = np.array([True, False])
    args = (w, noisy, noisy, 1, 1, 1e-3, 1e-3, 2e-3, 2e-3)
    first = rounding.attention_logit_error(*args)
    assert rounding.attention_logit_error(*args) == first
    larger = rounding.attention_logit_error(w, noisy, noisy, 1, 1, 2e-3, 2e-3, 4e-3, 4e-3)
    assert larger[0] > first[0]


def test_a_width_is_bounded_afresh_when_what_its_head_reads_changes(monkeypatch, empty_caches):
    monkeypatch.setattr(float_bounds, "_WIDTHS", bound_cache.Known(1 << 30))
    lowered, errors, ctx = _bounds_context(lib.make_hist(), {"a", "b", "c"}, 5)
    widths = [n for n in lowered.values() if isinstance(n.block, transformers.SeriesWithResiduals)]
    assert widths
    for node in widths:
        before = float_bounds.sop_error(node, ctx, errors)
        noisier = {**errors, "tokens": float_bounds.SOpError(1e-3, l1=2e-3)}
        after = float_bounds.sop_error(node, ctx, noisier)
        fresh = float_bounds._width_bound(node.block, node, ctx, noisier)
        assert (after.abs, after.rel, after.l1, after.unstable) == (
            fresh.abs,
            fresh.rel,
            fresh.l1,
            fresh.unstable,
        )
        assert (after.abs, after.l1, after.unstable) != (before.abs, before.l1, before.unstable)
