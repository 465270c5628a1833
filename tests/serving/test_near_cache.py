"""The near cache (Redis CLIENT TRACKING): its race rules alone, then against the real
Redis: a cached reply is served until the key changes, and a change reaches the
reader by itself, for latest values and for tiles alike."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from serve_process import start_server
from serving_data import now_us, write_latest, write_tiles

from featureline.online_store.near_cache import NearCache
from featureline.online_store.redis.aio import RedisClient
from featureline.semantics import US
from featureline.serving_api.online_reader import OnlineReader
from featureline.settings import Settings
from featureline.specs import RepoSpec

# --- the rules, without Redis ------------------------------------------------------


def test_a_stored_reply_is_served_until_its_key_is_invalidated() -> None:
    cache = NearCache(10)
    token = cache.begin()
    (version,) = cache.store(token, [(b"k", b"HGETALL k", [b"f", b"v"])])
    assert cache.lookup([b"HGETALL k"]) == [((b"f", b"v"), version)]  # kept as a tuple
    assert cache.lookup([b"HMGET k f"]) == [None]  # another command on the same key
    cache.store(cache.begin(), [(b"k", b"HMGET k f", [b"v"])])
    cache.invalidate([b"k"])  # drops every command of the key
    assert cache.lookup([b"HGETALL k", b"HMGET k f"]) == [None, None]
    assert (cache.hits, cache.misses) == (1, 3)


def test_an_invalidation_during_the_read_keeps_its_reply_out() -> None:
    cache = NearCache(10)
    token = cache.begin()  # the read is sent ...
    cache.invalidate([b"k"])  # ... the key changes before its reply is here
    assert cache.store(token, [(b"k", b"k c", b"old"), (b"other", b"other c", b"fine")]) == [None, 1]
    assert cache.lookup([b"k c", b"other c"]) == [None, (b"fine", 1)]
    # A read sent after the invalidation is kept.
    token = cache.begin()
    assert cache.store(token, [(b"k", b"k c", b"new")]) == [2]
    assert cache.lookup([b"k c"]) == [(b"new", 2)]


def test_a_lost_connection_or_flushall_drops_everything_and_reads_in_flight() -> None:
    for drop in (lambda c: c.clear(), lambda c: c.invalidate(None)):
        cache = NearCache(10)
        cache.store(cache.begin(), [(b"a", b"a c", 1)])
        token = cache.begin()
        drop(cache)
        assert cache.store(token, [(b"b", b"b c", 2)]) == [None]  # one version per reply
        assert len(cache) == 0


def test_versions_are_never_reused_and_the_size_is_bounded() -> None:
    cache = NearCache(2)
    seen = set()
    for i in range(5):
        (version,) = cache.store(cache.begin(), [(b"k%d" % i, b"c%d" % i, i)])
        assert version not in seen
        seen.add(version)
        assert len(cache) <= 2


# --- against the real Redis -------------------------------------------------------------


async def _poll(read: Any, want: Any, timeout_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await read()
        if got == want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.01)


def test_reads_are_cached_and_writes_reach_the_reader(
    redis_client: Any, serving_settings: Settings, serving_spec: RepoSpec
) -> None:
    t = now_us()
    write_latest(redis_client, serving_spec, "profile", [{"user_id": 901, "event_us": t - US, "age": 30}])
    write_tiles(redis_client, serving_spec, "txn_stats", [901], [(t - 60 * US, {"amount": 5.0})])

    async def scenario() -> None:
        cache = NearCache(1000)
        redis = RedisClient(serving_settings.redis_host, serving_settings.redis_port, near_cache=cache)
        reader = OnlineReader(serving_spec, redis)
        plan = reader.plan(["profile:age", "txn_stats:sum_amount_1h"], None, False)

        async def values() -> tuple[Any, Any]:
            frame = await reader.read(plan, {"user_id": [901]})
            age, total = frame.columns
            return age.values[0], total.values[0]

        try:
            assert await values() == (30, 5.0)
            hits = cache.hits
            assert await values() == (30, 5.0)
            assert cache.hits == hits + 2  # the hash and the tile hash, from memory
            # Another client writes: Redis's invalidation reaches the reader by itself.
            write_latest(redis_client, serving_spec, "profile", [{"user_id": 901, "event_us": t, "age": 31}])
            events = [(t - 60 * US, {"amount": 5.0}), (t - 30 * US, {"amount": 2.5})]
            write_tiles(redis_client, serving_spec, "txn_stats", [901], events)  # the tile, rewritten
            assert await _poll(values, (31, 7.5)) == (31, 7.5)
            # A lost connection empties the cache; the next read reconnects and tracks again.
            redis_client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            await asyncio.sleep(0.1)
            assert len(cache) == 0
            assert await _poll(values, (31, 7.5)) == (31, 7.5)
            newer = [{"user_id": 901, "event_us": t + 1, "age": 32}]
            write_latest(redis_client, serving_spec, "profile", newer)
            assert await _poll(values, (32, 7.5)) == (32, 7.5)
        finally:
            redis.close()

    asyncio.run(scenario())


def test_serve_with_near_cache_serves_fresh_values(
    redis_client: Any, serving_settings: Settings, serving_spec: RepoSpec
) -> None:
    t = now_us()
    write_latest(redis_client, serving_spec, "profile", [{"user_id": 902, "event_us": t - US, "age": 40}])
    server = start_server(serving_settings, "--near-cache-keys", "1000")
    body = {"features": ["profile:age"], "entities": {"user_id": [902]}}

    def age() -> Any:
        reply = httpx.post(f"{server.url}/get-online-features", json=body, timeout=5.0)
        assert reply.status_code == 200, reply.text
        return reply.json()["results"][1]["values"][0]

    def near_cache_hits() -> float:
        hit = 'featureline_serving_near_cache_lookups_total{result="hit"}'
        text = httpx.get(f"{server.url}/metrics", timeout=5.0).text
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(hit))

    try:
        assert age() == 40
        assert age() == 40
        assert near_cache_hits() >= 1  # the second read came from memory
        write_latest(redis_client, serving_spec, "profile", [{"user_id": 902, "event_us": t, "age": 41}])
        deadline = time.monotonic() + 2.0
        while age() != 41 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert age() == 41
    finally:
        server.stop()


@pytest.mark.parametrize("keys", ["-1"])
def test_serve_refuses_a_negative_cache_size(serving_settings: Settings, keys: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "featureline.cli", "serve", "--repo", str(serving_settings.repo),
         "--near-cache-keys", keys],
        capture_output=True, text=True, env={**serving_settings.env_vars(), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "--near-cache-keys must be >= 0" in done.stderr
    assert "Traceback" not in done.stderr
