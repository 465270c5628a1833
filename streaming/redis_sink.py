"""The online sink: one batch of one partition, applied to Redis exactly once.

Per batch, in one MULTI/EXEC guarded by WATCH on the partition's applied-offset key
(featureline.online.tiles.offsets_key):

    read W = last applied offset  ->  keep events with offset > W  ->  merge their tile
    partials into the stored tiles  ->  MULTI: tile writes, latest-value LWW writes,
    SET W = batch's last offset  ->  EXEC

A replayed or redelivered offset <= W is skipped, and W moves only together with the
tiles, so a kill at any moment neither loses nor double-counts an event. If another
writer (a zombie of this job) touches W between WATCH and EXEC, EXEC fails and the
batch is re-read and re-applied.

Tile fields "{start}:{partition}" have one writer (the owner of the partition), so the
merged states are cached here and Redis is read only on a cache miss (after a start,
or after a WatchError, which drops the cache): ~30 % of the sink's time otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import AggState
from featureline.offline import CREATED, KAFKA_OFFSET
from featureline.online.tiles import (
    decode_tile,
    encode_tile,
    merge_tile_states,
    offsets_key,
    parse_tile_field,
)
from featureline.online_store import OnlineStore, as_store
from featureline.online_store.redis.scripts import LATEST_LWW_LUA, TILE_WRITE_LUA
from featureline.online_store.redis.store import CHUNK_KEYS, RedisStore, WatchError, lww_arguments
from featureline.semantics import US
from featureline.specs import ViewSpec
from featureline.streaming.batches import DeadLetter, ParsedBatch
from featureline.streaming.parse import DEFAULT_MAX_FUTURE_S
from featureline.streaming.tiles import ViewUpdate, view_update
from featureline.streaming.udf import ViewTables

# Keys per script call: ~1 ms of Redis time, so readers are never blocked for long.
_CHUNK_KEYS = 400
# Between this job's clock and another writer's (a zombie on another host).
_CLOCK_SKEW_S = 60
# Cached tile states (one per (tile key, field)); past this the cache starts over.
DEFAULT_CACHE_ENTRIES = 1_000_000


@dataclass
class ApplyResult:
    applied: int = 0  # events applied now (less those a view's udf dead-lettered)
    skipped: int = 0  # events at or below the watermark (applied before)
    late: dict[str, int] = field(default_factory=dict)  # view -> events too old for tiles
    dead: list[DeadLetter] = field(default_factory=list)  # dead letters not sent before
    # Kafka record times (ms) of the applied events and when they became visible.
    created_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    visible_ms: int = 0


class OnlineSink:
    """Applies ParsedBatches of one topic to Redis for `views`."""

    def __init__(
        self,
        store: OnlineStore | Any,
        project: str,
        topic: str,
        views: list[ViewSpec],
        *,
        margin_s: int,
        max_future_s: int = DEFAULT_MAX_FUTURE_S,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        now: Callable[[], float] = time.time,
        key_ttl_s: int = 0,
    ) -> None:
        store = as_store(store)
        assert isinstance(store, RedisStore)  # one MULTI/EXEC per batch: one Redis node
        self._client = store.client
        self._watch_error = WatchError
        self.project, self.topic, self.views = project, topic, views
        self.margin_s = margin_s
        self._now = now
        self._tile_script = store.script(TILE_WRITE_LUA)
        self._lww_script = store.script(LATEST_LWW_LUA)
        self._key_ttl_s = key_ttl_s
        self._latest = {v.name: v for v in views if not v.is_aggregating}
        self._cache: dict[tuple[bytes, bytes], dict[str, AggState]] = {}
        self._cache_entries = cache_entries
        self._max_future_s = max_future_s
        self._unseen_after_s = int(now()) + max_future_s + _CLOCK_SKEW_S

    def apply(
        self, batch: ParsedBatch, views: ViewTables, send_dead: Callable[[list[DeadLetter]], None]
    ) -> ApplyResult:
        """Apply the batch's events above the watermark (`views`: each view's table of
        them, streaming.udf); dead letters above it, the parser's and the udfs', are
        handed to `send_dead` (which must flush) before the watermark moves past them."""
        key = offsets_key(self.project, self.topic, batch.partition)
        sent_dead = False
        while True:
            with self._client.pipeline(transaction=True) as tx:
                try:
                    tx.watch(key)
                    raw = tx.get(key)
                    mark = int(raw) if raw is not None else -1
                    if batch.last_offset <= mark:
                        tx.unwatch()
                        return ApplyResult(skipped=batch.table.num_rows)
                    if not sent_dead:
                        letters = sorted([*batch.dead, *views.dead], key=lambda d: d.offset)
                        send_dead([d for d in letters if d.offset > mark])
                        sent_dead = True
                    return self._apply_above(tx, key, batch, views, mark)
                except self._watch_error:
                    self._forget()  # someone else wrote: our cached states may be stale
                except BaseException:
                    self._forget()  # merged in place, maybe never written
                    raise

    def _forget(self) -> None:
        """Drop the cache; tiles written so far (by us or a concurrent writer) start at
        most max_future_s after now, so only later ones are known to be new."""
        self._cache.clear()
        self._unseen_after_s = int(self._now()) + self._max_future_s + _CLOCK_SKEW_S

    def _apply_above(
        self, tx: Any, key: bytes, batch: ParsedBatch, views: ViewTables, mark: int
    ) -> ApplyResult:
        replay = mark >= batch.first_offset
        table = _above(batch.table, mark) if replay else batch.table
        skipped = batch.table.num_rows - table.num_rows
        now_us = int(self._now() * US)
        updates = {
            v.name: view_update(
                self.project,
                v,
                _above(views.tables[v.name], mark) if replay else views.tables[v.name],
                batch.partition,
                now_us=now_us,
                margin_s=self.margin_s,
            )
            for v in self.views
        }
        writes = self._merge_tiles(list(updates.values()), now_us)
        tx.multi()
        self._queue_tile_writes(tx, writes, now_us)
        for name, view in self._latest.items():
            rows = updates[name].latest
            for lo in range(0, len(rows), CHUNK_KEYS):
                keys, argv = lww_arguments(view, rows[lo : lo + CHUNK_KEYS], self._key_ttl_s)
                self._lww_script(keys=keys, args=argv, client=tx)
        tx.set(key, batch.last_offset)
        tx.execute()
        visible_ms = int(self._now() * 1000)
        created = table[CREATED].cast(pa.int64()).to_numpy(zero_copy_only=False) // 1000
        return ApplyResult(
            applied=table.num_rows - sum(1 for o in views.dead_offsets if o > mark),
            skipped=skipped,
            late={n: u.late_events for n, u in updates.items() if u.late_events},
            created_ms=created,
            visible_ms=visible_ms,
        )

    def _merge_tiles(self, updates: list[ViewUpdate], now_us: int) -> dict[bytes, _KeyWrite]:
        """Merge each partial state into the stored one (cached, or read on a miss), in
        place in the cache: if the transaction fails, `apply` drops the cache."""
        if len(self._cache) > self._cache_entries:
            self._forget()
        cache = self._cache
        # A tile starting after `_unseen_after_s` cannot be in Redis unless we wrote it
        # (then it is cached): earlier runs stopped before we started and accepted no
        # event further ahead than max_future_s; a concurrent writer fails our WATCH.
        # So a long-running job reads Redis only for late events' tiles.
        unseen = self._unseen_after_s
        missing = [
            i for u in updates for i in u.tiles if i not in cache and parse_tile_field(i[1])[0] <= unseen
        ]
        stored: dict[tuple[bytes, bytes], bytes | None] = {}
        if missing:
            pipe = self._client.pipeline(transaction=False)
            for hkey, fld in missing:
                pipe.hget(hkey, fld)
            stored = dict(zip(missing, pipe.execute(), strict=True))
        now_s = now_us // US
        by_key: dict[bytes, _KeyWrite] = {}
        for update in updates:
            for ident, partial in update.tiles.items():
                states = cache.get(ident)
                write = by_key.get(ident[0])
                if write is None:
                    write = by_key[ident[0]] = _KeyWrite()
                if states is None:
                    raw = stored.get(ident)
                    states = cache[ident] = decode_tile(raw) if raw is not None else {}
                    if raw is None:
                        # A new tile: the key's expiry moves forward, and an old tile can
                        # only fall out of retention now.
                        expire_ms, keep_s = update.housekeeping[ident[0]]
                        write.expire_at_ms = max(write.expire_at_ms, expire_ms)
                        write.prune_before_s = now_s - keep_s
                merge_tile_states(states, partial)
                write.fields.append((ident[1], states))
        return by_key

    def _queue_tile_writes(self, tx: Any, by_key: dict[bytes, _KeyWrite], now_us: int) -> None:
        keys = list(by_key)
        for lo in range(0, len(keys), _CHUNK_KEYS):
            argv: list[Any] = [now_us // 1000]
            for key in keys[lo : lo + _CHUNK_KEYS]:
                write = by_key[key]
                argv += (write.expire_at_ms, write.prune_before_s, len(write.fields))
                for fld, states in write.fields:
                    argv += (fld, encode_tile(states))
            self._tile_script(keys=keys[lo : lo + _CHUNK_KEYS], args=argv, client=tx)


def _above(table: pa.Table, mark: int) -> pa.Table:
    return table.filter(pc.greater(table[KAFKA_OFFSET], pa.scalar(mark, pa.int64())))


@dataclass
class _KeyWrite:
    """One tile hash's writes in a batch: fields, and housekeeping (0: none)."""

    fields: list[tuple[bytes, dict[str, AggState]]] = field(default_factory=list)
    expire_at_ms: int = 0
    prune_before_s: int = 0
