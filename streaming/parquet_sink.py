"""The offline sink: raw events appended to `<offline>/raw/<topic>/date=YYYY-MM-DD/`.

Idempotent per (partition, offset range): a file is named
`<topic>-<partition>-<first offset>-<last offset>.parquet` and written atomically
(featureline.offline), and offsets are committed only after the file is in place. On a
start, files of offsets at or past the committed offset (written by a run killed
before it committed) are removed, so the replay writes those events exactly once.

Events are buffered per partition and written every `flush_rows` rows or `flush_s`
seconds: one file per second per partition instead of ten, so readers scan few files.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from featureline.offline import atomic_write_table, partition_dir, raw_dir
from streaming.batches import ParsedBatch

DEFAULT_FLUSH_ROWS = 500_000
DEFAULT_FLUSH_S = 2.0


def raw_file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}-{partition}-{first}-{last}.parquet"


def remove_uncommitted(offline_dir: Path, topic: str, partition: int, from_offset: int) -> int:
    """Delete this partition's raw files that start at or after `from_offset` (a killed
    run wrote them but never committed); returns how many were removed."""
    pattern = re.compile(rf"^{re.escape(topic)}-{partition}-(\d+)-(\d+)\.parquet$")
    removed = 0
    for path in raw_dir(offline_dir, topic).glob(f"date=*/{topic}-{partition}-*.parquet"):
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
    rows: int = 0
    since: float = field(default_factory=time.monotonic)


class OfflineSink:
    """Buffers ParsedBatches of one topic per partition and writes them as files."""

    def __init__(
        self,
        offline_dir: Path,
        topic: str,
        ts_field: str,
        *,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_s: float = DEFAULT_FLUSH_S,
    ) -> None:
        self.base = raw_dir(offline_dir, topic)
        self.topic, self.ts_field = topic, ts_field
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._buffers: dict[int, _Buffer] = {}

    def add(self, batch: ParsedBatch) -> None:
        buf = self._buffers.get(batch.partition)
        if buf is None:
            buf = self._buffers[batch.partition] = _Buffer(batch.first_offset, batch.last_offset)
        buf.last = batch.last_offset
        if batch.table.num_rows:
            buf.tables.append(batch.table)
            buf.rows += batch.table.num_rows

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
            table = pa.concat_tables(buf.tables)
            days = pc.strftime(table[self.ts_field], format="%Y-%m-%d", locale="C")
            name = raw_file_name(self.topic, partition, buf.first, buf.last)
            for day in pc.unique(days).to_pylist():
                part = table.filter(pc.equal(days, day))
                atomic_write_table(part, partition_dir(self.base, day) / name)
        return buf.last + 1
