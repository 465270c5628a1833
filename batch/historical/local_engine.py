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
from featureline.batch.historical.local_sql import EVENT_TS, ORDER, PACK, query, register_remote, source_sql
from featureline.batch.historical.local_windows import aggregate_view
from featureline.batch.historical.plan import RetrievalPlan, ViewRequest, plain_column
from featureline.batch.historical.progress import Stages
from featureline.errors import BadInputError, FeaturelineError
from featureline.semantics import US

# A request row's created part in the packed order key (local_sql.PACK): 2**64 - 1, so
# it sorts after every source row of the same event time.
_ENTITY_CREATED = "18446744073709551615"


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


def _side_by_side(parts: list[pa.Table], n: int) -> pa.Table:
    columns: dict[str, pa.ChunkedArray] = {}
    for part in parts:
        for name in part.column_names:
            columns[name] = part.column(name)
    return pa.table(columns) if columns else pa.table({ROW_ID: pa.nulls(n, pa.int64())})


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
    packed = f"{ROW_TS}::HUGEINT * {PACK} + {_ENTITY_CREATED}"
    return (
        f"SELECT e.{ROW_ID}, {', '.join(selects)} "
        f"FROM (SELECT *, {packed} AS {ORDER} FROM ent) e {' '.join(joins)} "
        f"ORDER BY e.{ROW_ID}"
    )
