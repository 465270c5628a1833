"""Tiles from raw events: one partial aggregate per (entity, tile start, Kafka partition).

The same partial states streaming keeps in Redis (featureline.online.tiles): a tile
holds, per aggregated column, an `AggState` (count, exact sums, min, max, distinct
set: the parts its functions read, featureline.aggregations) of the events whose
event time falls in it, split by the Kafka partition the events came from. Encoded
with the shared tile codec, so a tile rebuilt here is byte-for-byte the value
streaming wrote for the same events.

Shared by the stream job (its offline tile rows) and the batch backfill and
materialize (featureline.offline_layout names the columns).

Counting, min, max and distinct sets are Arrow group-bys; the exact sums are Python
ints (each `featureline.aggregations.SumTerm`'s units) summed per group with numpy's
object reduceat (~0.4 s per million values), so every path sums the same integers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import DISTINCT, AggState, exact_units, sum_terms
from featureline.offline import KAFKA_PARTITION
from featureline.offline_layout import PARTITION, STATE, TILE_SIZE_S, TILE_START_S, TS_US, tile_schema
from featureline.online.tiles import tile_entry, tile_parts
from featureline.semantics import US
from featureline.specs import ViewSpec


def tile_states(events: pa.Table, view: ViewSpec, tile_s: int) -> pa.Table:
    """Partial states of every tile of size `tile_s` that `events` touch.

    `events` needs the view's join keys, TS_US (int64 us) and the aggregated columns;
    a missing `kafka_partition` column reads as -1 (not from Kafka). Events with a null
    join key belong to no entity and are left out.
    """
    columns = tile_parts(view, tile_s)
    keys = view.join_key_names
    schema = tile_schema(view)
    if events.num_rows == 0 or not columns:
        return schema.empty_table()
    size = tile_s * US
    start_s = (events[TS_US].to_numpy() // size) * tile_s
    part = _partitions(events)
    gid = group_ids({**{k: events[k] for k in keys}, "_t": start_s, "_p": part})
    rows = np.flatnonzero(gid >= 0)
    gid = gid[rows]
    groups = int(gid.max()) + 1 if len(gid) else 0
    first = np.full(groups, len(gid), dtype=np.int64)
    np.minimum.at(first, gid, np.arange(len(gid)))
    per_column = {
        col: _column_entries(events[col].take(pa.array(rows)), gid, groups, parts)
        for col, parts in columns.items()
    }
    # One JSON document per tile, {column: entry}: featureline.online.tiles.encode_tile's
    # output without an AggState per tile and column (~2x faster: this runs for every
    # tile the backfill and the stream job's offline output write).
    names = list(per_column)
    rows_of_entries = zip(*per_column.values(), strict=True)
    encoded = [orjson.dumps(dict(zip(names, row, strict=True))) for row in rows_of_entries]
    pick = pa.array(rows[first])
    out = {k: events[k].take(pick) for k in keys}
    out[TILE_SIZE_S] = pa.array(np.full(groups, tile_s, dtype=np.int64))
    out[TILE_START_S] = pa.array(start_s[rows[first]])
    out[PARTITION] = pa.array(part[rows[first]])
    out[STATE] = pa.array(encoded, pa.binary())
    return pa.table(out).cast(schema)


def _partitions(events: pa.Table) -> np.ndarray:
    if KAFKA_PARTITION not in events.column_names:
        return np.full(events.num_rows, -1, dtype=np.int64)
    return pc.fill_null(events[KAFKA_PARTITION], -1).to_numpy().astype(np.int64)


def _column_entries(
    values: pa.ChunkedArray, gid: np.ndarray, groups: int, parts: frozenset[str]
) -> list[list[Any]]:
    """One tile entry (featureline.online.tiles.tile_entry) per group for one column:
    the state `AggState.add` would build for `parts`, in its stored form."""
    arr = valid_values(values)
    distinct = DISTINCT in parts
    aggs: list[tuple[Any, ...]] = [("v", "count"), ("v", "min"), ("v", "max")]
    if distinct:
        aggs.append(("v", "distinct", pc.CountOptions(mode="only_valid")))
    grouped = pa.table({"g": gid, "v": arr}).group_by("g", use_threads=False).aggregate(aggs)
    order = np.argsort(grouped["g"].to_numpy())
    counts = grouped["v_count"].to_numpy()[order].tolist()
    mins = grouped["v_min"].take(pa.array(order)).to_pylist()
    maxs = grouped["v_max"].take(pa.array(order)).to_pylist()
    sets = grouped["v_distinct"].take(pa.array(order)).to_pylist() if distinct else [None] * groups
    pylist = arr.to_pylist() if sum_terms(parts) else []
    sums = [
        (t.part, _group_sums(units_array(pylist, t.units), gid, groups).tolist()) for t in sum_terms(parts)
    ]
    out = []
    for g, (count, vmin, vmax, values) in enumerate(zip(counts, mins, maxs, sets, strict=True)):
        state = AggState(count, 0, vmin, vmax, set(values) if values else set())
        for part, per_group in sums:
            state.add_units(part, int(per_group[g]))
        out.append(tile_entry(state))
    return out


def _group_sums(units: np.ndarray, gid: np.ndarray, groups: int) -> np.ndarray:
    """Exact per-group sums of per-value units (Python ints in an object array)."""
    order = np.argsort(gid, kind="stable")
    sorted_gid = gid[order]
    starts = np.flatnonzero(np.r_[True, sorted_gid[1:] != sorted_gid[:-1]])
    sums = np.add.reduceat(units[order], starts) if len(order) else np.zeros(0, dtype=object)
    out = np.zeros(groups, dtype=object)
    out[sorted_gid[starts]] = sums
    return out


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
