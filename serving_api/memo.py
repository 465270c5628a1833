"""Bounded memo tables of the serving hot path (decoded stamps and values, tile fields).

Plain dicts emptied when full rather than LRUs: a hit is one dict lookup (~50 ns), which
callers inline as `table.get(key)` before falling back to `memoized`, and the keys that
matter (a hot entity's stored bytes) come back at once after a clear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def memoized(cache: dict[K, V], limit: int, key: K, compute: Callable[[K], V]) -> V:
    """cache[key], computed on a miss; the cache is emptied when it reaches `limit`."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= limit:
            cache.clear()
        value = cache[key] = compute(key)
    return value
