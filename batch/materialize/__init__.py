"""Offline -> online: latest values in Feast's Redis format, and tiles.

    from featureline.batch.materialize import materialize
    report = materialize(settings, start, end)          # a range
    report = materialize(settings, incremental=True)    # from each view's last end to now

Latest values go through the shared event-time last-write-wins script
(featureline.online.writer), so a newer streamed value is never overwritten; tiles are
rebuilt from the raw events and replace their fields whole.
"""

from featureline.batch.materialize.encode import encode_column, encode_keys, encode_orders, encode_timestamps
from featureline.batch.materialize.job import (
    MaterializeReport,
    ViewMaterialized,
    mark_key,
    materialize,
    online_views,
    restore_watermarks,
)
from featureline.batch.materialize.latest import EncodedRows, LatestLwwWriter, encode_rows, latest_per_key
from featureline.batch.materialize.tiles import keep_s, raise_watermarks, raw_extent, tile_rows, write_tiles

__all__ = [
    "EncodedRows",
    "LatestLwwWriter",
    "MaterializeReport",
    "ViewMaterialized",
    "encode_column",
    "encode_keys",
    "encode_orders",
    "encode_rows",
    "encode_timestamps",
    "latest_per_key",
    "mark_key",
    "materialize",
    "online_views",
    "keep_s",
    "raise_watermarks",
    "raw_extent",
    "restore_watermarks",
    "tile_rows",
    "write_tiles",
]
