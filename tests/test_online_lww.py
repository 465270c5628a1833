"""The shared last-write-wins script against the stored `_ts:{view}` that Feast's own
writers set (real Redis): the stored row's time is what `_ts` says, whoever wrote it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
from google.protobuf.timestamp_pb2 import Timestamp

from featureline.online.feast_format import (
    decode_value,
    encode_value,
    feature_field,
    order_field,
    single_key_encoder,
    ts_field,
)
from featureline.online.writer import LatestRow, LatestValueWriter
from featureline.specs import FieldSpec, ViewSpec

VIEW = ViewSpec(
    name="lww", kind="batch", entities=("user",), join_keys=(FieldSpec("user_id", "int64"),),
    features=(FieldSpec("x", "float64"),), ttl_s=0, timestamp_field="event_timestamp",
)  # fmt: skip
KEY = single_key_encoder("p", "user_id", "int64")(1)
X = feature_field("lww", "x")


def _feast_store(client: redis.Redis, when: datetime, x: float) -> None:
    """What Feast's RedisOnlineStore.online_write_batch stores: `_ts` and the values."""
    ts = Timestamp()
    ts.FromDatetime(when)
    client.hset(KEY, mapping={ts_field("lww"): ts.SerializeToString(), X: encode_value("float64", x)})


def _us(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _write(client: redis.Redis, when: datetime, x: float, created: int | None = None, ttl: int = 0) -> int:
    row = LatestRow(KEY, _us(when), created, {"x": x})
    return LatestValueWriter(client, VIEW, key_ttl_s=ttl).write([row])


def _x(client: redis.Redis) -> float:
    return decode_value(client.hget(KEY, X))


T = datetime(2026, 3, 1, 17, 53, 12, 345678, tzinfo=UTC)
EARLIER = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)


def test_a_row_older_than_feasts_stored_row_changes_nothing(redis_client: redis.Redis) -> None:
    _feast_store(redis_client, T, 0.5)
    assert _write(redis_client, EARLIER, 0.1, created=_us(LATER)) == 0
    assert _x(redis_client) == 0.5
    assert _write(redis_client, T.replace(microsecond=345677), 0.2) == 0  # 1 us older
    assert _x(redis_client) == 0.5
    assert _write(redis_client, LATER, 0.9) == 1
    assert _x(redis_client) == 0.9


def test_feast_writing_after_us_takes_over_the_order(redis_client: redis.Redis) -> None:
    """Our row (with a created time), then Feast's newer row, then our row between
    the two: Feast's `_ts` is the stored order, our stale `_fl_ts` is not."""
    assert _write(redis_client, EARLIER, 0.1, created=_us(LATER)) == 1
    _feast_store(redis_client, T, 0.5)
    assert _write(redis_client, EARLIER.replace(minute=30), 0.3, created=_us(LATER)) == 0
    assert _x(redis_client) == 0.5
    # Feast with skip_dedup may store an OLDER row over ours: the stored values are
    # then that row's, and a row newer than it (older than ours) must win.
    assert _write(redis_client, LATER, 0.9) == 1
    _feast_store(redis_client, EARLIER, 0.05)
    assert _write(redis_client, T, 0.6) == 1
    assert _x(redis_client) == 0.6


def test_ties_created_times_and_replays(redis_client: redis.Redis) -> None:
    _feast_store(redis_client, T, 0.5)
    assert _write(redis_client, T, 0.7) == 1  # equal event time: Feast keeps no created time
    assert _write(redis_client, T, 0.8, created=10) == 1
    assert _write(redis_client, T, 0.6, created=9) == 0  # ours, older created time
    assert _write(redis_client, T, 0.8, created=10) == 1  # a replay rewrites the same row
    assert _x(redis_client) == 0.8
    order = redis_client.hget(KEY, order_field("lww"))
    assert order is not None and order.endswith(redis_client.hget(KEY, ts_field("lww")) or b"-")


def test_timestamps_before_1970_and_nanos(redis_client: redis.Redis) -> None:
    old = datetime(1969, 7, 20, 20, 17, 40, 500000, tzinfo=UTC)
    _feast_store(redis_client, old, 0.5)
    assert _write(redis_client, old.replace(microsecond=499999), 0.1) == 0
    assert _write(redis_client, old.replace(microsecond=500001), 0.2) == 1
    ts = Timestamp(seconds=int(T.timestamp()), nanos=T.microsecond * 1000 + 999)
    redis_client.hset(KEY, ts_field("lww"), ts.SerializeToString())  # sub-microsecond nanos
    assert _write(redis_client, T, 0.3) == 1  # the same microsecond: a tie, written
    assert _write(redis_client, T.replace(microsecond=T.microsecond - 1), 0.4) == 0


def test_key_ttl_only_on_written_keys(redis_client: redis.Redis) -> None:
    assert _write(redis_client, T, 0.5, ttl=3600) == 1
    assert 3590 < redis_client.ttl(KEY) <= 3600
    redis_client.persist(KEY)
    assert _write(redis_client, EARLIER, 0.1, ttl=60) == 0  # kept the newer row: untouched
    assert redis_client.ttl(KEY) == -1
    assert _write(redis_client, LATER, 0.9) == 1  # ttl 0: no expiry set
    assert redis_client.ttl(KEY) == -1


def test_many_keys_in_one_call(redis_client: redis.Redis) -> None:
    """Keys with Feast rows, our rows and none, in one chunk of the script."""
    encode = single_key_encoder("p", "user_id", "int64")
    for user in range(0, 1200, 3):
        ts = Timestamp()
        ts.FromDatetime(T)
        redis_client.hset(encode(user), mapping={ts_field("lww"): ts.SerializeToString()})
    rows = [LatestRow(encode(u), _us(EARLIER), None, {"x": float(u)}) for u in range(1200)]
    assert LatestValueWriter(redis_client, VIEW).write(rows) == 800


def test_rows_stored_before_this_format_keep_their_created_order(redis_client: redis.Redis) -> None:
    """`_fl_ts` written without the `_ts` bytes appended (older Featureline): its event
    time is checked against `_ts` by decoding, and created times still decide ties."""
    from featureline.online.feast_format import encode_timestamp, order_value

    stored = {
        order_field("lww"): order_value(_us(T), 10),
        ts_field("lww"): encode_timestamp(_us(T)),
        X: encode_value("float64", 0.5),
    }
    redis_client.hset(KEY, mapping=stored)
    assert _write(redis_client, T, 0.1, created=9) == 0
    assert _write(redis_client, T, 0.2, created=11) == 1
    assert _x(redis_client) == 0.2
