"""Event-time last-write-wins writes of latest values, in Feast's Redis format.

Streaming, batch materialize, push and write-to-online-store all write latest values
of plain views, and so do Feast's own writers (`feast materialize`, `FeatureStore.push`
with a Redis online store) on the same keys; rows for one entity may come in any order,
so the winner is decided inside Redis, atomically, by one Lua script. The stored row's
order is what its `_ts:{view}` field says (a google.protobuf.Timestamp, which every
writer sets with the values, Feast's too), refined by our `_fl_ts:{view}` field
("event_us:created_us", semantics.latest_order_key) when that field's event time is
the one in `_ts` (we wrote the stored row). So:

- a row older than the stored `_ts` changes nothing, whoever wrote the stored row;
- between our own rows of equal event time, the created time decides, and equal
  orders rewrite the same row (replays are idempotent);
- a row as old as a row Feast stored (no created time kept) replaces it: a missing
  created time loses to any present one, and an equal one is a rewrite. Feast itself
  skips a row whose event time is <= the stored one (redis.py online_write_batch), so
  Feast never overwrites a newer row of ours, and keeps its own on a tie; except with
  Feast's `skip_dedup: true`, which writes without looking (then the stored `_ts` is
  that row's, and we compare against it).

The script is featureline.online_store.redis.scripts.LATEST_LWW_LUA; one call carries
up to 500 entities (one round trip and one script call instead of one per entity: ~2 us
of Redis time per entity instead of ~25 us).
`key_ttl_s` > 0 sets EXPIRE on each written key, as Feast's `key_ttl_seconds` does
(keys that kept a newer row are not touched).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from featureline.online_store import LatestRow, OnlineStore, as_store
from featureline.semantics import latest_order_key
from featureline.specs import ViewSpec

__all__ = ["LatestRow", "LatestValueWriter", "reduce_latest"]


class LatestValueWriter:
    """Writes latest rows of one view with event-time last-write-wins through the
    online store (a store of featureline.online_store, or a redis-py client)."""

    def __init__(self, store: OnlineStore | Any, view: ViewSpec, *, key_ttl_s: int = 0) -> None:
        self._store = as_store(store)
        self._view = view
        self._key_ttl_s = int(key_ttl_s)

    def write(self, rows: Iterable[LatestRow]) -> int:
        """Write now; returns how many entities got the new row (the others kept a
        newer one)."""
        batch: Sequence[LatestRow] = list(rows)
        return self._store.write_latest(self._view, batch, key_ttl_s=self._key_ttl_s)


def reduce_latest(rows: Iterable[LatestRow]) -> list[LatestRow]:
    """Keep one row per key: the largest (event, created) order; on a tie the later
    row, as the Lua script does. Cuts Redis work when a key repeats in a batch."""
    best: dict[bytes, LatestRow] = {}
    for row in rows:
        cur = best.get(row.redis_key)
        if cur is None or _order(row) >= _order(cur):
            best[row.redis_key] = row
    return list(best.values())


def _order(row: LatestRow) -> tuple[int, int]:
    return latest_order_key(row.event_us, row.created_us)
