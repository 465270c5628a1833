"""The features the stream job computed, appended offline in the backfill's layout.

The Spark backfill (batch.backfill) writes, per stream view with a file source:

- plain (latest-value) views: `<offline>/<view>/date=D/`, one row per event: join
  keys, event time, `created` (ingestion time), `kafka_partition`, `kafka_offset`,
  the features (featureline.offline_layout.feature_schema), dated by event time;
- aggregating views: `<offline>/_tiles/<view>/date=D/`, one row per (entity, tile
  size, tile start, Kafka partition) with the tile's partial state in the online codec
  (featureline.offline_layout.tile_schema), dated by tile start; and
  `<offline>/<view>/`, one row per event with every aggregation at the event's time.

The stream job appends the first two with the same schemas and the same pure code
(`feature_schema`, `tile_states`), so a reader cannot tell who wrote a row, except:

- tiles are appended per flush: a tile that received events in several flushes has
  one row per flush, each the partial state of that flush's events. The tile's state
  is the merge (featureline.online.tiles.merge_tile_states) of its rows; merging is
  exact and order-free (semantics.md 2), so the merge equals the one row the backfill
  writes from the same events. Tiles keep every event, also those too old for the
  online store's retention (the offline store has none).
- the per-event aggregation rows of `<offline>/<view>/` are not streamed. Such a row
  is the window at the event's time over every event of the entity with an earlier
  time, from every partition, whenever it arrived. When the job sees an event, events
  of other partitions (other workers own them) and out-of-order events still to come
  may belong in its window, so a streamed row would differ from the backfill's and
  could not be corrected in an append-only store. `featureline backfill` writes
  them from the raw events (and the tiles above hold the same information).

A view's udf output (streaming.udf) is what is stored for it, less the events its udf
refused. Files are named by offset range like the raw files (streaming.parquet_sink)
and written before the raw file and before the offset commit, so a restart removes
and rewrites exactly the uncommitted ones. Views without a file source are skipped
(the backfill has no place for them either).

A backfill replaces whole `date=` partitions: run it on days the stream no longer
writes to (as `featureline compact` does), or a file streamed meanwhile is replaced.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from featureline.offline import TS_TYPE
from featureline.offline_layout import (
    TILE_START_S,
    TILES_DIR,
    TS_US,
    EventColumns,
    feature_schema,
    tile_schema,
)
from featureline.semantics import US
from featureline.specs import ViewSpec


def view_output(offline_dir: Path, view: ViewSpec) -> Path | None:
    """Where the job appends `view`'s computed rows (None: not written)."""
    if view.batch_source is None:
        return None
    if view.is_aggregating:
        return offline_dir / TILES_DIR / view.name
    return offline_dir / view.name


def computed_rows(view: ViewSpec, events: pa.Table) -> tuple[pa.Table, pa.Array]:
    """The rows backfill would write for `events` (one partition's, exactly once),
    and each row's date partition ("YYYY-MM-DD")."""
    if view.is_aggregating:
        return _tile_rows(view, events)
    schema = feature_schema(view, events.schema)
    rows = events.select(schema.names).cast(schema)
    return rows, _days(rows[EventColumns.of(view).timestamp])


def _tile_rows(view: ViewSpec, events: pa.Table) -> tuple[pa.Table, pa.Array]:
    from featureline.offline_tiles import tile_states

    ts_us = pc.cast(pc.cast(events[view.timestamp_field], TS_TYPE), pa.int64())
    with_ts = events.append_column(TS_US, ts_us)
    parts = [tile_states(with_ts, view, tile_s) for tile_s in view.tile_sizes_s()]
    tiles = pa.concat_tables(parts) if parts else tile_schema(view).empty_table()
    starts = pc.cast(pc.multiply(tiles[TILE_START_S], US), TS_TYPE)
    return tiles, _days(starts)


def _days(ts: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    return pc.strftime(ts, format="%Y-%m-%d", locale="C")
