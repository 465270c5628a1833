"""Tile partial states and latest rows of one view from one batch (pure, no I/O).

Vectorized: rows are grouped by (entity, tile start) with one numpy sort per tile size;
count/min/max come from `reduceat`, exact sums from Python ints of each
`featureline.aggregations.SumTerm`'s units (computed once per value), distinct sets
from Python sets; which of them a column keeps is `tile_parts` (its functions' parts).
The result per group is a `aggregations.AggState`, the same state `AggState.add` builds
event by event (the unit tests check that), so every path agrees bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import DISTINCT, AggState, sum_terms
from featureline.offline import CREATED
from featureline.online.feast_format import redis_key, single_key_encoder
from featureline.online.tiles import tile_field, tile_key_for, tile_parts
from featureline.online.writer import LatestRow
from featureline.semantics import US, tile_retention_s
from featureline.specs import ViewSpec

# (tile hash key, field) -> column -> partial state of this batch
TileStates = dict[tuple[bytes, bytes], dict[str, AggState]]


@dataclass
class ViewUpdate:
    """What one batch changes for one view."""

    tiles: TileStates = field(default_factory=dict)
    latest: list[LatestRow] = field(default_factory=list)
    # Events too old for every tile still held online (stored offline only).
    late_events: int = 0
    # Per tile key: (expire at, ms since epoch: when its newest tile leaves retention;
    # seconds a tile is kept after its start: retention + margin).
    housekeeping: dict[bytes, tuple[int, int]] = field(default_factory=dict)


def key_encoder(project: str, view: ViewSpec) -> Callable[[tuple[Any, ...]], bytes]:
    """Entity values (in join-key order) -> Feast's Redis key bytes."""
    names = view.join_key_names
    dtypes = [k.dtype for k in view.join_keys]
    if len(names) == 1:
        one = single_key_encoder(project, names[0], dtypes[0])
        return lambda values: one(values[0])
    return lambda values: redis_key(project, names, dtypes, list(values))


def _entity_codes(table: pa.Table, view: ViewSpec) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """A dense int code per row for its entity, and the entity values per code."""
    if len(view.join_keys) == 1:
        enc = pc.dictionary_encode(table[view.join_keys[0].name]).combine_chunks()
        uniques = [(v,) for v in enc.dictionary.to_pylist()]
        return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), uniques
    seen: dict[tuple[Any, ...], int] = {}
    cols = [table[k.name].to_pylist() for k in view.join_keys]
    codes = np.array([seen.setdefault(t, len(seen)) for t in zip(*cols, strict=True)])
    return codes.astype(np.int64), list(seen)


def _ts_us(table: pa.Table, name: str) -> np.ndarray:
    return table[name].cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)


def _minmax(values: np.ndarray, valid: np.ndarray, starts: np.ndarray) -> tuple[list, list]:
    if values.dtype.kind == "f":
        lo_fill, hi_fill = np.inf, -np.inf
    else:
        info = np.iinfo(values.dtype)
        lo_fill, hi_fill = info.max, info.min
    mins = np.minimum.reduceat(np.where(valid, values, lo_fill), starts).tolist()
    maxs = np.maximum.reduceat(np.where(valid, values, hi_fill), starts).tolist()
    return mins, maxs


def _column_states(
    column: pa.ChunkedArray, order: np.ndarray, starts: np.ndarray, parts: frozenset[str]
) -> list[AggState]:
    """One AggState per group of the sorted rows (group g = order[starts[g]:starts[g+1]])."""
    values = column.take(pa.array(order))
    valid = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(values), False)))
    valid_np = valid.to_numpy(zero_copy_only=False)
    counts = np.add.reduceat(valid_np.astype(np.int64), starts).tolist()
    ends = [*starts[1:].tolist(), len(order)]
    pylist = values.to_pylist()
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        raw = values.fill_null(0).to_numpy(zero_copy_only=False)
        mins, maxs = _minmax(raw, valid_np, starts)
    else:
        mins, maxs = [], []
        for a, b in zip(starts.tolist(), ends, strict=True):
            present = [v for v in pylist[a:b] if v is not None]
            mins.append(min(present) if present else None)
            maxs.append(max(present) if present else None)
    valid_list = valid_np.tolist()
    sums = [
        (term.part, [term.units(v) if ok else 0 for v, ok in zip(pylist, valid_list, strict=True)])
        for term in sum_terms(parts)
    ]
    distinct = DISTINCT in parts
    out = []
    for g, (a, b) in enumerate(zip(starts.tolist(), ends, strict=True)):
        n = counts[g]
        state = AggState(count=n)
        if n:
            state.min, state.max = mins[g], maxs[g]
            for part, units in sums:
                state.add_units(part, sum(units[a:b]))
            if distinct:
                state.distinct = {v for v in pylist[a:b] if v is not None and v == v}
        out.append(state)
    return out


def _tile_size_update(ctx: _Ctx, tile_s: int, window_s: int, update: ViewUpdate, late: np.ndarray) -> None:
    starts_s = (ctx.ts_us // (tile_s * US)) * tile_s
    # The store keeps w + s of tiles (semantics.md 2) plus the settings' margin; an
    # event for an older tile is outside every window a query can still ask for.
    keep_s = tile_retention_s(window_s, tile_s) + ctx.margin_s
    expire_s = starts_s + keep_s
    keep = expire_s * US > ctx.now_us
    late &= ~keep
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        return
    order = rows[np.lexsort((starts_s[rows], ctx.codes[rows]))]
    g_code, g_start = ctx.codes[order], starts_s[order]
    brk = np.flatnonzero((np.diff(g_code) != 0) | (np.diff(g_start) != 0)) + 1
    bounds = np.concatenate(([0], brk)).astype(np.int64)
    per_column = {
        col: _column_states(ctx.table[col], order, bounds, parts)
        for col, parts in tile_parts(ctx.view, tile_s).items()
    }
    for g, pos in enumerate(bounds.tolist()):
        ekey = ctx.entity_keys[int(g_code[pos])]
        hkey = tile_key_for(ctx.project, ctx.view.name, tile_s, ekey)
        fld = tile_field(int(g_start[pos]), ctx.partition)
        update.tiles[(hkey, fld)] = {col: states[g] for col, states in per_column.items()}
        exp_ms = int(expire_s[order[pos]]) * 1000
        if exp_ms > update.housekeeping.get(hkey, (0, 0))[0]:
            update.housekeeping[hkey] = (exp_ms, keep_s)


@dataclass
class _Ctx:
    project: str
    view: ViewSpec
    table: pa.Table
    partition: int
    now_us: int
    margin_s: int
    ts_us: np.ndarray
    codes: np.ndarray
    entity_keys: list[bytes]


def view_update(
    project: str,
    view: ViewSpec,
    table: pa.Table,
    partition: int,
    *,
    now_us: int,
    margin_s: int,
) -> ViewUpdate:
    """Tiles (aggregating view) or latest rows (plain view) of `table`'s events."""
    update = ViewUpdate()
    if table.num_rows == 0:
        return update
    codes, uniques = _entity_codes(table, view)
    encode = key_encoder(project, view)
    ctx = _Ctx(project, view, table, partition, now_us, margin_s,
               _ts_us(table, view.timestamp_field), codes, [encode(u) for u in uniques])  # fmt: skip
    if not view.is_aggregating:
        update.latest = _latest_rows(ctx)
        return update
    # Late: too old for every tile size, so no query from now on can count it online.
    # (An event only too old for a short window's tiles is outside that window anyway.)
    late = np.ones(table.num_rows, dtype=bool)
    for tile_s in view.tile_sizes_s():
        window_s = max(a.window_s for a in view.aggregations if a.tile_s == tile_s)
        _tile_size_update(ctx, tile_s, window_s, update, late)
    update.late_events = int(late.sum())
    return update


def _latest_rows(ctx: _Ctx) -> list[LatestRow]:
    """Per entity, the row with the largest (event time, created time); on a full tie
    the later offset (semantics.latest_order_key; the Lua write breaks ties the same)."""
    created = _ts_us(ctx.table, CREATED)
    order = np.lexsort((np.arange(len(created)), created, ctx.ts_us, ctx.codes))
    last = np.flatnonzero(np.append(np.diff(ctx.codes[order]) != 0, True))
    rows = order[last]
    names = ctx.view.feature_names
    cols = {n: ctx.table[n].take(pa.array(rows)).to_pylist() for n in names}
    return [
        LatestRow(
            ctx.entity_keys[int(ctx.codes[r])],
            int(ctx.ts_us[r]),
            int(created[r]),
            {n: cols[n][i] for n in names},
        )
        for i, r in enumerate(rows.tolist())
    ]
