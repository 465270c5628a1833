"""materialize into a real Redis Cluster equals materialize into one Redis: every key
(latest values written by forked packed writers routed per primary, rebuilt tile hashes,
applied-offset watermarks) byte for byte, with the same expiry."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from batch_events import make_events, write_raw

from featureline.batch.materialize import materialize
from featureline.offline import TS_TYPE
from featureline.semantics import US
from featureline.settings import Settings

# Fixed, so both runs keep the same tiles (retention counts back from `now`).
NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)
USERS = 41_000  # two forked writer processes (one per 20k entities)
VIEWS = ["user_profile", "user_last_txn", "user_txn_stats", "merchant_txn_stats"]


def _profiles(n: int) -> pa.Table:
    users = np.arange(n)
    stamps = pa.array((int(NOW.timestamp()) - 86_400 + users % 3_600) * US).cast(TS_TYPE)
    return pa.table(
        {
            "user_id": users,
            "account_age_days": users * 7,
            "home_country": pa.array(np.where(users % 3 == 0, "FR", "DE")),
            "credit_limit": pa.array(np.where(users % 11 == 0, np.nan, users / 3), from_pandas=True),
            "event_timestamp": stamps,
            "created": stamps,
        }
    )


def _snapshot(clients: list[redis.Redis]) -> dict[bytes, tuple[Any, int]]:
    """Every key of the nodes: (its hash, or its string), and its expiry rounded to 10 s."""
    out: dict[bytes, tuple[Any, int]] = {}
    for client in clients:
        for key in client.scan_iter(count=5_000):
            kind = client.type(key)
            value = client.hgetall(key) if kind == b"hash" else client.get(key)
            ttl = int(client.pttl(key))
            out[key] = (value, -1 if ttl < 0 else round(ttl / 10_000))
    return out


def test_materialize_into_a_cluster_equals_one_redis(
    stack: Settings, redis_cluster: Any, demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("materialize-cluster")
    single = dataclasses.replace(
        demo_settings, home=home, offline_dir=str(home / "offline"),
        redis_host=stack.redis_host, redis_port=stack.redis_port,
    )  # fmt: skip
    (single.resolved_offline_dir / "user_profile").mkdir(parents=True)
    pq.write_table(_profiles(USERS), single.resolved_offline_dir / "user_profile" / "p.parquet")
    start_us = int(NOW.timestamp() - 8 * 3_600) * US  # tiles of every size within retention
    events = make_events(3_000, users=800, merchants=40, span_s=7 * 3_600, start_us=start_us)
    write_raw(events, single.resolved_offline_dir)
    seed_host, seed_port = redis_cluster.seeds[0]
    on_cluster = dataclasses.replace(
        single, redis_type="redis_cluster", redis_host=seed_host, redis_port=seed_port
    )
    one = redis.Redis(host=stack.redis_host, port=stack.redis_port)
    primaries = [redis_cluster.node_client(p) for p in redis_cluster.primaries()]
    for client in [one, *primaries]:
        client.flushall()

    start, end = NOW - timedelta(days=3), NOW - timedelta(minutes=1)
    reports = [
        materialize(settings, start, end, views=VIEWS, workers=2, now=NOW)
        for settings in (single, on_cluster)
    ]
    for report in reports:
        assert report.ok, report
    assert [r.written for r in reports[0].results] == [r.written for r in reports[1].results]
    assert reports[0].results[0].entities == USERS
    assert all(r.written > 0 for r in reports[0].results), reports[0]
    assert reports[0].watermarks and reports[0].watermarks == reports[1].watermarks

    want, got = _snapshot([one]), _snapshot(primaries)
    assert len(want) > USERS  # latest rows, tile hashes and watermarks
    assert got.keys() == want.keys()
    assert got == want
    assert all(client.dbsize() > USERS // 4 for client in primaries)  # spread over every primary
    for client in [one, *primaries]:
        client.close()
