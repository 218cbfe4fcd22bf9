"""Process settings for the forward pass: BLAS threads and glibc's freed memory."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

_BLAS_CONTROLLER: list = []  # empty before the first call, then [BLAS libraries or None]


def blas_single_thread():
    """A context that keeps BLAS on one thread, when threadpoolctl is installed.

    The products of the sparse forward pass are small; a multi-threaded BLAS spends more
    time waking and syncing its threads than computing them (on a busy 2-core machine a
    batch took 1.5 to 28 s instead of 0.8 s). Without threadpoolctl this does nothing.
    """
    if not _BLAS_CONTROLLER:
        try:
            import threadpoolctl
        except ImportError:
            _BLAS_CONTROLLER.append(None)
        else:
            blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
            _BLAS_CONTROLLER.append(blas.lib_controllers)
    libraries = _BLAS_CONTROLLER[0]
    if not libraries:
        return contextlib.nullcontext()
    return _OneThread(libraries)


class _OneThread:
    """Sets each BLAS library that is not on one thread to one, and back on exit.

    threadpoolctl's own `limit` context costs about 8 us a call, as much as a small
    model's product; this asks each library for its count and sets only what differs."""

    __slots__ = ("libraries", "restore")

    def __init__(self, libraries: list):
        self.libraries = libraries
        self.restore: list = []

    def __enter__(self):
        for library in self.libraries:
            threads = library.get_num_threads()
            if threads != 1:
                library.set_num_threads(1)
                self.restore.append((library, threads))
        return self

    def __exit__(self, *exc):
        for library, threads in self.restore:
            library.set_num_threads(threads)
        self.restore = []
        return False


# glibc hands freed blocks above its (dynamic) trim threshold back to the system, so every
# forward pass would fault its arrays' pages in afresh: for a batch of 256 through a small
# model that is over half the time (six 1 MB arrays: 1.3 ms freshly mapped, 0.24 ms reused).
# Raising the thresholds keeps up to RETAIN_BYTES of freed memory for reuse.
RETAIN_BYTES = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MALLOC_TUNED: list[bool] = []


def keep_freed_memory() -> bool:
    """Once per process, on Linux with glibc: let freed arrays be reused (see above).

    Set the environment variable TRACR_KEEP_FREED_MEMORY=0 to leave glibc's settings
    alone. Returns whether the settings were changed.
    """
    if not _MALLOC_TUNED:
        _MALLOC_TUNED.append(_tune_malloc())
    return _MALLOC_TUNED[0]


def _tune_malloc() -> bool:
    if os.environ.get("TRACR_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, say)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Blocks up to RETAIN_BYTES / 4 come from the heap, which keeps up to RETAIN_BYTES free.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES // 4) and mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES)
    )
