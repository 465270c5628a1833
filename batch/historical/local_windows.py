"""Windowed aggregations in DuckDB: whole tiles plus the head (aggregations.py).

For one window group (window w, tile s) of a view, one SQL statement:

    tiles      per (key, tile): the parts its functions read (featureline.aggregations):
               count, min, max, limb sums of each exact sum
    spans      each request row x the w/s tile starts in [start(t), floor(t/s)*s)
    full_part  spans joined to tiles on (key, tile), aggregated per request row
    head_part  the row's own tile's events with event_ts <= t, per request row
    d<i>       count(DISTINCT) over distinct (key, tile, value) of the spans + head values

and the parts combined per request row (count and sums add, min/max take the least /
greatest non-null). Every join is an equality join on (key, tile), so a row touches
w/s tiles and one tile's events, whatever the key's history.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import DISTINCT, MAX, MIN
from featureline.batch.historical.aggregations import (
    LimbLayout,
    limb_layout,
    limbs,
    numeric_values,
    tile_starts_us,
)
from featureline.batch.historical.entity_df import ROW_ID, ROW_TS
from featureline.batch.historical.finish import LayoutKey
from featureline.batch.historical.local_sql import EVENT_TS, ORDER, query, source_sql
from featureline.batch.historical.plan import ColumnAggs, ViewRequest, WindowGroup, agg_column
from featureline.semantics import US

Layouts = dict[tuple[str, str], LimbLayout]  # (column, sum part) -> its limb layout


def aggregate_view(con: Any, view: ViewRequest) -> tuple[list[pa.Table], dict[LayoutKey, LimbLayout]]:
    """Raw aggregate columns of every window group of `view`, in request row order."""
    index = {c.column: c.index for g in view.groups for c in g.columns}
    sql = source_sql(view, [(view.source.columns[c], f"c{index[c]}") for c in view.agg_columns()])
    events = con.sql(sql).to_arrow_table().drop_columns([ORDER])
    events, layouts = prepare_events(view, events, index)
    name = f"ev{view.index}"
    con.register(name, events)
    try:
        parts = [query(con, window_sql(view, g, name, layouts)) for g in view.groups]
    finally:
        con.unregister(name)
    return parts, {(view.index, c, part): lay for (c, part), lay in layouts.items()}


def prepare_events(view: ViewRequest, events: pa.Table, index: dict[str, int]) -> tuple[pa.Table, Layouts]:
    """Null out NaN (semantics skips it like null), add each event's tile start per tile
    size, and the limbs of each exact sum a column needs."""
    event_us = np.asarray(events.column(EVENT_TS).to_numpy(), dtype=np.int64)
    for tile_s in sorted({g.tile_s for g in view.groups}):
        events = events.append_column(f"__fl_tile_{tile_s}", pa.array(tile_starts_us(event_us, tile_s)))
    terms = {c.column: c.sum_terms for g in view.groups for c in g.columns}
    layouts: Layouts = {}
    for column, i in index.items():
        name = f"c{i}"
        values = events.column(name)
        if pa.types.is_floating(values.type):
            values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
            events = events.set_column(events.column_names.index(name), name, values)
        if terms.get(column):
            numbers = numeric_values(values, f"{view.view.name}.{column}")
        for term in terms.get(column, ()):
            layout = limb_layout(numbers, term)
            layouts[(column, term.part)] = layout
            for j, limb in enumerate(limbs(numbers, layout, term)):
                events = events.append_column(f"{name}_{term.tag}{j}", pa.array(limb))
    return events, layouts


class _Parts:
    """The SELECT lists of the tiles / full / head parts and of the final combination."""

    def __init__(self) -> None:
        self.tile: list[str] = []
        self.full: list[str] = []
        self.head: list[str] = []
        self.final: list[str] = []

    def add(self, value: str, alias: str, in_tile: str, across_tiles: str) -> None:
        self.tile.append(f"{in_tile}(a.{value}) AS {alias}")
        self.full.append(f"{across_tiles}(t.{alias}) AS {alias}")
        self.head.append(f"{in_tile}(a.{value}) AS {alias}")


def _column_parts(
    parts: _Parts, view: ViewRequest, group: WindowGroup, col: ColumnAggs, layouts: Layouts
) -> None:
    c = f"c{col.index}"

    def out(kind: str) -> str:
        return agg_column(view.index, group.index, col.index, kind)

    parts.add(c, f"{c}_n", "count", "sum")
    parts.final.append(f"CAST(COALESCE(f.{c}_n, 0) + COALESCE(h.{c}_n, 0) AS BIGINT) AS {out('count')}")
    for fn, combine in ((MIN, "least"), (MAX, "greatest")):
        if fn in col.parts:
            parts.add(c, f"{c}_{fn}", fn, fn)
            # DuckDB's least/greatest skip nulls: an empty part does not hide the other.
            parts.final.append(f"{combine}(f.{c}_{fn}, h.{c}_{fn}) AS {out(fn)}")
    for term in col.sum_terms:
        for j in range(layouts[(col.column, term.part)].count):
            kind = f"{term.tag}{j}"
            limb = f"{c}_{kind}"
            parts.add(limb, limb, "sum", "sum")
            parts.final.append(
                f"CAST(COALESCE(f.{limb}, 0) + COALESCE(h.{limb}, 0) AS BIGINT) AS {out(kind)}"
            )


def window_sql(view: ViewRequest, group: WindowGroup, events: str, layouts: Layouts) -> str:
    parts = _Parts()
    for col in group.columns:
        _column_parts(parts, view, group, col, layouts)
    keys = view.keys
    tile = group.event_tile_column
    span_on = _span_on(keys, "t")
    head_on = " AND ".join(
        [
            *(f"e.{k} = a.{k}" for k in keys),
            f"a.{tile} = e.{group.head_column}",
            f"a.{EVENT_TS} <= e.{ROW_TS}",
        ]
    )
    ctes = [
        f"tiles AS (SELECT {', '.join(f'a.{k}' for k in keys)}, a.{tile} AS tile, {', '.join(parts.tile)} "
        f"FROM {events} a GROUP BY ALL)",
        f"spans AS (SELECT e.{ROW_ID}, {', '.join(f'e.{k}' for k in keys)}, UNNEST(range("
        f"e.{group.start_column}, e.{group.head_column}, {group.tile_s * US})) AS tile FROM ent e)",
        f"full_part AS (SELECT s.{ROW_ID}, {', '.join(parts.full)} FROM spans s JOIN tiles t ON {span_on} "
        f"GROUP BY s.{ROW_ID})",
        f"head_part AS (SELECT e.{ROW_ID}, {', '.join(parts.head)} FROM ent e JOIN {events} a ON {head_on} "
        f"GROUP BY e.{ROW_ID})",
    ]
    joins = [
        f"LEFT JOIN full_part f ON f.{ROW_ID} = e.{ROW_ID}",
        f"LEFT JOIN head_part h ON h.{ROW_ID} = e.{ROW_ID}",
    ]
    for col in group.columns:
        if DISTINCT in col.parts:
            ctes += _distinct_ctes(col, keys, tile, events, _span_on(keys, "d"), head_on)
            parts.final.append(
                f"COALESCE(d{col.index}.n, 0) AS {agg_column(view.index, group.index, col.index, 'distinct')}"
            )
            joins.append(f"LEFT JOIN d{col.index} ON d{col.index}.{ROW_ID} = e.{ROW_ID}")
    return (
        f"WITH {', '.join(ctes)} SELECT e.{ROW_ID}, {', '.join(parts.final)} FROM ent e "
        f"{' '.join(joins)} ORDER BY e.{ROW_ID}"
    )


def _span_on(keys: tuple[str, ...], alias: str) -> str:
    return " AND ".join([*(f"s.{k} = {alias}.{k}" for k in keys), f"s.tile = {alias}.tile"])


def _distinct_ctes(
    col: ColumnAggs, keys: tuple[str, ...], tile: str, events: str, span_on: str, head_on: str
) -> list[str]:
    c, i = f"c{col.index}", col.index
    return [
        f"dvals{i} AS (SELECT DISTINCT {', '.join(f'a.{k}' for k in keys)}, a.{tile} AS tile, a.{c} AS v "
        f"FROM {events} a WHERE a.{c} IS NOT NULL)",
        f"d{i} AS (SELECT {ROW_ID}, count(DISTINCT v) AS n FROM ("
        f"SELECT s.{ROW_ID}, d.v FROM spans s JOIN dvals{i} d ON {span_on} "
        f"UNION ALL SELECT e.{ROW_ID}, a.{c} AS v FROM ent e JOIN {events} a ON {head_on} "
        f"WHERE a.{c} IS NOT NULL) GROUP BY {ROW_ID})",
    ]
