"""Vectorized helpers shared by the tile and window computations (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import exact_units


def group_ids(columns: dict[str, Any]) -> np.ndarray:
    """Dense group id per row over the given key columns; -1 where any key is null."""
    frame = pd.DataFrame({name: _to_pandas(col) for name, col in columns.items()})
    ids = frame.groupby(list(frame.columns), sort=False, dropna=True).ngroup()
    return ids.to_numpy(dtype=np.int64)


def _to_pandas(col: Any) -> Any:
    if isinstance(col, pa.ChunkedArray | pa.Array):
        return col.to_pandas()
    return col


def valid_values(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column with NaN turned into null: semantics.md skips both alike."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    return arr


def units_array(values: list[Any], units: Callable[[Any], int] = exact_units) -> np.ndarray:
    """Exact sums' units (a featureline.aggregations.SumTerm's `units`, by default the
    plain sum's) as an object array; 0 for null."""
    out = np.empty(len(values), dtype=object)
    out[:] = [0 if v is None else units(v) for v in values]
    return out


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
