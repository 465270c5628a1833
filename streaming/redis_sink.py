"""The online sink: one batch of one partition, applied to the online store exactly once.

No transaction across keys (a Redis Cluster spreads them over slots): each tile hash
holds, per source partition, the mark `_o:{topic}:{partition}` = the last offset of
that partition applied to THIS key (M_k). Invariant: every event of the partition with
offset <= M_k is in the key's tiles, none above. Per batch:

    read W = the partition's watermark (online.tiles.offsets_key)  ->  skip the batch
    if its last offset <= W  ->  keep events > W  ->  per touched key, read its tiles
    and M_k on a cache miss; a key with M_k > W (a crash or a zombie wrote it after W)
    drops its events <= M_k  ->  merge the partials into the stored tiles  ->  write
    each key with a compare-and-set on M_k (online_store.base.TileWrite: the fields
    and M_k = the batch's last offset, only if M_k is still what the cache was built
    on)  ->  latest values (LWW, idempotent)  ->  after_write (Sentinel: WAIT)  ->
    raise W to the batch's last offset

A kill between two key writes leaves some keys at M_k = last offset and W behind: the
replay skips exactly those keys' events (whatever the replayed batch's boundaries), so
nothing is lost or counted twice. A key whose mark moved under us (a zombie of this job
with the same partition) is not written: the cache is dropped and the batch re-read and
re-applied, as on a WatchError before.

Tile fields "{start}:{partition}" have one writer (the owner of the partition), so the
merged states and each key's mark are cached here and the store is read only on a miss
(after a start, or after a conflict, which drops the cache): ~30 % of the sink's time
otherwise. A key's mark is read once per cache life, with its tile fields.
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
from featureline.errors import ServiceUnavailableError
from featureline.offline import CREATED, KAFKA_OFFSET
from featureline.online.tiles import (
    decode_tile,
    encode_tile,
    merge_tile_states,
    offsets_key,
    parse_tile_field,
)
from featureline.online_store import NO_MARK, OnlineStore, TileWrite, as_store, mark_field
from featureline.semantics import US
from featureline.specs import ViewSpec
from featureline.streaming.batches import DeadLetter, ParsedBatch
from featureline.streaming.parse import DEFAULT_MAX_FUTURE_S
from featureline.streaming.tiles import ViewUpdate, view_update
from featureline.streaming.udf import ViewTables

# Between this job's clock and another writer's (a zombie on another host).
_CLOCK_SKEW_S = 60
# Cached tile states (one per (tile key, field)); past this the cache starts over.
DEFAULT_CACHE_ENTRIES = 1_000_000
# Re-applies of one batch after conflicts: each one means another writer moved a mark
# meanwhile, so more than a few is two live writers of one partition, not a race.
_MAX_ATTEMPTS = 20


class _Conflict(Exception):
    """A key's mark moved since the cache was built (another writer)."""


@dataclass
class ApplyResult:
    applied: int = 0  # events above the watermark (less those a view's udf dead-lettered)
    skipped: int = 0  # events at or below the watermark (applied before)
    late: dict[str, int] = field(default_factory=dict)  # view -> events too old for tiles
    dead: list[DeadLetter] = field(default_factory=list)  # dead letters not sent before
    # Kafka record times (ms) of the applied events and when they became visible.
    created_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    visible_ms: int = 0


class OnlineSink:
    """Applies ParsedBatches of one topic to the online store for `views`."""

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
        self._store = as_store(store)
        self.project, self.topic, self.views = project, topic, views
        self.margin_s = margin_s
        self._now = now
        self._key_ttl_s = key_ttl_s
        self._latest = {v.name: v for v in views if not v.is_aggregating}
        self._cache: dict[tuple[bytes, bytes], dict[str, AggState]] = {}
        self._marks: dict[tuple[bytes, int], int] = {}  # (tile key, partition) -> M_k
        self._dead_sent: dict[int, int] = {}  # partition -> last dead letter's offset sent
        self._cache_entries = cache_entries
        self._max_future_s = max_future_s
        self._unseen_after_s = int(now()) + max_future_s + _CLOCK_SKEW_S
        self.conflicts = 0  # batches re-applied after a mark moved (a zombie writer)

    def apply(
        self, batch: ParsedBatch, views: ViewTables, send_dead: Callable[[list[DeadLetter]], None]
    ) -> ApplyResult:
        """Apply the batch's events above the watermark (`views`: each view's table of
        them, streaming.udf); dead letters above it, the parser's and the udfs', are
        handed to `send_dead` (which must flush) before the watermark moves past them."""
        key = offsets_key(self.project, self.topic, batch.partition)
        stored = self._store.get_watermark(key)
        mark = stored if stored is not None else NO_MARK
        if batch.last_offset <= mark:
            return ApplyResult(skipped=batch.table.num_rows)
        letters = sorted([*batch.dead, *views.dead], key=lambda d: d.offset)
        # A retry of this batch (its write failed) sends none twice: the DLQ is Kafka,
        # not the store, so what it got survives a Redis failover.
        sent = self._dead_sent.get(batch.partition, NO_MARK)
        send_dead([d for d in letters if d.offset > max(mark, sent)])
        if letters:
            self._dead_sent[batch.partition] = max(sent, letters[-1].offset)
        try:
            result = self._apply_tries(batch, views, mark)
            self._store.after_write()  # the writes are safe before W (and Kafka's offset) moves
            self._store.raise_watermark(key, batch.last_offset)
        except BaseException:
            # Merged in place, maybe never written, or written but not known to be on a
            # replica (WAIT failed): after a failover the store may hold less than the
            # cache, and a retry must start from what the store holds.
            self._forget()
            raise
        return result

    def _apply_tries(self, batch: ParsedBatch, views: ViewTables, mark: int) -> ApplyResult:
        for _ in range(_MAX_ATTEMPTS):
            try:
                return self._apply_above(batch, views, mark)
            except _Conflict:
                self.conflicts += 1
                self._forget()  # someone else wrote: our cached states may be stale
        raise ServiceUnavailableError(
            f"tile marks of {self.topic} partition {batch.partition} kept moving during "
            f"{_MAX_ATTEMPTS} tries: is a second stream job writing that partition?"
        )

    def _forget(self) -> None:
        """Drop the cache; tiles written so far (by us or a concurrent writer) start at
        most max_future_s after now, so only later ones are known to be new."""
        self._cache.clear()
        self._marks.clear()
        self._unseen_after_s = int(self._now()) + self._max_future_s + _CLOCK_SKEW_S

    def _apply_above(self, batch: ParsedBatch, views: ViewTables, mark: int) -> ApplyResult:
        replay = mark >= batch.first_offset
        table = _above(batch.table, mark) if replay else batch.table
        skipped = batch.table.num_rows - table.num_rows
        now_us = int(self._now() * US)
        tables = {
            v.name: _above(views.tables[v.name], mark) if replay else views.tables[v.name] for v in self.views
        }
        updates = {v.name: self._update(v, tables[v.name], batch.partition, now_us) for v in self.views}
        field_name = mark_field(self.topic, batch.partition)
        stored = self._load(list(updates.values()), batch.partition, field_name)
        self._exclude_applied(updates, tables, mark, batch.partition, now_us)
        writes = self._merge_tiles(list(updates.values()), batch.partition, stored, now_us)
        conflicts = self._store.apply_tiles(writes, field_name, batch.last_offset, now_us // 1000)
        for name, view in self._latest.items():
            self._store.write_latest(view, updates[name].latest, key_ttl_s=self._key_ttl_s)
        if conflicts:
            raise _Conflict
        for write in writes:
            self._marks[(write.key, batch.partition)] = batch.last_offset
        visible_ms = int(self._now() * 1000)
        created = table[CREATED].cast(pa.int64()).to_numpy(zero_copy_only=False) // 1000
        return ApplyResult(
            applied=table.num_rows - sum(1 for o in views.dead_offsets if o > mark),
            skipped=skipped,
            late={n: u.late_events for n, u in updates.items() if u.late_events},
            created_ms=created,
            visible_ms=visible_ms,
        )

    def _update(self, view: ViewSpec, table: pa.Table, partition: int, now_us: int) -> ViewUpdate:
        return view_update(self.project, view, table, partition, now_us=now_us, margin_s=self.margin_s)

    def _load(
        self, updates: list[ViewUpdate], partition: int, field_name: bytes
    ) -> dict[tuple[bytes, bytes], bytes | None]:
        """Read what the cache lacks, in one round trip: tile fields and keys' marks."""
        if len(self._cache) > self._cache_entries:
            self._forget()
        cache, marks = self._cache, self._marks
        # A tile starting after `_unseen_after_s` cannot be in the store unless we wrote
        # it (then it is cached): earlier runs stopped before we started and accepted no
        # event further ahead than max_future_s; a concurrent writer moves the key's mark
        # and fails our compare-and-set. So a long-running job reads only late events'
        # tiles, and the mark of a key once.
        unseen = self._unseen_after_s
        missing = [
            i for u in updates for i in u.tiles if i not in cache and parse_tile_field(i[1])[0] <= unseen
        ]
        unmarked = list({k: None for u in updates for k, _ in u.tiles if (k, partition) not in marks})
        if not missing and not unmarked:
            return {}
        values, got = self._store.read_tiles(missing, unmarked, field_name)
        for key, m in zip(unmarked, got, strict=True):
            marks[(key, partition)] = m
        return dict(zip(missing, values, strict=True))

    def _exclude_applied(
        self,
        updates: dict[str, ViewUpdate],
        tables: dict[str, pa.Table],
        mark: int,
        partition: int,
        now_us: int,
    ) -> None:
        """Keys whose mark is above W hold some of these events already (written before
        a crash, or by a zombie): their partials are recomputed from the events above
        their own mark, one more view_update per distinct mark (only after a replay)."""
        for view in self.views:
            update = updates[view.name]
            ahead: dict[int, set[bytes]] = {}
            for key, _ in update.tiles:
                m = self._marks[(key, partition)]
                if m > mark:
                    ahead.setdefault(m, set()).add(key)
            for m, keys in sorted(ahead.items()):
                again = self._update(view, _above(tables[view.name], m), partition, now_us)
                for ident in [i for i in update.tiles if i[0] in keys]:
                    del update.tiles[ident]
                update.tiles.update({i: p for i, p in again.tiles.items() if i[0] in keys})
                update.housekeeping.update({k: h for k, h in again.housekeeping.items() if k in keys})

    def _merge_tiles(
        self,
        updates: list[ViewUpdate],
        partition: int,
        stored: dict[tuple[bytes, bytes], bytes | None],
        now_us: int,
    ) -> list[TileWrite]:
        """Merge each partial state into the stored one (cached, or read on a miss), in
        place in the cache: if a write fails or conflicts, `apply` drops the cache."""
        cache = self._cache
        now_s = now_us // US
        by_key: dict[bytes, TileWrite] = {}
        for update in updates:
            for ident, partial in update.tiles.items():
                states = cache.get(ident)
                write = by_key.get(ident[0])
                if write is None:
                    write = by_key[ident[0]] = TileWrite(ident[0], self._marks[(ident[0], partition)])
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
                write.fields.append((ident[1], encode_tile(states)))
        return list(by_key.values())


def _above(table: pa.Table, mark: int) -> pa.Table:
    return table.filter(pc.greater(table[KAFKA_OFFSET], pa.scalar(mark, pa.int64())))
