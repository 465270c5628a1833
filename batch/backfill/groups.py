"""Vectorized helpers shared by the tile and window computations (pure, no I/O)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Moved to the core (the stream job's offline tiles use them too); kept importable here.
from featureline.offline_tiles import group_ids as group_ids
from featureline.offline_tiles import units_array as units_array
from featureline.offline_tiles import valid_values as valid_values


def prefix(values: np.ndarray) -> np.ndarray:
    """Prefix sums with a leading 0 (object arrays keep Python ints: exact)."""
    out = np.empty(len(values) + 1, dtype=values.dtype)
    out[0] = 0
    np.cumsum(values, out=out[1:])
    return out


def window_bounds(
    gid: np.ndarray, ts: np.ndarray, lo_ts: np.ndarray, hi_ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (gid, ts): per row, the index range [lo, hi) of rows of the same
    group with lo_ts <= ts <= hi_ts.

    Searches one composite key gid * span + (ts - t0) when it fits in int64 (the usual
    case: 1M groups x 100 days of microseconds is ~2**62), else group by group.
    """
    if len(ts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t0 = int(min(ts.min(), lo_ts.min()))
    span = int(max(ts.max(), hi_ts.max())) - t0 + 2
    groups = int(gid.max()) + 1
    if groups * span < 2**62:
        key = gid * span + (ts - t0)
        lo = np.searchsorted(key, gid * span + (lo_ts - t0), side="left")
        hi = np.searchsorted(key, gid * span + (hi_ts - t0), side="right")
        return lo.astype(np.int64), hi.astype(np.int64)
    lo = np.empty(len(ts), np.int64)
    hi = np.empty(len(ts), np.int64)
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    ends = np.r_[starts[1:], len(ts)]
    for a, b in zip(starts, ends, strict=True):
        seg = ts[a:b]
        lo[a:b] = a + np.searchsorted(seg, lo_ts[a:b], side="left")
        hi[a:b] = a + np.searchsorted(seg, hi_ts[a:b], side="right")
    return lo, hi


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
