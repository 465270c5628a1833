"""The Spark engine: the same raw columns as the local engine, computed by Spark.

- Latest-value views: request rows and source rows are unioned and ordered per key by
  (time, source-before-request, created time); each request row takes the last source
  row at or before it (`last(..., ignorenulls)` over a running window). This is a
  sort per key, not a join that multiplies rows, so a key with many source rows costs
  n log n, not n x m. Equal event times: the largest created time is last, so it wins.
- Windowed aggregations: whole tiles plus the head of the row's own tile, as in the
  local engine (spark_windows.py), with the exact limb sums of aggregations.py (limbs
  computed in the Python workers by the same numpy code as the local engine).

Results are sorted by request row and collected as Arrow; the driver finishes them
(batch.historical.finish), so both engines share every value rule after the join.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from featureline.batch.historical.aggregations import LimbLayout
from featureline.batch.historical.entity_df import ROW_ID, ROW_TS
from featureline.batch.historical.finish import LayoutKey, RawResult
from featureline.batch.historical.plan import RetrievalPlan, ViewRequest, plain_column
from featureline.batch.historical.progress import Stages
from featureline.batch.historical.spark_source import CREATED, EVENT_TS, collect, read_source
from featureline.batch.historical.spark_windows import aggregate_view
from featureline.batch.spark import get_spark
from featureline.semantics import US

_KIND = "__fl_kind"
_PAYLOAD = "__fl_p"


def run_spark(plan: RetrievalPlan, master: str | None = None) -> RawResult:
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
                view_parts, view_layouts = aggregate_view(spark, entities, view)
                parts += view_parts
                layouts.update(view_layouts)
            else:
                parts.append(collect(_latest(spark, entities, view)))
            stages.step()
    finally:
        stages.close()
    columns: dict[str, pa.ChunkedArray] = {}
    for part in parts:
        columns.update({name: part.column(name) for name in part.column_names})
    table = pa.table(columns) if columns else pa.table({ROW_ID: plan.narrow.column(ROW_ID)})
    return RawResult(table, layouts)


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
