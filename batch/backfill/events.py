"""Raw events as batch jobs see them: read from the offline store, deduplicated, typed.

Raw events are stored by streaming under `<offline>/raw/<topic>/date=YYYY-MM-DD/` with
the source's fields plus `created`, `kafka_partition` and `kafka_offset`
(featureline.offline). An event is identified by (partition, offset) (semantics.md 3):
a message that was stored twice (a redelivery after a crash) is one event, so every
batch computation first keeps one row per identity. Rows with offset -1 did not come
from Kafka and are all kept.

Everything here is Arrow in, Arrow out, and pure except `read_raw_events`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.errors import BadInputError
from featureline.object_store import Location
from featureline.offline import KAFKA_OFFSET, KAFKA_PARTITION, dataset, exists

# The event table's names live in the core (the stream job writes offline rows too).
from featureline.offline_layout import CREATED_US as CREATED_US
from featureline.offline_layout import TS_US as TS_US
from featureline.offline_layout import EventColumns as EventColumns
from featureline.semantics import US

DAY = timedelta(days=1)


def to_us(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Timestamps (any unit, any zone, or naive = UTC) -> int64 microseconds."""
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("us", tz=column.type.tz))
        return pc.cast(column, pa.int64())
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.int64())
    raise BadInputError(f"column of type {column.type} is not a timestamp")


def us_to_datetime(ts_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


def datetime_to_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def day_range(start_us: int, end_us: int) -> list[str]:
    """The UTC dates "YYYY-MM-DD" that [start, end) touches."""
    day = us_to_datetime(start_us).replace(hour=0, minute=0, second=0, microsecond=0)
    end = us_to_datetime(end_us)
    out = []
    while day < end:
        out.append(day.strftime("%Y-%m-%d"))
        day += DAY
    return out


def with_times(table: pa.Table, cols: EventColumns) -> pa.Table:
    """Add TS_US and CREATED_US (int64 us; created -1 when absent, as semantics orders it)."""
    if cols.timestamp not in table.column_names:
        raise BadInputError(f"raw events have no timestamp column {cols.timestamp!r}")
    table = table.append_column(TS_US, to_us(table[cols.timestamp]))
    if cols.created and cols.created in table.column_names:
        created = pc.fill_null(to_us(table[cols.created]), -1)
    else:
        created = pa.array(np.full(table.num_rows, -1, dtype=np.int64))
    return table.append_column(CREATED_US, created)


def dedupe_events(table: pa.Table) -> pa.Table:
    """One row per Kafka identity (partition, offset >= 0); other rows are all kept.

    Of duplicates the first stored copy (smallest created) is kept: a redelivered message
    carries the same payload, so which copy wins changes nothing but `created`.
    """
    if KAFKA_OFFSET not in table.column_names or table.num_rows == 0:
        return table
    offsets = pc.fill_null(table[KAFKA_OFFSET], -1).to_numpy()
    parts = pc.fill_null(table[KAFKA_PARTITION], -1).to_numpy()
    created = table[CREATED_US].to_numpy() if CREATED_US in table.column_names else None
    from_kafka = offsets >= 0
    if not from_kafka.any():
        return table
    idx = np.flatnonzero(from_kafka)
    order_keys = [offsets[idx], parts[idx]]
    if created is not None:
        order_keys.insert(0, created[idx])
    order = idx[np.lexsort(order_keys)]  # by partition, offset, then created
    p, o = parts[order], offsets[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (p[1:] != p[:-1]) | (o[1:] != o[:-1])
    keep = np.concatenate([np.flatnonzero(~from_kafka), order[first]])
    keep.sort()
    if len(keep) == table.num_rows:
        return table
    return table.take(pa.array(keep))


def read_raw_events(
    base: Path | Location,
    cols: EventColumns,
    start_us: int | None,
    end_us: int | None,
) -> pa.Table:
    """Events of one source with start <= ts < end, deduplicated, with TS_US/CREATED_US.

    Only the date partitions that can hold such events are opened.
    """
    if not exists(base):
        return _empty_events(cols)
    data = dataset(base)
    wanted = [cols.file_column(c) for c in (*cols.join_keys, *cols.values)] + [cols.timestamp]
    optional = [cols.created, KAFKA_PARTITION, KAFKA_OFFSET]
    names = set(data.schema.names)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise BadInputError(f"source at {base} has no column(s) {', '.join(missing)}")
    columns = list(dict.fromkeys(wanted + [c for c in optional if c and c in names]))
    flt = None
    if start_us is not None and end_us is not None and "date" in names:
        days = day_range(start_us, end_us)
        flt = pc.field("date").cast(pa.string()).isin(pa.array(days, pa.string()))
    table = data.to_table(columns=columns, filter=flt)
    if cols.renames:
        mapping = dict(cols.renames)
        table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
    table = with_times(table, cols)
    low = start_us if start_us is not None else -(2**62)
    high = end_us if end_us is not None else 2**62
    bounds = pc.min_max(table[TS_US]).as_py() if table.num_rows else {}
    first, last = bounds.get("min"), bounds.get("max")
    if first is not None and last is not None and not (low <= first and last < high):
        # Filtering copies every column (~0.1 s per 1M rows): only when rows fall outside.
        ts = table[TS_US]
        table = table.filter(pc.and_(pc.greater_equal(ts, low), pc.less(ts, high)))
    return dedupe_events(table)


def _empty_events(cols: EventColumns) -> pa.Table:
    fields = [pa.field(c, pa.null()) for c in (*cols.join_keys, cols.timestamp, *cols.values)]
    fields += [pa.field(TS_US, pa.int64()), pa.field(CREATED_US, pa.int64())]
    return pa.schema(fields).empty_table()
