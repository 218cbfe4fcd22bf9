"""Process settings of the forward pass: BLAS on one thread inside, as it was outside."""

from __future__ import annotations

import threadpoolctl

from tracr.transformer import runtime


def _blas_threads() -> list[int]:
    return [
        info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    ]


def test_blas_runs_on_one_thread_inside_and_as_before_after():
    assert _blas_threads(), "numpy's BLAS was not found by threadpoolctl"
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert set(_blas_threads()) == {2}
        with runtime.blas_single_thread():
            assert set(_blas_threads()) == {1}
            with runtime.blas_single_thread():  # nested: nothing to set, nothing to undo
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {2}
