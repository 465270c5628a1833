"""Windowed aggregations in Spark: whole tiles plus the head, as local_windows.py does
in DuckDB (the plan is explained in aggregations.py).

Per window group: events aggregated per (key, tile); each request row exploded into
the w/s tile starts of [start(t), floor(t/s)*s) and joined to them on (key, tile); the
row's own tile's events with event_ts <= t joined on (key, tile) too; count(DISTINCT)
over distinct (key, tile, value) plus the head's values. Only equality joins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from featureline.aggregations import DISTINCT, MAX, MIN, SUM_PARTS, SumTerm
from featureline.batch.historical.aggregations import LimbLayout, limb_layout, limbs, numeric_values
from featureline.batch.historical.entity_df import ROW_ID, ROW_TS
from featureline.batch.historical.finish import LayoutKey
from featureline.batch.historical.plan import ColumnAggs, ViewRequest, WindowGroup, agg_column
from featureline.batch.historical.spark_source import CREATED, EVENT_TS, collect, read_source
from featureline.semantics import US

Layouts = dict[tuple[int, str], LimbLayout]  # (column index, sum part) -> its limb layout


def aggregate_view(
    spark: Any, entities: Any, view: ViewRequest
) -> tuple[list[pa.Table], dict[LayoutKey, LimbLayout]]:
    from pyspark.sql import functions as F

    index = {c.column: c.index for g in view.groups for c in g.columns}
    cols = [(view.source.columns[c], f"c{index[c]}") for c in view.agg_columns()]
    events = read_source(spark, view, cols).drop(CREATED)
    for _, name in cols:
        if events.schema[name].dataType.typeName() in ("double", "float"):
            events = events.withColumn(name, F.when(F.isnan(name), F.lit(None)).otherwise(F.col(name)))
    for tile_s in sorted({g.tile_s for g in view.groups}):
        size = F.lit(tile_s * US)
        # pmod is the non-negative remainder: an exact floor to the tile, before 1970 too.
        events = events.withColumn(f"__fl_tile_{tile_s}", F.col(EVENT_TS) - F.pmod(F.col(EVENT_TS), size))
    summed = sorted({(index[c.column], t.part) for g in view.groups for c in g.columns for t in c.sum_terms})
    layouts = {(i, part): _layout(events, f"c{i}", view.view.name, SUM_PARTS[part]) for i, part in summed}
    events = _with_limbs(events, layouts).cache()
    try:
        parts = [collect(_window_frame(entities, events, view, g, layouts)) for g in view.groups]
    finally:
        events.unpersist()
    by_index = {i: c for c, i in index.items()}
    return parts, {(view.index, by_index[i], part): lay for (i, part), lay in layouts.items()}


def _layout(events: Any, column: str, view: str, term: SumTerm) -> LimbLayout:
    """The limb layout of one column's sum term over all events: per Arrow batch, then
    merged."""

    def batch_layouts(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            lay = limb_layout(numeric_values(batch.column(0), f"{view}.{column}"), term)
            yield pa.RecordBatch.from_pydict({"base": [lay.base], "count": [lay.count]})

    rows = events.select(column).mapInArrow(batch_layouts, "base long, count long").collect()
    layout = LimbLayout.empty()
    for row in rows:
        layout = layout.merge(LimbLayout(int(row["base"]), int(row["count"])))
    return layout


def _with_limbs(events: Any, layouts: Layouts) -> Any:
    if not any(lay.count for lay in layouts.values()):
        return events
    from pyspark.sql.types import LongType, StructField, StructType

    fields = list(events.schema.fields)
    for (i, part), lay in layouts.items():
        tag = SUM_PARTS[part].tag
        fields += [StructField(f"c{i}_{tag}{j}", LongType(), False) for j in range(lay.count)]
    plan = dict(layouts)

    def add_limbs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
            for (i, part), lay in plan.items():
                term = SUM_PARTS[part]
                values = numeric_values(batch.column(f"c{i}"), f"c{i}")
                for j, limb in enumerate(limbs(values, lay, term)):
                    arrays[f"c{i}_{term.tag}{j}"] = pa.array(limb)
            yield pa.RecordBatch.from_pydict(arrays)

    return events.mapInArrow(add_limbs, StructType(fields))


def _limb_names(col: ColumnAggs, layouts: Layouts) -> list[str]:
    """The kinds of a column's limb sums (featureline.batch.historical.plan.agg_column)."""
    return [f"{term.tag}{j}" for term in col.sum_terms for j in range(layouts[(col.index, term.part)].count)]


def _aggs(col: ColumnAggs, layouts: Layouts, prefix: str, over_tiles: bool) -> list[Any]:
    """Aggregates of one column, over events (tiles, head) or over tile rows (full)."""
    from pyspark.sql import functions as F

    c = f"c{col.index}"

    def src(name: str) -> Any:
        return F.col(f"{prefix}{name}")

    result = [(F.sum(src(f"{c}_n")) if over_tiles else F.count(src(c))).alias(f"{c}_n")]
    for fn, func in ((MIN, F.min), (MAX, F.max)):
        if fn in col.parts:
            result.append(func(src(f"{c}_{fn}" if over_tiles else c)).alias(f"{c}_{fn}"))
    for kind in _limb_names(col, layouts):
        result.append(F.sum(src(f"{c}_{kind}")).alias(f"{c}_{kind}"))
    return result


def _window_frame(entities: Any, events: Any, view: ViewRequest, group: WindowGroup, layouts: Layouts) -> Any:
    from pyspark.sql import functions as F

    keys, tile = list(view.keys), group.event_tile_column
    event_aggs = [a for c in group.columns for a in _aggs(c, layouts, "", False)]
    tiles = events.groupBy(*keys, F.col(tile).alias("tile")).agg(*event_aggs)
    spans = entities.where(F.col(group.head_column) > F.col(group.start_column)).select(
        ROW_ID,
        *keys,
        F.explode(
            F.sequence(
                F.col(group.start_column),
                F.col(group.head_column) - F.lit(group.tile_s * US),
                F.lit(group.tile_s * US),
            )
        ).alias("tile"),
    )
    full_aggs = [a for c in group.columns for a in _aggs(c, layouts, "", True)]
    full = spans.join(tiles, on=[*keys, "tile"]).groupBy(ROW_ID).agg(*full_aggs)
    head_rows = _head_rows(entities, events, keys, tile, group)
    head = head_rows.groupBy(ROW_ID).agg(*event_aggs)
    f = full.select(ROW_ID, *[F.col(c).alias(f"f_{c}") for c in full.columns if c != ROW_ID])
    h = head.select(ROW_ID, *[F.col(c).alias(f"h_{c}") for c in head.columns if c != ROW_ID])
    frame = entities.select(ROW_ID).join(f, ROW_ID, "left").join(h, ROW_ID, "left")
    out = []
    for col in group.columns:
        out += _combine(view, group, col, layouts)
        if DISTINCT in col.parts:
            frame = frame.join(_distinct(spans, head_rows, events, keys, tile, col), ROW_ID, "left")
            name = agg_column(view.index, group.index, col.index, "distinct")
            out.append(F.coalesce(F.col(f"d{col.index}"), F.lit(0)).alias(name))
    return frame.select(ROW_ID, *out)


def _head_rows(entities: Any, events: Any, keys: list[str], tile: str, group: WindowGroup) -> Any:
    """Request rows joined to the events of their own tile at or before t."""
    from pyspark.sql import functions as F

    e, a = entities.alias("e"), events.alias("a")
    cond = [F.col(f"e.{k}") == F.col(f"a.{k}") for k in keys]
    cond += [
        F.col(f"a.{tile}") == F.col(f"e.{group.head_column}"),
        F.col(f"a.{EVENT_TS}") <= F.col(f"e.{ROW_TS}"),
    ]
    value_cols = [c for c in events.columns if c.startswith("c")]
    return e.join(a, on=cond).select(
        F.col(f"e.{ROW_ID}").alias(ROW_ID), *[F.col(f"a.{c}") for c in value_cols]
    )


def _combine(view: ViewRequest, group: WindowGroup, col: ColumnAggs, layouts: Layouts) -> list[Any]:
    from pyspark.sql import functions as F

    c = f"c{col.index}"

    def out(kind: str) -> str:
        return agg_column(view.index, group.index, col.index, kind)

    def both(name: str) -> Any:
        return F.coalesce(F.col(f"f_{name}"), F.lit(0)) + F.coalesce(F.col(f"h_{name}"), F.lit(0))

    result = [both(f"{c}_n").cast("long").alias(out("count"))]
    # least / greatest skip nulls: an empty part does not hide the other.
    if MIN in col.parts:
        result.append(F.least(F.col(f"f_{c}_min"), F.col(f"h_{c}_min")).alias(out("min")))
    if MAX in col.parts:
        result.append(F.greatest(F.col(f"f_{c}_max"), F.col(f"h_{c}_max")).alias(out("max")))
    for kind in _limb_names(col, layouts):
        result.append(both(f"{c}_{kind}").cast("long").alias(out(kind)))
    return result


def _distinct(spans: Any, head_rows: Any, events: Any, keys: list[str], tile: str, col: ColumnAggs) -> Any:
    from pyspark.sql import functions as F

    c = f"c{col.index}"
    values = (
        events.where(F.col(c).isNotNull())
        .select(*keys, F.col(tile).alias("tile"), F.col(c).alias("v"))
        .distinct()
    )
    in_tiles = spans.join(values, on=[*keys, "tile"]).select(ROW_ID, "v")
    in_head = head_rows.where(F.col(c).isNotNull()).select(ROW_ID, F.col(c).alias("v"))
    return in_tiles.unionByName(in_head).groupBy(ROW_ID).agg(F.countDistinct("v").alias(f"d{col.index}"))
