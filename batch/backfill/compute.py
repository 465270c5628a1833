"""The per-partition work of the Spark backfill: Arrow batches in, Arrow batches out.

Spark hash-partitions the raw events by the view's join keys, so each partition holds
every event of its entities (and every stored copy of each event); these functions run
in the Python workers (`mapInArrow`) and call the same pure code as the rest of
Featureline (featureline.semantics via batch.backfill.windows / tile_states), which is
what makes Spark's results bit-identical to streaming's and to the naive oracle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featureline.batch.backfill.events import EventColumns, dedupe_events
from featureline.batch.backfill.windows import plain_values, window_values
from featureline.offline import TS_TYPE
from featureline.offline_layout import TILE_START_S, feature_schema, tile_schema
from featureline.offline_tiles import tile_states
from featureline.semantics import US
from featureline.specs import ViewSpec

DATE = "date"


def with_date(table: pa.Table, ts: pa.ChunkedArray | pa.Array) -> pa.Table:
    """Append the `date` partition column (UTC date of `ts`, "YYYY-MM-DD")."""
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    if not pa.types.is_timestamp(ts.type):
        ts = pc.cast(ts, TS_TYPE)
    days = pc.strftime(ts, format="%Y-%m-%d", locale="C")
    return table.append_column(DATE, days)


def _collect(batches: Iterator[pa.RecordBatch]) -> pa.Table | None:
    items = list(batches)
    if not items:
        return None
    return pa.Table.from_batches(items)


def _count_days(counts: Any, table: pa.Table) -> None:
    """Add rows per date to a DayCounts accumulator (None: not counting)."""
    if counts is None or table.num_rows == 0:
        return
    grouped = table.group_by(DATE).aggregate([(DATE, "count")])
    counts.add(dict(zip(grouped[DATE].to_pylist(), grouped[f"{DATE}_count"].to_pylist(), strict=True)))


@dataclass(frozen=True)
class FeatureRowsTask:
    """Offline feature rows of one view for events with start <= ts < end."""

    view: ViewSpec
    events_schema: pa.Schema
    start_us: int
    end_us: int
    counts: Any = None  # a DayCounts accumulator

    def output_schema(self) -> pa.Schema:
        return feature_schema(self.view, self.events_schema).append(pa.field(DATE, pa.string()))

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _collect(batches)
        if table is None:
            return
        events = dedupe_events(table)
        compute = window_values if self.view.is_aggregating else plain_values
        out = compute(events, self.view, self.start_us, self.end_us)
        ts_col = EventColumns.of(self.view).timestamp
        out = with_date(out, out[ts_col]).cast(self.output_schema())
        _count_days(self.counts, out)
        yield from out.to_batches()


@dataclass(frozen=True)
class TileRowsTask:
    """Tiles (every tile size of the view) whose start lies in [start, end)."""

    view: ViewSpec
    start_us: int
    end_us: int
    counts: Any = None  # a DayCounts accumulator

    def output_schema(self) -> pa.Schema:
        return tile_schema(self.view).append(pa.field(DATE, pa.string()))

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _collect(batches)
        if table is None:
            return
        events = dedupe_events(table)
        for tile_s in self.view.tile_sizes_s():
            tiles = tile_states(events, self.view, tile_s)
            start_s = tiles[TILE_START_S]
            keep = pc.and_(
                pc.greater_equal(start_s, self.start_us // US),
                pc.less(start_s, self.end_us // US),
            )
            tiles = tiles.filter(keep)
            stamps = pc.multiply(tiles[TILE_START_S], US)
            out = with_date(tiles, stamps).cast(self.output_schema())
            _count_days(self.counts, out)
            yield from out.to_batches()
