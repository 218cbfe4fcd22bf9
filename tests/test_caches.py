"""`tracr.caches`: everything kept across calls can be let go, and nothing changes."""

from __future__ import annotations

import numpy as np

from tracr import caches
from tracr.compiler import (
    assemble,
    basis_inference,
    circuit,
    compiling,
    expr_blocks,
    kept_blocks,
    lib,
    mlp_bounds,
    traced,
)
from tracr.craft import rounding
from tracr.rasp import rasp
from tracr.transformer import model, plan, query_table, sparse


def _params(model) -> dict:
    return {(m, k): a.copy() for m, p in model.params.items() for k, a in p.items()}


def test_clear_caches_empties_every_cache_and_compiles_stay_the_same(monkeypatch):
    monkeypatch.setattr(model, "DENSE_WORK", 0)  # the sparse forward pass, with its plans
    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)

    def compile_():
        return compiling.compile_rasp_to_model(program, vocab={1, 2, 3}, max_seq_len=4)

    first = compile_()
    frozen = compile_().freeze()  # the second compile keeps its blocks and arrays
    batch = [["compiler_bos", 3, 1, 2]] * 40
    expected = frozen.apply_batch(batch).decoded
    known = [kept_blocks._BLOCKS, assemble._ASSEMBLED, circuit._CIRCUITS, mlp_bounds._ERRORS]
    known += [expr_blocks._SPACES, basis_inference._SUMS]
    assert traced._kept and plan._FROZEN_PLANS and sparse._RECTANGLES  # the case under test
    assert query_table._DISTINCT_QUERIES and any(k.bytes for k in known)

    compiling.clear_caches()
    assert compiling.clear_caches is caches.clear
    assert not (traced._kept or plan._PLANS or plan._FROZEN_PLANS or sparse._RECTANGLES)
    assert not query_table._DISTINCT_QUERIES
    assert all(k.bytes == 0 and not k._entries for k in known)
    for cached in (basis_inference._integer_means, rounding._logit_bound):
        assert cached.cache_info().currsize == 0

    assert frozen.frozen  # which arrays are frozen is not a cache
    assert frozen.apply_batch(batch).decoded == expected
    again = compile_()
    before, after = _params(first), _params(again)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_cache_object_dropped_is_not_kept_alive_by_the_registry():
    import gc
    import weakref

    from tracr.compiler import bound_cache

    known = bound_cache.Known(max_bytes=1 << 10)
    known.put(bound_cache.Key((1,)), "result", 8)
    caches.clear()
    assert known.get(bound_cache.Key((1,))) is None and known.bytes == 0
    gone = weakref.ref(known)
    del known
    gc.collect()
    assert gone() is None
    caches.clear()  # its registration is now a no-op
