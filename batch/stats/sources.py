"""Statistics of the three places feature values live, per feature and per UTC day.

- the offline store: a plain view's rows, read from its batch source (the files that
  materialize reads: deduplicated events of the date range, columns renamed by the
  source's field mapping). An aggregating view has no per-row feature values offline
  (only its input events and tiles): its statistics come from a training set or from
  logged vectors, which hold the values as served;
- a training set: historical retrieval's output (full feature names, view__feature),
  days by its event timestamp;
- logged vectors: Feast's feature-logging files (FeatureServiceLoggingSource: columns
  view__feature, view__feature__status, __log_timestamp, ...), a file or a directory of
  Parquet files. A value whose status is not PRESENT (1) counts as null: it was not
  served.
Reads are pyarrow.dataset (the project's local Parquet reader, as materialize).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from featureline.batch.backfill.events import TS_US, read_raw_events
from featureline.errors import BadInputError
from featureline.object_store import Location
from featureline.offline_layout import EventColumns
from featureline.specs import RepoSpec, ViewSpec
from featureline.stats.table import Column, StatsSet, full_name_columns, table_stats
from featureline.stats.table import training_set_stats as training_set_stats

LOG_TIMESTAMP = "__log_timestamp"
STATUS_SUFFIX = "__status"
PRESENT = 1  # feast.protos ServingService FieldStatus.PRESENT
_DAY_TS = "__stats_ts"


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def view_stats(view: ViewSpec, start: datetime, end: datetime) -> StatsSet:
    """A plain view's features in [start, end), per day of event time."""
    if view.is_aggregating:
        raise BadInputError(
            f"view {view.name!r} aggregates: its values exist only at request time, not as "
            "offline rows; measure them on a training set (--training-set) or logged vectors (--logged)"
        )
    if view.batch_source is None:
        raise BadInputError(f"view {view.name!r} has no batch (file) source to read")
    rows = read_raw_events(Location.of(view.batch_source), EventColumns.of(view), _us(start), _us(end))
    rows = rows.append_column(_DAY_TS, rows[TS_US].cast(pa.timestamp("us", "UTC")))
    columns = [Column(f.name, view.name, f.name) for f in view.features if f.name in rows.column_names]
    source = {"kind": "offline", "view": view.name, "path": view.batch_source.path,
              "start": start.isoformat(), "end": end.isoformat(), "rows": rows.num_rows}  # fmt: skip
    return StatsSet(source, table_stats(rows, columns, _DAY_TS))


def offline_views(repo: RepoSpec, names: list[str] | None) -> tuple[list[ViewSpec], list[str]]:
    """The views to measure (named, or every plain view with a file source) and a note
    per view left out."""
    if names:
        return [repo.view(n) for n in names], []
    views, skipped = [], []
    for name, view in sorted(repo.views.items()):
        if view.is_aggregating:
            skipped.append(f"{name}: aggregates (values exist at request time only: use --training-set)")
        elif view.batch_source is None:
            skipped.append(f"{name}: no batch (file) source")
        else:
            views.append(view)
    return views, skipped


def read_parquet(path: Path) -> pa.Table:
    """A Parquet file, or every Parquet file under a directory (Hive partitions kept)."""
    if not path.exists():
        raise BadInputError(f"{str(path)!r} does not exist")
    try:
        # Feast partitions logs by `__log_date`: pyarrow skips "_" folders unless told.
        data = ds.dataset(
            path, format="parquet", partitioning="hive", exclude_invalid_files=True, ignore_prefixes=["."]
        )
        return data.to_table()
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(f"{str(path)!r} is not readable Parquet: {exc}") from None


def logged_stats(table: pa.Table, repo: RepoSpec, service: str | None, origin: str) -> StatsSet:
    """Logged served vectors, per day of their log time; not-PRESENT values are nulls."""
    if LOG_TIMESTAMP not in table.column_names:
        raise BadInputError(f"{origin}: no {LOG_TIMESTAMP} column: not Feast's feature-logging layout")
    columns = full_name_columns(repo, table.column_names, service)
    for col in columns:
        status = f"{col.name}{STATUS_SUFFIX}"
        if status in table.column_names:
            served = pc.fill_null(pc.equal(table[status], PRESENT), False)
            values = pc.if_else(served, table[col.name], pa.scalar(None, table.schema.field(col.name).type))
            table = table.set_column(table.schema.get_field_index(col.name), col.name, values)
    source = {"kind": "logged", "path": origin, "service": service, "rows": table.num_rows}
    return StatsSet(source, table_stats(table, columns, LOG_TIMESTAMP))
