"""The Spark engine: the same raw columns as the local engine, computed by Spark.

- Latest-value views: request rows and source rows are unioned and ordered per key by
  (time, source-before-request, created time); each request row takes the last source
  row at or before it (`last(..., ignorenulls)` over a running window). This is a
  sort per key, not a join that multiplies rows, so a key with many source rows costs
  n log n, not n x m. Equal event times: the largest created time is last, so it wins.
- Windowed aggregations: a range join on key and start(t) <= event_ts <= t, grouped by
  request row, with the exact limb sums of aggregations.py (limbs computed in the
  Python workers by the same numpy code as the local engine).

Results are sorted by request row and collected as Arrow; the driver finishes them
(batch.historical.finish), so both engines share every value rule after the join.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from batch.historical.aggregations import LimbLayout, limb_layout, limbs, numeric_values
from batch.historical.entity_df import ROW_ID, ROW_TS
from batch.historical.finish import LayoutKey, RawResult
from batch.historical.plan import RetrievalPlan, ViewRequest, WindowGroup, agg_column, plain_column
from batch.historical.progress import Stages
from featureline.semantics import US

EVENT_TS = "__fl_ets"
CREATED = "__fl_cr"
_KIND = "__fl_kind"
_PAYLOAD = "__fl_p"
_SPARK_TYPES = {"int32": "long", "int64": "long", "string": "string", "bytes": "binary"}


def run_spark(plan: RetrievalPlan, master: str | None = None) -> RawResult:
    from batch.spark import get_spark

    spark = get_spark(master)
    # Parquet files written by pandas hold nanosecond timestamps, which Spark refuses to
    # read as timestamps; read them as longs and floor to microseconds (micros_expr).
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    entities = spark.createDataFrame(plan.narrow)
    parts: list[pa.Table] = []
    layouts: dict[LayoutKey, LimbLayout] = {}
    views = [v for v in plan.views if v.source.has_files]
    stages = Stages(len(views), "historical (spark)")
    try:
        for view in views:
            if view.groups:
                view_parts, view_layouts = _aggregate_view(spark, entities, view)
                parts += view_parts
                layouts.update(view_layouts)
            else:
                parts.append(_collect(_latest(spark, entities, view)))
            stages.step()
    finally:
        stages.close()
    columns: dict[str, pa.ChunkedArray] = {}
    for part in parts:
        columns.update({name: part.column(name) for name in part.column_names})
    table = pa.table(columns) if columns else pa.table({ROW_ID: plan.narrow.column(ROW_ID)})
    return RawResult(table, layouts)


def _collect(frame: Any) -> pa.Table:
    """Collect and put rows back in request order on the driver: an O(n) scatter by row
    id, instead of a Spark sort whose range-partition sampling runs the plan twice."""
    table = frame.toArrow()
    row_ids = table.column(ROW_ID).to_numpy()
    order = np.empty(len(row_ids), dtype=np.int64)
    order[row_ids] = np.arange(len(row_ids), dtype=np.int64)
    return table.drop_columns([ROW_ID]).take(order)


def micros_expr(column: str, arrow_type: pa.DataType) -> Any:
    """UTC microseconds of a source timestamp column (naive = UTC: session zone is UTC)."""
    from pyspark.sql import functions as F

    col = F.col(f"`{column}`")
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        return F.expr(f"(`{column}` - pmod(`{column}`, 1000)) div 1000")
    return F.unix_micros(col.cast("timestamp"))


def read_source(spark: Any, view: ViewRequest, columns: list[tuple[str, str]]) -> Any:
    """The view's Parquet files: internal key names, EVENT_TS, CREATED, `columns`."""
    from pyspark.sql import functions as F

    src = view.source
    frame = spark.read.option("mergeSchema", "true").parquet(str(src.path))
    schema = src.schema
    selected = [
        F.col(f"`{src.columns[k.name]}`").cast(_SPARK_TYPES.get(k.dtype, "string")).alias(internal)
        for k, internal in zip(view.view.join_keys, view.keys, strict=True)
    ]
    selected.append(micros_expr(src.timestamp, schema.field(src.timestamp).type).alias(EVENT_TS))
    if src.created:
        created = micros_expr(src.created, schema.field(src.created).type)
    else:
        created = F.lit(None).cast("long")
    selected.append(created.alias(CREATED))
    selected += [F.col(f"`{col}`").alias(alias) for col, alias in columns]
    frame = frame.select(*selected).where(F.col(EVENT_TS).isNotNull())
    for key in view.keys:
        frame = frame.where(F.col(key).isNotNull())
    return frame


def _latest(spark: Any, entities: Any, view: ViewRequest) -> Any:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = [plain_column(view.index, j) for j in range(len(view.features))]
    cols = [(view.source.columns[f], n) for f, n in zip(view.features, names, strict=True)]
    source = read_source(spark, view, cols)
    payload = F.struct(F.col(EVENT_TS).alias("ts"), *[F.col(n) for n in names])
    rows = source.select(
        *view.keys,
        F.col(EVENT_TS).alias(ROW_TS),
        F.lit(0).alias(_KIND),
        F.col(CREATED),
        payload.alias(_PAYLOAD),
        F.lit(None).cast("long").alias(ROW_ID),
    )
    payload_type = rows.schema[_PAYLOAD].dataType
    requests = entities.select(
        *view.keys,
        F.col(ROW_TS),
        F.lit(1).alias(_KIND),
        F.lit(None).cast("long").alias(CREATED),
        F.lit(None).cast(payload_type).alias(_PAYLOAD),
        F.col(ROW_ID),
    )
    # Source rows sort before request rows at the same instant (a row exactly at t
    # counts), and among them by created time, nulls first (a missing one loses).
    window = (
        Window.partitionBy(*view.keys)
        .orderBy(ROW_TS, _KIND, CREATED)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    found = F.last(_PAYLOAD, ignorenulls=True).over(window)
    joined = rows.unionByName(requests).withColumn("__fl_m", found).where(F.col(_KIND) == 1)
    ttl_us = view.view.ttl_s * US
    values = []
    for name in names:
        value = F.col(f"__fl_m.{name}")
        if ttl_us > 0:
            value = F.when(F.col("__fl_m.ts") >= F.col(ROW_TS) - F.lit(ttl_us), value)
        values.append(value.alias(name))
    return joined.select(ROW_ID, *values)


def _aggregate_view(
    spark: Any, entities: Any, view: ViewRequest
) -> tuple[list[pa.Table], dict[LayoutKey, LimbLayout]]:
    from pyspark.sql import functions as F

    index = {c.column: c.index for g in view.groups for c in g.columns}
    cols = [(view.source.columns[c], f"c{index[c]}") for c in view.agg_columns()]
    events = read_source(spark, view, cols).drop(CREATED)
    for _, name in cols:
        if events.schema[name].dataType.typeName() in ("double", "float"):
            events = events.withColumn(name, F.when(F.isnan(name), F.lit(None)).otherwise(F.col(name)))
    summed = sorted({index[c.column] for g in view.groups for c in g.columns if c.needs_limbs})
    layouts = {i: _layout(events, f"c{i}", f"{view.view.name}") for i in summed}
    events = _with_limbs(events, layouts).cache()
    try:
        parts = [_collect(_window_frame(entities, events, view, g, layouts)) for g in view.groups]
    finally:
        events.unpersist()
    by_name = {i: c for c, i in index.items()}
    return parts, {(view.index, by_name[i]): lay for i, lay in layouts.items()}


def _layout(events: Any, column: str, view: str) -> LimbLayout:
    """The limb layout of one column over all events: per Arrow batch, then merged."""

    def batch_layouts(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            values = numeric_values(batch.column(0), f"{view}.{column}")
            lay = limb_layout(values)
            yield pa.RecordBatch.from_pydict({"base": [lay.base], "count": [lay.count]})

    rows = events.select(column).mapInArrow(batch_layouts, "base long, count long").collect()
    layout = LimbLayout.empty()
    for row in rows:
        layout = layout.merge(LimbLayout(int(row["base"]), int(row["count"])))
    return layout


def _with_limbs(events: Any, layouts: dict[int, LimbLayout]) -> Any:
    if not any(lay.count for lay in layouts.values()):
        return events
    from pyspark.sql.types import LongType, StructField, StructType

    fields = list(events.schema.fields)
    for i, lay in layouts.items():
        fields += [StructField(f"c{i}_l{j}", LongType(), False) for j in range(lay.count)]
    plan = dict(layouts)

    def add_limbs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
            for i, lay in plan.items():
                values = numeric_values(batch.column(f"c{i}"), f"c{i}")
                for j, limb in enumerate(limbs(values, lay)):
                    arrays[f"c{i}_l{j}"] = pa.array(limb)
            yield pa.RecordBatch.from_pydict(arrays)

    return events.mapInArrow(add_limbs, StructType(fields))


def _window_frame(
    entities: Any, events: Any, view: ViewRequest, group: WindowGroup, layouts: dict[int, LimbLayout]
) -> Any:
    from pyspark.sql import functions as F

    e, a = entities.alias("e"), events.alias("a")
    cond = [F.col(f"e.{k}") == F.col(f"a.{k}") for k in view.keys]
    cond += [
        F.col(f"a.{EVENT_TS}") >= F.col(f"e.{group.start_column}"),
        F.col(f"a.{EVENT_TS}") <= F.col(f"e.{ROW_TS}"),
    ]
    aggs = []
    for col in group.columns:
        value = F.col(f"a.c{col.index}")

        def out(kind: str, col_index: int = col.index) -> str:
            return agg_column(view.index, group.index, col_index, kind)

        aggs.append(F.count(value).alias(out("count")))
        if "min" in col.functions:
            aggs.append(F.min(value).alias(out("min")))
        if "max" in col.functions:
            aggs.append(F.max(value).alias(out("max")))
        if "count_distinct" in col.functions:
            aggs.append(F.countDistinct(value).alias(out("distinct")))
        if col.needs_limbs:
            for j in range(layouts[col.index].count):
                aggs.append(F.sum(F.col(f"a.c{col.index}_l{j}")).alias(out(f"l{j}")))
    joined = e.join(a, on=cond, how="left")
    return joined.groupBy(F.col(f"e.{ROW_ID}").alias(ROW_ID)).agg(*aggs)
