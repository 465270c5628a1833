"""The Parquet offline store layout, shared by streaming, batch and historical retrieval.

    <offline_dir>/raw/<topic>/date=YYYY-MM-DD/<writer>-<seq>.parquet   raw events
    <offline_dir>/<view>/date=YYYY-MM-DD/<writer>-<seq>.parquet        computed features

Each directory is a valid Feast FileSource (a Hive-partitioned Parquet dataset).
Raw events keep their Kafka identity (partition, offset) and ingestion time
(`created`), so a backfill recomputes from exactly the events streaming saw
(semantics.md 3). Files are written to a temporary name and renamed, so a reader or
a crash never sees half a file; a partition is replaced by writing the new files
and then removing the old ones.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from featureline.dtypes import DTYPES, arrow_type
from featureline.object_store import Location

PARTITION_COLUMN = "date"
TS_TYPE = pa.timestamp("us", tz="UTC")
# Kafka identity columns of a raw event; -1 when an event did not come from Kafka.
KAFKA_PARTITION = "kafka_partition"
KAFKA_OFFSET = "kafka_offset"
CREATED = "created"

# The Arrow type of each feature dtype, in every offline table (featureline.dtypes'
# table; Map and Struct have none: their columns keep the source's).
ARROW_TYPES: dict[str, pa.DataType] = {n: arrow_type(n) for n, d in DTYPES.items() if d.arrow}


def raw_dir(offline_dir: Path, topic: str) -> Path:
    return offline_dir / "raw" / topic


def partition_dir(base: Path, day: str) -> Path:
    return base / f"{PARTITION_COLUMN}={day}"


def day_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d")


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_partitioned(
    table: pa.Table,
    base: Path,
    *,
    ts_column: str,
    writer: str = "w",
    replace: bool = False,
) -> list[Path]:
    """Split `table` by the UTC date of `ts_column` and write one file per date.

    With replace=True each touched date partition ends up holding only the new file
    (idempotent re-runs); otherwise the file is added beside the existing ones.
    """
    if table.num_rows == 0:
        return []
    days = pc.strftime(table[ts_column], format="%Y-%m-%d", locale="C")
    written: list[Path] = []
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, day))
        pdir = partition_dir(base, day)
        old = sorted(pdir.glob("*.parquet")) if replace else []
        path = pdir / f"{writer}-{uuid.uuid4().hex[:12]}.parquet"
        atomic_write_table(part, path)
        for stale in old:
            stale.unlink(missing_ok=True)
        written.append(path)
    return written


def _location(base: Path | Location) -> Location:
    return base if isinstance(base, Location) else Location(str(base))


def dataset(base: Path | Location) -> ds.Dataset:
    """The Hive-partitioned dataset under `base`, a local path or an object-store
    location (the `date` column is derived)."""
    return _location(base).dataset()


def exists(base: Path | Location) -> bool:
    return _location(base).exists()


def read_table(base: Path, columns: Iterable[str] | None = None) -> pa.Table:
    if not base.exists():
        raise FileNotFoundError(f"no offline data at {base}")
    cols = list(columns) if columns is not None else None
    return dataset(base).to_table(columns=cols)
