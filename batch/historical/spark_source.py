"""The Spark engine's reads of the sources, shared by latest-value joins
(spark_engine.py) and windowed aggregations (spark_windows.py): a view's Parquet files
with internal key names, event and created time in UTC microseconds; and the collect
that puts results back in request order.

pyspark is imported inside the functions, as in the engine's other modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from featureline.batch.historical.entity_df import ROW_ID
from featureline.batch.historical.plan import ViewRequest

EVENT_TS = "__fl_ets"
CREATED = "__fl_cr"
_SPARK_TYPES = {"int32": "long", "int64": "long", "string": "string", "bytes": "binary"}


def collect(frame: Any) -> pa.Table:
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


def spark_path(path: str) -> str:
    """Spark (Hadoop) names S3 `s3a://`; the cluster needs hadoop-aws on its classpath
    and its fs.s3a.* settings (endpoint, credentials), as deploy/README.md says."""
    return "s3a://" + path.split("://", 1)[1] if path.startswith("s3://") else path


def read_source(spark: Any, view: ViewRequest, columns: list[tuple[str, str]]) -> Any:
    """The view's Parquet files: internal key names, EVENT_TS, CREATED, `columns`."""
    from pyspark.sql import functions as F

    src = view.source
    frame = spark.read.option("mergeSchema", "true").parquet(spark_path(src.path.path))
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
