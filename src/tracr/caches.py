"""What tracr keeps across calls to go faster, and how to let it go.

The compiler keeps error bounds, spaces, blocks, assembled arrays, circuits and traced
programs across compiles (each cache bounded, the least recently used dropped first;
README "Speed"), and the forward pass keeps where each weight's non-zeros lie. Every
kept result is one a fresh computation gives, so dropping them all changes nothing but
speed. Each cache registers how to empty itself here; `clear()` empties them all
(`tracr.compiler.compiling.clear_caches` is the same function). Only modules already
imported have registered: the others hold nothing yet.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

_CLEARERS: list[Callable[[], None]] = []
_LOCK = threading.Lock()


def register(clear: Callable[[], None]) -> Callable[[], None]:
    """Registers a function that empties one cache; returns it (usable as a decorator,
    or on an `functools.lru_cache` function's `cache_clear`)."""
    with _LOCK:
        _CLEARERS.append(clear)
    return clear


def register_method(clear: Callable[[], None]) -> None:
    """Registers a cache object's bound `clear` method, held weakly: a cache made and
    dropped (in a test, say) is not kept alive by this registry."""
    method = weakref.WeakMethod(clear)

    def clear_if_alive() -> None:
        found = method()
        if found is not None:
            found()

    register(clear_if_alive)


def clear() -> None:
    """Empties every registered cache (memory goes back to Python; later calls are as
    fast as first ones until the caches fill again)."""
    with _LOCK:
        clearers = list(_CLEARERS)
    for clear_one in clearers:
        clear_one()
