"""The stream sink's exactly-once rules without a transaction across keys (per-key
applied-offset marks with a compare-and-set), on the in-memory store: a crash between
two key writes, a replay with other batch boundaries, a zombie writer with a stale
cache. The same sink runs against real Redis in tests/streaming/test_stream_job.py and
test_sink_marks_redis.py."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from featureline.online.tiles import TILE_PREFIX, decode_tile, offsets_key
from featureline.online_store import MARK_PREFIX, StoreUnavailableError, mark_field
from featureline.online_store.memory import MemoryStore
from featureline.specs import AggregationSpec, FieldSpec, KafkaSourceSpec, ViewSpec
from featureline.streaming.batches import DeadLetter, ParsedBatch, RawBatch
from featureline.streaming.parse import BatchParser
from featureline.streaming.redis_sink import OnlineSink
from featureline.streaming.schema import source_schema
from featureline.streaming.udf import ViewInputs, ViewTables

# Real time: the Redis test's tile hashes expire relative to Redis's clock.
NOW_S = int(time.time())
PARTITION = 1
SOURCE = KafkaSourceSpec(
    name="tx", bootstrap_servers="", topic="tx", message_format="json",
    schema="user_id long, merchant_id string, amount double, event_timestamp timestamp",
    timestamp_field="event_timestamp",
)  # fmt: skip
AGG = ViewSpec(
    name="stats", kind="stream", entities=("user",), join_keys=(FieldSpec("user_id", "int64"),),
    features=(), ttl_s=0, timestamp_field="event_timestamp", stream_source=SOURCE,
    aggregations=(
        AggregationSpec("amount", "sum", 3600, 0, "sum_1h"),
        AggregationSpec("amount", "max", 600, 60, "max_10m"),
        AggregationSpec("merchant_id", "count_distinct", 86400, 0, "d_24h"),
    ),
    input_fields=(FieldSpec("amount", "float64"), FieldSpec("merchant_id", "string")),
)  # fmt: skip
LATEST = ViewSpec(
    name="last", kind="stream", entities=("user",), join_keys=(FieldSpec("user_id", "int64"),),
    features=(FieldSpec("amount", "float64"), FieldSpec("merchant_id", "string")), ttl_s=0,
    timestamp_field="event_timestamp", stream_source=SOURCE,
)  # fmt: skip
VIEWS = [AGG, LATEST]
EVENTS = 60


def _messages(n: int, seed: int = 7) -> list[bytes]:
    """n events of 5 users over the last 2 hours (several tiles per key and size)."""
    rng = random.Random(seed)
    return [
        orjson.dumps(
            {
                "user_id": rng.randrange(5),
                "merchant_id": f"m{rng.randrange(4)}",
                "amount": round(rng.uniform(-50, 50), 2),
                "event_timestamp": NOW_S - rng.randrange(7200),
            }
        )  # fmt: skip
        for _ in range(n)
    ]


MESSAGES = _messages(EVENTS)


def _batch(lo: int, hi: int) -> tuple[ParsedBatch, ViewTables]:
    """Offsets lo..hi-1 of MESSAGES as one batch of PARTITION."""
    parser = BatchParser(source_schema(VIEWS), now=lambda: NOW_S)
    raw = RawBatch("tx", PARTITION, list(range(lo, hi)), MESSAGES[lo:hi], [NOW_S * 1000] * (hi - lo))
    parsed = parser.parse(raw)
    return parsed, ViewInputs(VIEWS, source_schema(VIEWS).raw_arrow_schema()).prepare(parsed)


def _sink(store: MemoryStore) -> OnlineSink:
    return OnlineSink(store, "p", "tx", VIEWS, margin_s=3600, now=lambda: NOW_S + 0.5)


def _apply(sink: OnlineSink, lo: int, hi: int) -> Any:
    parsed, tables = _batch(lo, hi)
    return sink.apply(parsed, tables, lambda letters: None)


def _tiles(store: MemoryStore) -> dict[bytes, dict[bytes, Any]]:
    """Every tile hash's tiles, decoded (marks left out)."""
    return {
        key: {f: decode_tile(v) for f, v in fields.items() if not f.startswith(MARK_PREFIX)}
        for key, fields in store.hashes.items()
        if key.startswith(TILE_PREFIX)
    }


def _latest(store: MemoryStore) -> dict[bytes, dict[bytes, bytes]]:
    return {k: v for k, v in store.hashes.items() if not k.startswith(TILE_PREFIX)}


def _oracle(hi: int) -> MemoryStore:
    store = MemoryStore()
    _apply(_sink(store), 0, hi)
    return store


def test_one_batch_writes_every_key_with_its_mark() -> None:
    store = _oracle(EVENTS)
    mark = mark_field("tx", PARTITION)
    tile_keys = [k for k in store.hashes if k.startswith(TILE_PREFIX)]
    assert len(tile_keys) == 5 * 3  # 5 users x 3 tile sizes (60 s, 300 s, 3600 s)
    assert all(store.hashes[k][mark] == b"%d" % (EVENTS - 1) for k in tile_keys)
    # Marks live only in our tile hashes, never in Feast-format latest-value hashes.
    assert not any(f.startswith(MARK_PREFIX) for h in _latest(store).values() for f in h)
    assert store.get_watermark(offsets_key("p", "tx", PARTITION)) == EVENTS - 1


@pytest.mark.parametrize("written", [0, 1, 4, 9])
def test_a_crash_between_key_writes_then_a_replay_on_other_boundaries_is_exact(written: int) -> None:
    store = MemoryStore()
    _apply(_sink(store), 0, 20)
    store.fail_after_keys = written  # killed after `written` tile hashes of the next batch
    with pytest.raises(StoreUnavailableError):
        _apply(_sink(store), 20, 45)
    assert store.get_watermark(offsets_key("p", "tx", PARTITION)) == 19  # W moves last
    store.fail_after_keys = None
    restarted = _sink(store)  # a new process: empty cache
    for lo, hi in ((10, 27), (27, 31), (31, EVENTS)):  # replay from before W, new boundaries
        _apply(restarted, lo, hi)
    oracle = _oracle(EVENTS)
    assert _tiles(store) == _tiles(oracle)
    assert _latest(store) == _latest(oracle)
    assert store.get_watermark(offsets_key("p", "tx", PARTITION)) == EVENTS - 1


def test_a_zombie_with_a_stale_cache_conflicts_and_counts_nothing_twice() -> None:
    store = MemoryStore()
    zombie = _sink(store)
    _apply(zombie, 0, 10)  # its cache now holds every key at mark 9
    # The partition moved to a new owner, which crashed after writing 3 keys of 10..29.
    store.fail_after_keys = 3
    with pytest.raises(StoreUnavailableError):
        _apply(_sink(store), 10, 30)
    store.fail_after_keys = None
    # The zombie, redelivered 10..29 with its cache of mark 9: the 3 keys' marks moved.
    _apply(zombie, 10, 30)
    assert zombie.conflicts == 1
    assert _tiles(store) == _tiles(_oracle(30))
    # And a stale cache after the new owner finished a batch: still exact.
    owner = _sink(store)
    _apply(owner, 30, 45)
    zombie_late = _apply(zombie, 30, 50)
    assert zombie_late.skipped == 15 and zombie.conflicts == 2
    assert _tiles(store) == _tiles(_oracle(50))


def test_a_replayed_batch_below_the_watermark_is_skipped_whole() -> None:
    store = _oracle(EVENTS)
    before = {k: dict(v) for k, v in store.hashes.items()}
    result = _apply(_sink(store), 0, EVENTS)
    assert (result.applied, result.skipped) == (0, EVENTS)
    assert store.hashes == before


class _FailingOver(MemoryStore):
    """A primary whose replica acknowledges nothing (WAIT fails) and is then promoted:
    the writes since the last successful WAIT are gone."""

    def __init__(self) -> None:
        super().__init__()
        self.wait_fails = False
        self._replica: tuple[Any, ...] = ()
        self.after_write()

    def after_write(self) -> None:
        if self.wait_fails:
            raise StoreUnavailableError("injected: 0 of 1 replicas acknowledged")
        self._replica = self._copy()

    def fail_over(self) -> None:
        self.hashes, self.strings, self.expire_at_ms = self._replica
        self._replica = self._copy()

    def _copy(self) -> tuple[Any, ...]:
        return ({k: dict(v) for k, v in self.hashes.items()}, dict(self.strings), dict(self.expire_at_ms))


def test_a_batch_retried_after_a_failed_wait_and_a_failover_is_exact() -> None:
    store = _FailingOver()
    sink = _sink(store)
    _apply(sink, 0, 20)
    store.wait_fails = True  # written to the primary, never acknowledged by the replica
    with pytest.raises(StoreUnavailableError):
        _apply(sink, 20, 40)
    store.wait_fails = False
    store.fail_over()  # the replica, without 20..39, is the primary now
    _apply(sink, 20, 40)  # the stream job's retry, same process: its cache must not count
    _apply(sink, 40, EVENTS)
    oracle = _oracle(EVENTS)
    assert _tiles(store) == _tiles(oracle)
    assert _latest(store) == _latest(oracle)


def test_a_retried_batch_sends_its_dead_letters_once() -> None:
    store = MemoryStore()
    sink = _sink(store)
    parsed, tables = _batch(0, 20)
    parsed.dead.append(DeadLetter("tx", PARTITION, 5, b"{", "malformed JSON"))
    sent: list[Any] = []
    store.fail_after_keys = 0
    with pytest.raises(StoreUnavailableError):
        sink.apply(parsed, tables, sent.extend)
    store.fail_after_keys = None
    sink.apply(parsed, tables, sent.extend)
    assert [d.offset for d in sent] == [5]
