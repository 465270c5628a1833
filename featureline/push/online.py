"""Pushed rows -> the online store, with the shared event-time last-write-wins.

The rows go through featureline.online.writer (the same Lua script as streaming and
materialize), so a pushed row older than the stored one (whoever stored it, Feast
included) changes nothing, and a replayed push is idempotent.
"""

from __future__ import annotations

from typing import Any

from featureline.online.feast_format import redis_key, single_key_encoder
from featureline.online.writer import LatestRow, LatestValueWriter, reduce_latest
from featureline.push.frame import ViewRows


def latest_rows(project: str, rows: ViewRows) -> list[LatestRow]:
    """One LatestRow per pushed row, then one per entity (the newest), as Feast keeps
    the newest row of a batch per entity."""
    view = rows.view
    names = list(view.join_key_names)
    dtypes = [k.dtype for k in view.join_keys]
    if len(names) == 1:
        encode = single_key_encoder(project, names[0], dtypes[0])
        keys = [encode(v) for v in rows.keys[names[0]]]
    else:
        columns = [rows.keys[n] for n in names]
        keys = [redis_key(project, names, dtypes, values) for values in zip(*columns, strict=True)]
    feature_names = list(rows.features)
    feature_columns = [rows.features[n] for n in feature_names]
    out = [
        LatestRow(key, event, created, dict(zip(feature_names, values, strict=True)))
        for key, event, created, *values in zip(
            keys, rows.event_us, rows.created_us, *feature_columns, strict=True
        )
    ]
    return reduce_latest(out)


def all_features_null(rows: ViewRows) -> bool:
    """Feast's write_to_online_store writes nothing (and says so) when every feature
    value of the frame is null."""
    return all(v is None for values in rows.features.values() for v in values)


def write_online(store: Any, project: str, rows: ViewRows, *, key_ttl_s: int = 0) -> int:
    """Write the rows with LWW; returns how many entities took the new row."""
    if len(rows) == 0 or all_features_null(rows):
        return 0
    writer = LatestValueWriter(store, rows.view, key_ttl_s=key_ttl_s)
    return writer.write(latest_rows(project, rows))
