"""Compaction of a date-partitioned offline dataset (the `featureline.offline` layout).

Streaming appends many small files per `date=` partition; a historical retrieval (and
Feast) then opens every one of them. `compact_dataset` rewrites each partition's files
as one file, so the directory stays a Hive-partitioned Parquet dataset that Feast's
FileSource reads, with the same rows.

Crash safety: the new file is written under a temporary name and renamed (atomic), and
its Parquet metadata names the files it replaces; only then are those removed. If the
process dies in between, the next run removes the replaced files that are still there
(roll forward), so a crash never leaves an event counted twice for good. A reader that
lists the partition in that window (milliseconds) can see both: compact partitions
that are no longer written to (`until`, e.g. dates before today).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featureline.errors import BadInputError
from featureline.offline import PARTITION_COLUMN, atomic_write_table

COMPACTED_PREFIX = "compacted-"
_REPLACES_KEY = b"featureline.compacted_from"


@dataclass(frozen=True)
class CompactionReport:
    partitions: int  # partitions rewritten
    files_before: int
    files_after: int
    rows: int  # rows in the rewritten partitions
    rolled_forward: int  # leftover files of an interrupted run, removed


def compact_dataset(base: Path, *, until: str | None = None, min_files: int = 2) -> CompactionReport:
    """Rewrite every `date=` partition of `base` (dates < `until`, YYYY-MM-DD, when
    given) that holds at least `min_files` files as one file."""
    if not base.is_dir():
        raise BadInputError(f"no offline dataset at {str(base)!r}")
    partitions = files_before = files_after = rows = rolled = 0
    for pdir in sorted(base.glob(f"{PARTITION_COLUMN}=*")):
        day = pdir.name.split("=", 1)[1]
        if until is not None and day >= until:
            continue
        rolled += _roll_forward(pdir)
        files = sorted(pdir.glob("*.parquet"))
        if len(files) < min_files:
            continue
        rows += _rewrite(pdir, files)
        partitions += 1
        files_before += len(files)
        files_after += 1
    return CompactionReport(partitions, files_before, files_after, rows, rolled)


def _rewrite(pdir: Path, files: list[Path]) -> int:
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadInputError(
            f"cannot compact {str(pdir)!r}: its files disagree on a column type: {exc}"
        ) from exc
    replaces = json.dumps([f.name for f in files]).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _REPLACES_KEY: replaces})
    atomic_write_table(table, pdir / f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:12]}.parquet")
    for old in files:
        old.unlink(missing_ok=True)
    return int(table.num_rows)


def _roll_forward(pdir: Path) -> int:
    """Remove files that a compacted file of an interrupted run already holds."""
    removed = 0
    for done in pdir.glob(f"{COMPACTED_PREFIX}*.parquet"):
        metadata = pq.read_schema(done).metadata or {}
        for name in json.loads(metadata.get(_REPLACES_KEY, b"[]")):
            leftover = pdir / name
            if leftover.exists() and leftover != done:
                leftover.unlink()
                removed += 1
    return removed
