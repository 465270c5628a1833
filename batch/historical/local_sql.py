"""The local engine's SQL over the sources, shared by latest-value joins
(local_engine.py) and windowed aggregations (local_windows.py): a view's Parquet
files as a relation with internal key names, event time and the latest-value order key.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from featureline.batch.historical.entity_df import ROW_ID
from featureline.batch.historical.plan import ViewRequest, quote

EVENT_TS = "__fl_ets"
ORDER = "__fl_ord"
# (event_us, created_us) packed as event * 2**64 + (created + 2**63); a missing created
# time packs as 0 and so loses to any present one (semantics.latest_order_key).
PACK = "18446744073709551616"
_CREATED_OFFSET = "9223372036854775808"
_SQL_TYPES = {"int32": "BIGINT", "int64": "BIGINT", "string": "VARCHAR", "bytes": "BLOB"}


def query(con: Any, sql: str) -> pa.Table:
    """Run `sql`; the row id column it returns first is dropped (rows are in order)."""
    table = con.sql(sql).to_arrow_table()
    return table.drop_columns([ROW_ID]) if ROW_ID in table.column_names else table


def micros_sql(column: str, arrow_type: pa.DataType | None) -> str:
    """UTC microseconds of a timestamp column; nanoseconds (pandas' default) floored."""
    if arrow_type is not None and pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        ns = f"epoch_ns({quote(column)})"
        # DuckDB's % and // truncate toward zero; subtracting the non-negative remainder
        # first makes this an exact floor before 1970 too.
        return f"(({ns} - ((({ns} % 1000) + 1000) % 1000)) // 1000)"
    return f"epoch_us({quote(column)})"


def source_sql(view: ViewRequest, columns: list[tuple[str, str]]) -> str:
    """The view's Parquet files as a relation: internal key names, EVENT_TS (UTC
    microseconds), ORDER (latest-value order key) and `columns` (file column, alias)."""
    src = view.source
    keys = [
        f"CAST({quote(src.columns[k.name])} AS {_SQL_TYPES.get(k.dtype, 'VARCHAR')}) AS {internal}"
        for k, internal in zip(view.view.join_keys, view.keys, strict=True)
    ]
    event = micros_sql(src.timestamp, src.schema.field(src.timestamp).type if src.has_files else None)
    if src.created:
        created_type = src.schema.field(src.created).type if src.has_files else None
        created = f"{micros_sql(src.created, created_type)}::HUGEINT + {_CREATED_OFFSET}"
        order = f"{event}::HUGEINT * {PACK} + COALESCE({created}, 0)"
    else:
        order = event
    selected = ", ".join(
        [*keys, f"{event} AS {EVENT_TS}", f"{order} AS {ORDER}"]
        + [f"{quote(col)} AS {alias}" for col, alias in columns]
    )
    return f"SELECT {selected} FROM {_relation(view)} WHERE {quote(src.timestamp)} IS NOT NULL"


def _relation(view: ViewRequest) -> str:
    """The source as DuckDB reads it: local Parquet by path; an object-store source
    as the pyarrow dataset registered by `register_remote` (DuckDB's own httpfs would
    be an extension download, which a machine without internet cannot do)."""
    src = view.source
    if src.is_remote:
        return remote_name(view)
    path = str(src.path)
    if src.is_dir:
        path = path.rstrip("/") + "/**/*.parquet"
    literal = path.replace("'", "''")
    hive = "true" if src.is_dir else "false"
    return f"read_parquet('{literal}', hive_partitioning = {hive}, union_by_name = true)"


def remote_name(view: ViewRequest) -> str:
    return f"__fl_src{view.index}"


def register_remote(con: Any, views: tuple[ViewRequest, ...]) -> None:
    for view in views:
        if view.source.is_remote and view.source.has_files:
            con.register(remote_name(view), view.source.path.dataset())
