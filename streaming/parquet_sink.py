"""The offline sink: raw events appended to `<offline>/raw/<topic>/date=YYYY-MM-DD/`,
and the views' computed rows beside them in the backfill's layout
(streaming.offline_views).

Idempotent per (partition, offset range): a file is named
`<topic>-<partition>-<first offset>-<last offset>.parquet` and written atomically
(featureline.offline), the views' files first, then the raw one, and offsets are
committed only after all are in place. On a start, files of offsets at or past the
committed offset (written by a run killed before it committed) are removed from the
raw directory and every view's, so the replay writes those events exactly once.

Events are buffered per partition and written every `flush_rows` rows or `flush_s`
seconds: one file per second per partition instead of ten, so readers scan few files.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from featureline.offline import atomic_write_table, partition_dir, raw_dir
from featureline.specs import ViewSpec
from featureline.streaming.batches import ParsedBatch
from featureline.streaming.offline_views import computed_rows, view_output

DEFAULT_FLUSH_ROWS = 500_000
DEFAULT_FLUSH_S = 2.0


def raw_file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}-{partition}-{first}-{last}.parquet"


def remove_uncommitted(
    offline_dir: Path, topic: str, partition: int, from_offset: int, views: Sequence[ViewSpec] = ()
) -> int:
    """Delete this partition's raw files, and the computed files of `views`, that start
    at or after `from_offset` (a killed run wrote them but never committed); returns
    how many were removed."""
    pattern = re.compile(rf"^{re.escape(topic)}-{partition}-(\d+)-(\d+)\.parquet$")
    bases = [raw_dir(offline_dir, topic), *filter(None, (view_output(offline_dir, v) for v in views))]
    removed = 0
    for base in bases:
        for path in base.glob(f"date=*/{topic}-{partition}-*.parquet"):
            match = pattern.match(path.name)
            if match and int(match.group(1)) >= from_offset:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


@dataclass
class _Buffer:
    first: int
    last: int
    tables: list[pa.Table] = field(default_factory=list)
    # Per view: its tables of the same batches (udf output, less refused events).
    view_tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0
    since: float = field(default_factory=time.monotonic)


class OfflineSink:
    """Buffers ParsedBatches of one topic per partition and writes them as files: the
    raw events, and the computed rows of `views` (those with an offline output)."""

    def __init__(
        self,
        offline_dir: Path,
        topic: str,
        ts_field: str,
        *,
        views: Sequence[ViewSpec] = (),
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_s: float = DEFAULT_FLUSH_S,
    ) -> None:
        self.base = raw_dir(offline_dir, topic)
        self.topic, self.ts_field = topic, ts_field
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._views = [(v, out) for v in views if (out := view_output(offline_dir, v)) is not None]
        self._buffers: dict[int, _Buffer] = {}

    def add(self, batch: ParsedBatch, view_tables: dict[str, pa.Table] | None = None) -> None:
        """Buffer the batch; `view_tables` (view -> its events, streaming.udf) default
        to the batch's own table for every view."""
        buf = self._buffers.get(batch.partition)
        if buf is None:
            buf = self._buffers[batch.partition] = _Buffer(batch.first_offset, batch.last_offset)
        buf.last = batch.last_offset
        if batch.table.num_rows:
            buf.tables.append(batch.table)
            buf.rows += batch.table.num_rows
            for view, _ in self._views:
                table = (view_tables or {}).get(view.name, batch.table)
                buf.view_tables.setdefault(view.name, []).append(table)

    def due(self) -> list[int]:
        now = time.monotonic()
        return [
            p for p, b in self._buffers.items() if b.rows >= self.flush_rows or now - b.since >= self.flush_s
        ]

    def pending(self) -> list[int]:
        return list(self._buffers)

    def flush(self, partition: int) -> int | None:
        """Write the partition's buffer; returns the next offset to commit (None when
        nothing was buffered)."""
        buf = self._buffers.pop(partition, None)
        if buf is None:
            return None
        if buf.rows:
            name = raw_file_name(self.topic, partition, buf.first, buf.last)
            for view, out in self._views:
                rows, days = computed_rows(view, pa.concat_tables(buf.view_tables[view.name]))
                _write_days(rows, days, out, name)
            table = pa.concat_tables(buf.tables)
            days = pc.strftime(table[self.ts_field], format="%Y-%m-%d", locale="C")
            _write_days(table, days, self.base, name)
        return buf.last + 1


def _write_days(table: pa.Table, days: pa.Array, base: Path, name: str) -> None:
    """One file `name` per date partition of `base` that the rows fall in."""
    for day in pc.unique(days).to_pylist():
        atomic_write_table(table.filter(pc.equal(days, day)), partition_dir(base, day) / name)
