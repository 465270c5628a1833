"""Tile rebuild: an aggregating view's online tiles, recomputed from raw events.

Tiles are computed by batch.backfill.tile_states (the codec and AggState streaming
uses) and written in featureline.online.tiles' layout. A rebuilt field is SET whole
(HSET), never incremented, so a rebuild is idempotent and restores exactly what the
events say. Afterwards the per-partition applied-offset watermark
(`tiles.offsets_key`) is raised to the largest offset rebuilt, so a streaming job that
resumes from an older Kafka position skips those events instead of counting them
twice. Only raised: a watermark streaming already moved further is kept. The stream
job's per-key marks (online_store.base.MARK_PREFIX) are left as they are: after a Redis
that lost its data there are none, and the raised watermark governs alone.

Run it for tiles streaming is not updating at that moment (after Redis lost its data,
or with the stream stopped): a field being incremented by streaming while it is
replaced here would lose that increment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.batch.materialize.encode import encode_keys
from featureline.object_store import Location
from featureline.offline import KAFKA_OFFSET, KAFKA_PARTITION, dataset, exists
from featureline.offline_layout import PARTITION, STATE, TILE_START_S
from featureline.offline_tiles import tile_states
from featureline.online.tiles import offsets_key, tile_field, tile_key_for
from featureline.online_store import OnlineStore, TileSet
from featureline.semantics import US, tile_retention_s
from featureline.specs import ViewSpec

_PROGRESS_KEYS = 2000


def keep_s(view: ViewSpec, tile_s: int, margin_s: int) -> int:
    """How long online tiles of this size are held after their start: w + s of the
    longest window using them (semantics.tile_retention_s) plus the settings' margin,
    the rule streaming applies, so a rebuild holds exactly the tiles streaming holds."""
    window_s = max(a.window_s for a in view.aggregations if a.tile_s == tile_s)
    return tile_retention_s(window_s, tile_s) + margin_s


def tile_rows(
    events: pa.Table, view: ViewSpec, start_us: int, end_us: int, now_us: int, margin_s: int
) -> pa.Table:
    """Tiles (all of the view's tile sizes) whose start lies in [start, end) and that
    are still held online at `now` (start + keep_s > now)."""
    parts = []
    for tile_s in view.tile_sizes_s():
        tiles = tile_states(events, view, tile_s)
        start_s = tiles[TILE_START_S]
        low_s = max(start_us // US, now_us // US - keep_s(view, tile_s, margin_s) + 1)
        keep = pc.and_(pc.greater_equal(start_s, low_s), pc.less(start_s, -(-end_us // US)))
        parts.append(tiles.filter(keep))
    return pa.concat_tables(parts) if parts else tile_states(events, view, 0)


def write_tiles(
    store: OnlineStore,
    project: str,
    view: ViewSpec,
    tiles: pa.Table,
    margin_s: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Set every tile field whole, and push each hash's expiry to its newest tile's
    start + keep_s (never back); returns the fields written."""
    if tiles.num_rows == 0:
        return 0
    entity = encode_keys(
        project, view.join_key_names, [k.dtype for k in view.join_keys],
        [tiles[k] for k in view.join_key_names],
    ).to_pylist()  # fmt: skip
    sizes = tiles["tile_s"].to_numpy()
    starts = tiles[TILE_START_S].to_numpy()
    parts = tiles[PARTITION].to_numpy()
    states = tiles[STATE].to_pylist()
    keeps = {int(s): keep_s(view, int(s), margin_s) for s in np.unique(sizes)}
    by_key: dict[bytes, TileSet] = {}
    for i, ekey in enumerate(entity):
        key = tile_key_for(project, view.name, int(sizes[i]), ekey)
        one = by_key.get(key)
        if one is None:
            one = by_key[key] = TileSet(key, 0)
        one.expire_at_ms = max(one.expire_at_ms, (int(starts[i]) + keeps[int(sizes[i])]) * 1000)
        one.fields.append((tile_field(int(starts[i]), int(parts[i])), states[i]))
    sets = list(by_key.values())
    # Progress per ~2,000 hashes (one pipeline round trip of the store).
    for lo in range(0, len(sets), _PROGRESS_KEYS):
        written = store.set_tiles(sets[lo : lo + _PROGRESS_KEYS])
        if progress is not None:
            progress(written)
    return tiles.num_rows


def raw_extent(base: Path | Location, ts_column: str) -> tuple[dict[int, int], int | None]:
    """Over all raw events under `base`: the largest Kafka offset per partition, and
    the newest event time (us). Reads only those three columns."""
    from featureline.batch.backfill.events import to_us

    if not exists(base):
        return {}, None
    data = dataset(base)
    names = set(data.schema.names)
    if not {KAFKA_OFFSET, KAFKA_PARTITION, ts_column} <= names:
        return {}, None
    table = data.to_table(columns=[KAFKA_PARTITION, KAFKA_OFFSET, ts_column])
    if table.num_rows == 0:
        return {}, None
    newest = pc.max(to_us(table[ts_column])).as_py()
    grouped = (
        table.filter(pc.greater_equal(table[KAFKA_OFFSET], 0))
        .group_by(KAFKA_PARTITION)
        .aggregate([(KAFKA_OFFSET, "max")])
    )
    parts = grouped[KAFKA_PARTITION].to_pylist()
    offsets = grouped[f"{KAFKA_OFFSET}_max"].to_pylist()
    return {int(p): int(o) for p, o in zip(parts, offsets, strict=True)}, newest


def raise_watermarks(store: OnlineStore, project: str, topic: str, marks: dict[int, int]) -> None:
    """Move each partition's applied-offset watermark up to `marks` (never down)."""
    for partition, offset in sorted(marks.items()):
        store.raise_watermark(offsets_key(project, topic, partition), offset)
