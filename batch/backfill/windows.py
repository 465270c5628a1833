"""Windowed aggregation values at each event's instant (the offline feature rows).

For an aggregating view, the backfill writes one row per event: the view's every
aggregation evaluated at t = the event's time, over the events of the same entity with
start(t) <= ts <= t (semantics.md 2; `start` from featureline.semantics). Events at the
same instant see each other. Values are exact: counts and exact-unit sums come from
prefix sums over the entity's events sorted by time; min, max and distinct sets scan
the window's rows, only for functions that read them; each row's value is its
function's finalize (featureline.aggregations) over those parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import DISTINCT, MAX, MIN, AggFunction, WindowParts, get, sum_terms
from featureline.batch.backfill.groups import prefix, window_bounds
from featureline.offline_layout import CREATED_US, TS_US, feature_schema
from featureline.offline_tiles import group_ids, units_array, valid_values
from featureline.semantics import US
from featureline.specs import AggregationSpec, ViewSpec


def sort_by_entity(events: pa.Table, keys: tuple[str, ...]) -> tuple[pa.Table, np.ndarray]:
    """Rows with a non-null key, sorted by (entity, time, created); and their group ids."""
    gid = group_ids({k: events[k] for k in keys})
    ts = events[TS_US].to_numpy()
    created = events[CREATED_US].to_numpy()
    rows = np.flatnonzero(gid >= 0)
    order = rows[np.lexsort((created[rows], ts[rows], gid[rows]))]
    return events.take(pa.array(order)), gid[order]


def window_values(events: pa.Table, view: ViewSpec, out_start_us: int, out_end_us: int) -> pa.Table:
    """One row per event with out_start <= ts < out_end, with every aggregation at ts.

    `events` (with TS_US, CREATED_US) must hold every event the windows reach back to:
    ts >= out_start - max(window + tile).
    """
    schema = feature_schema(view, events.schema)
    if events.num_rows == 0:
        return schema.empty_table()
    table, gid = sort_by_entity(events, view.join_key_names)
    ts = table[TS_US].to_numpy()
    keep = np.flatnonzero((ts >= out_start_us) & (ts < out_end_us))
    out: dict[str, Any] = {}
    for agg in view.aggregations:
        out[agg.name] = _aggregation_column(agg, table[agg.column], gid, ts, keep)
    base = table.take(pa.array(keep))
    columns = {f.name: base[f.name] for f in schema if f.name not in out}
    columns.update({f.name: out[f.name] for f in schema if f.name in out})
    return pa.table(columns).select(schema.names).cast(schema)


def _aggregation_column(
    agg: AggregationSpec,
    values: pa.ChunkedArray,
    gid: np.ndarray,
    ts: np.ndarray,
    keep: np.ndarray,
) -> pa.Array:
    size = agg.tile_s * US
    start = ((ts - agg.window_s * US) // size) * size  # semantics.window_start_us, vectorized
    lo, hi = window_bounds(gid, ts, start, ts)
    lo, hi = lo[keep], hi[keep]
    arr = valid_values(values)
    function = get(agg.function)
    counts = prefix(pc.is_valid(arr).to_numpy(zero_copy_only=False).astype(np.int64))
    if function.parts == {"count"}:  # a vector difference, no Python loop per row
        return pa.array(counts[hi] - counts[lo], pa.int64())
    pylist = arr.to_pylist()
    sums = [(t.part, prefix(units_array(pylist, t.units))) for t in sum_terms(function.parts)]
    result = []
    for lo_i, h in zip(lo.tolist(), hi.tolist(), strict=True):
        window = WindowParts(int(counts[h] - counts[lo_i]), {p: int(u[h] - u[lo_i]) for p, u in sums})
        _scan(function, window, pylist[lo_i:h])
        result.append(function.finalize(window))
    return pa.array(result)


def _scan(function: AggFunction, window: WindowParts, values: list[Any]) -> None:
    """min, max and the distinct count of a window's non-null values, when read."""
    if not window.count or not function.parts & {MIN, MAX, DISTINCT}:
        return
    present = [v for v in values if v is not None]
    if MIN in function.parts:
        window.min = min(present)
    if MAX in function.parts:
        window.max = max(present)
    if DISTINCT in function.parts:
        window.n_distinct = len(set(present))


def plain_values(events: pa.Table, view: ViewSpec, out_start_us: int, out_end_us: int) -> pa.Table:
    """A plain (latest-value) view's offline rows: the events themselves, projected."""
    schema = feature_schema(view, events.schema)
    if events.num_rows == 0:
        return schema.empty_table()
    ts = events[TS_US]
    mask = pc.and_(pc.greater_equal(ts, out_start_us), pc.less(ts, out_end_us))
    keys_valid = [pc.is_valid(events[k]) for k in view.join_key_names]
    for valid in keys_valid:
        mask = pc.and_(mask, valid)
    return events.filter(mask).select(schema.names).cast(schema)
