"""The local engine: DuckDB reads the Parquet sources and joins them, spilling to disk.

- Latest-value views: one ASOF LEFT JOIN per view (largest event time <= t per key).
  With a created-timestamp column the ASOF order key is (event_us, created_us) packed
  into one HUGEINT, so equal event times are broken by the created time inside the
  join itself instead of by a separate dedup pass over the source. A winning row older
  than t - ttl means no row is in range (it was the newest <= t): null.
- Windowed aggregations: whole tiles plus the head of the row's own tile
  (local_windows.py, aggregations.py). The events' aggregated columns are loaded
  into memory, for their exact-sum limbs.

DuckDB runs with `memory_limit`, `threads` and a `temp_directory` so a join larger than
memory spills instead of failing. Results come back ordered by request row.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featureline.batch.historical.aggregations import LimbLayout
from featureline.batch.historical.entity_df import ROW_ID, ROW_TS
from featureline.batch.historical.finish import LayoutKey, RawResult
from featureline.batch.historical.plan import RetrievalPlan, ViewRequest, plain_column, quote
from featureline.batch.historical.progress import Stages
from featureline.errors import BadInputError, FeaturelineError
from featureline.semantics import US

EVENT_TS = "__fl_ets"
ORDER = "__fl_ord"
# (event_us, created_us) packed as event * 2**64 + (created + 2**63); a missing created
# time packs as 0 and so loses to any present one (semantics.latest_order_key).
_PACK = "18446744073709551616"
_CREATED_OFFSET = "9223372036854775808"
_ENTITY_CREATED = "18446744073709551615"
_SQL_TYPES = {"int32": "BIGINT", "int64": "BIGINT", "string": "VARCHAR", "bytes": "BLOB"}


@dataclass(frozen=True)
class LocalOptions:
    """DuckDB limits. memory_limit: DuckDB syntax ('4GB'); None = half of RAM."""

    memory_limit: str | None = None
    threads: int | None = None
    temp_directory: str | None = None


def default_memory_limit() -> str:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(total // 2 // 2**20, 256)}MB"


def con_limit(options: LocalOptions | None) -> str:
    return (options.memory_limit if options else None) or default_memory_limit()


def connect(options: LocalOptions) -> Any:
    import duckdb

    con = duckdb.connect()
    temp = options.temp_directory or os.path.join(tempfile.gettempdir(), "featureline-duckdb")
    con.execute(f"SET memory_limit = '{con_limit(options)}'")
    con.execute(f"SET threads = {int(options.threads or os.cpu_count() or 2)}")
    con.execute(f"SET temp_directory = '{temp}'")
    # Row order is restored by ORDER BY row id; not preserving scan order saves memory.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    return con


def run_local(plan: RetrievalPlan, options: LocalOptions | None = None) -> RawResult:
    import duckdb

    from featureline.batch.historical.local_windows import aggregate_view

    con = connect(options or LocalOptions())
    con.register("ent", plan.narrow)
    register_remote(con, plan.views)
    parts: list[pa.Table] = []
    layouts: dict[LayoutKey, LimbLayout] = {}
    plain = [v for v in plan.views if not v.groups and v.source.has_files]
    aggregating = [v for v in plan.views if v.groups and v.source.has_files]
    stages = Stages(len(aggregating) + bool(plain), "historical (local)")
    try:
        if plain:
            parts.append(query(con, _latest_sql(plain)))
            stages.step()
        for view in aggregating:
            view_parts, view_layouts = aggregate_view(con, view)
            parts += view_parts
            layouts.update(view_layouts)
            stages.step()
    except duckdb.OutOfMemoryException as exc:
        raise FeaturelineError(
            f"DuckDB ran out of memory even when spilling (memory limit {con_limit(options)}); "
            f"raise it with --memory-limit: {exc}"
        ) from exc
    except duckdb.Error as exc:
        raise BadInputError(f"historical retrieval failed reading the sources: {exc}") from exc
    finally:
        stages.close()
        con.close()
    return RawResult(_side_by_side(parts, plan.entities.num_rows), layouts)


def query(con: Any, sql: str) -> pa.Table:
    """Run `sql`; the row id column it returns first is dropped (rows are in order)."""
    table = con.sql(sql).to_arrow_table()
    return table.drop_columns([ROW_ID]) if ROW_ID in table.column_names else table


def _side_by_side(parts: list[pa.Table], n: int) -> pa.Table:
    columns: dict[str, pa.ChunkedArray] = {}
    for part in parts:
        for name in part.column_names:
            columns[name] = part.column(name)
    return pa.table(columns) if columns else pa.table({ROW_ID: pa.nulls(n, pa.int64())})


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
        order = f"{event}::HUGEINT * {_PACK} + COALESCE({created}, 0)"
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


def _latest_sql(views: list[ViewRequest]) -> str:
    selects, joins = [], []
    for view in views:
        alias = f"s{view.index}"
        cols = [(view.source.columns[f], plain_column(view.index, j)) for j, f in enumerate(view.features)]
        ttl_us = view.view.ttl_s * US
        for _, name in cols:
            value = f"{alias}.{name}"
            if ttl_us > 0:
                value = f"CASE WHEN {alias}.{EVENT_TS} >= e.{ROW_TS} - {ttl_us} THEN {value} END"
            selects.append(f"{value} AS {name}")
        on = [f"e.{k} = {alias}.{k}" for k in view.keys]
        entity_order = f"e.{ROW_TS}"
        if view.source.created:
            entity_order = f"e.{ORDER}"
        on.append(f"{entity_order} >= {alias}.{ORDER}")
        joins.append(f"ASOF LEFT JOIN ({source_sql(view, cols)}) {alias} ON {' AND '.join(on)}")
    packed = f"{ROW_TS}::HUGEINT * {_PACK} + {_ENTITY_CREATED}"
    return (
        f"SELECT e.{ROW_ID}, {', '.join(selects)} "
        f"FROM (SELECT *, {packed} AS {ORDER} FROM ent) e {' '.join(joins)} "
        f"ORDER BY e.{ROW_ID}"
    )
