"""A slow or timed-out read never fails the others on the read client's shared
connections (featureline.online_store.redis.aio), against a real redis-server of the
test's own (it is paused): a request past its timeout fails alone, its late replies
are dropped and the connection stays (same CLIENT ID); a Redis that sends nothing for
the stall timeout gets its connection closed, failing what was in flight, then serving
resumes; replies of given-up requests past the cap close it too; large reads take a
connection of their own. The cluster reader and the Sentinel reader behave the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
import pytest
import redis
from redis_process import RedisProcess

from featureline.online_store import StoreTimeoutError, StoreUnavailableError
from featureline.online_store.redis.aio import RedisClient

KEYS = 20_000
BIG = [hiredis.pack_command((b"HMGET", b"k%d" % i, b"a", b"b")) for i in range(KEYS)]


def _one(i: int) -> list[bytes]:
    return [hiredis.pack_command((b"HMGET", b"k%d" % i, b"a", b"b"))]


def _value(i: int) -> list[Any]:
    return [[b"a%d" % i, b"b%d" % i]]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private redis-server (CLIENT PAUSE must not stall other tests) with KEYS hashes."""
    server = RedisProcess(tmp_path_factory.mktemp("redis-timeouts"))
    server.start()
    client = redis.Redis(port=server.port)
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(KEYS):
            pipe.hset(b"k%d" % i, mapping={b"a": b"a%d" % i, b"b": b"b%d" % i})
        pipe.execute()
        yield server.port
    finally:
        client.close()
        server.stop()


def _pause(port: int, ms: int) -> None:
    with redis.Redis(port=port) as client:
        client.client_pause(ms)


async def _client_id(client: RedisClient) -> int:
    (client_id,) = await client.execute([(b"CLIENT", b"ID")], 2.0)
    return int(client_id)


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def _batch_ones(client: RedisClient, n: int) -> list[Any]:
    """n batch-1 reads at once, each with a 2 s budget; an error is returned, not raised."""
    return await asyncio.gather(*(client.fetch(_one(i), (), 2.0) for i in range(n)), return_exceptions=True)


@pytest.mark.parametrize("bulk_commands", [0, 1000], ids=["one-connection", "bulk-connection"])
def test_a_timed_out_read_fails_alone_and_the_connection_stays(port: int, bulk_commands: int) -> None:
    async def run() -> None:
        client = RedisClient("127.0.0.1", port, bulk_commands=bulk_commands)
        before = await _client_id(client)
        # 20,000 commands take Redis milliseconds: a 0.5 ms budget runs out first.
        big = asyncio.ensure_future(client.fetch(BIG, (), 0.0005))
        await asyncio.sleep(0)  # the big read is written first: the others queue behind it
        small = await _batch_ones(client, 50)
        with pytest.raises(StoreTimeoutError, match="did not answer within"):
            await big
        assert small == [_value(i) for i in range(50)]
        assert await _client_id(client) == before  # never reopened
        assert client.connections() == (1 if bulk_commands == 0 else 2)
        conn = client._conn if bulk_commands == 0 else client._bulk
        assert conn is not None
        await _until(lambda: conn.abandoned == 0)  # the late replies are read and dropped
        client.close()

    asyncio.run(run())


def test_a_cancelled_read_is_dropped_like_a_timed_out_one(port: int) -> None:
    async def run() -> None:
        client = RedisClient("127.0.0.1", port, bulk_commands=0)
        before = await _client_id(client)
        big = asyncio.ensure_future(client.fetch(BIG, (), 5.0))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(_batch_ones(client, 20))
        big.cancel()  # e.g. its gRPC stream was reset
        assert await small == [_value(i) for i in range(20)]
        assert big.cancelled()
        assert await _client_id(client) == before
        assert client._conn is not None and client._conn.abandoned == 0
        client.close()

    asyncio.run(run())


def test_reads_on_the_bulk_connection_are_tracked_for_the_near_cache(port: int) -> None:
    """With a near cache, the bulk connection is tracked too (CLIENT TRACKING redirected
    to the same invalidation connection): a cached reply of a large read is dropped
    when its key changes."""
    from featureline.online_store.near_cache import NearCache

    keys = [b"k%d" % i for i in range(1500)]

    async def run() -> None:
        cache = NearCache(10_000)
        client = RedisClient("127.0.0.1", port, near_cache=cache, bulk_commands=1000)
        token = cache.begin()
        replies = await client.fetch(BIG[:1500], keys, 2.0)
        cache.store(token, zip(keys, BIG[:1500], replies, strict=True))
        assert client.connections() == 3  # reads, bulk reads, invalidations
        assert cache.lookup([BIG[5]])[0] is not None
        with redis.Redis(port=port) as writer:
            writer.hset(b"k5", b"a", b"changed")
        await _until(lambda: cache.lookup([BIG[5]])[0] is None, 2.0)
        assert cache.lookup([BIG[6]])[0] is not None  # the others stay
        client.close()
        with redis.Redis(port=port) as writer:
            writer.hset(b"k5", b"a", b"a5")

    asyncio.run(run())


def test_a_stalled_redis_is_closed_after_the_stall_timeout_then_serving_resumes(port: int) -> None:
    async def run() -> None:
        client = RedisClient("127.0.0.1", port, stall_timeout_s=0.4)
        before = await _client_id(client)
        await asyncio.to_thread(_pause, port, 1500)
        started = time.monotonic()
        # Budgets longer than the pause: only the stall watchdog can end these.
        results = await asyncio.gather(
            *(client.fetch(_one(i), (), 5.0) for i in range(5)), return_exceptions=True
        )
        failed_after = time.monotonic() - started
        assert all(isinstance(r, StoreUnavailableError) for r in results), results
        assert "sent nothing for 0.4 s while 5 requests waited" in str(results[0])
        assert 0.4 <= failed_after < 1.2  # the watchdog, not the end of the pause
        # The pause over, the next read reconnects and is answered.
        await asyncio.sleep(max(0.0, started + 1.6 - time.monotonic()))
        assert await client.fetch(_one(7), (), 2.0) == _value(7)
        assert await _client_id(client) != before
        client.close()

    asyncio.run(run())


def test_replies_of_given_up_reads_past_the_cap_close_the_connection(port: int) -> None:
    async def run() -> None:
        client = RedisClient("127.0.0.1", port, max_abandoned=50, bulk_commands=0)
        before = await _client_id(client)
        await asyncio.to_thread(_pause, port, 300)
        waiting = asyncio.ensure_future(client.fetch(_one(1), (), 5.0))
        under_cap = client.fetch(BIG[:40], (), 0.01)
        with pytest.raises(StoreTimeoutError):
            await under_cap
        assert not waiting.done()  # 40 given up: under the cap, the connection stays
        with pytest.raises(StoreTimeoutError):
            await client.fetch(BIG[:20], (), 0.01)  # 60 given up: past the cap
        with pytest.raises(StoreUnavailableError, match=r"60 replies .* \(cap 50\)"):
            await waiting
        await asyncio.sleep(0.3)  # the pause ends
        assert await client.fetch(_one(3), (), 2.0) == _value(3)
        assert await _client_id(client) != before
        client.close()

    asyncio.run(run())


def test_a_cluster_node_too_slow_for_one_read_stays_open_for_the_others(redis_cluster: Any) -> None:
    """Per-node connections: a read of every node with a budget too small times out
    alone; batch-1 reads of every node around it succeed; no node's connection is
    reopened."""
    from featureline.online_store.redis.cluster_aio import ClusterReader

    keys = [b"rt-%d" % i for i in range(KEYS)]
    writer = redis_cluster.client()
    try:
        for start in range(0, KEYS, 2000):
            pipe = writer.pipeline(transaction=False)
            for key in keys[start : start + 2000]:
                pipe.hset(key, mapping={b"a": key})
            pipe.execute()
    finally:
        writer.close()
    commands = [hiredis.pack_command((b"HMGET", k, b"a")) for k in keys]

    async def ids(reader: ClusterReader) -> dict[str, int]:
        out = {}
        for node in reader._nodes:
            (client_id,) = await node.execute_packed(hiredis.pack_command((b"CLIENT", b"ID")), 1, 2.0)
            out[node.address] = int(client_id)
        return out

    async def run() -> None:
        reader = ClusterReader.from_config(redis_cluster.config(), bulk_commands=0)
        try:
            await reader.fetch(commands[:30], keys[:30], 2.0)  # connect every node
            before = await ids(reader)
            big = asyncio.ensure_future(reader.fetch(commands, keys, 0.0005))
            await asyncio.sleep(0)
            small = await asyncio.gather(
                *(reader.fetch(commands[i : i + 1], keys[i : i + 1], 2.0) for i in range(60))
            )
            with pytest.raises(StoreTimeoutError):
                await big
            assert small == [[[keys[i]]] for i in range(60)]
            assert await ids(reader) == before
        finally:
            reader.close()

    asyncio.run(run())


class _Node:
    """A Sentinel primary's client that times out once, then answers."""

    near_cache = None

    def __init__(self) -> None:
        self.calls = 0

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None
    ) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            raise StoreTimeoutError("Redis did not answer within 1 ms")
        return [b"ok"] * expected

    async def ping(self, timeout_s: float = 0.5) -> bool:
        return True

    def close(self) -> None:
        pass


def test_one_timed_out_read_does_not_make_the_sentinel_primary_suspect() -> None:
    """Pure logic (fakes): a timeout is that request's; only a failure of the
    connection (lost, refused, closed as stalled) sends the reader back to the sentinels."""
    from featureline.config import RedisConfig
    from featureline.online_store.redis.sentinel import SentinelReader

    discoveries: list[float] = []
    node = _Node()

    def discover(cfg: RedisConfig, timeout_s: float) -> tuple[str, int]:
        discoveries.append(timeout_s)
        return ("127.0.0.1", 6379)

    cfg = RedisConfig(redis_type="redis_sentinel", sentinel_master="m", nodes=(("127.0.0.1", 26379),))
    reader = SentinelReader(cfg, lambda c, cache: node, discover=discover, rediscover_interval_s=60.0)

    async def run() -> None:
        with pytest.raises(StoreTimeoutError):
            await reader.fetch([b"x"], [b"k"], 5.0)  # discovers, then the read times out
        # Had it been made suspect, this one would fail at once (rediscover_interval_s).
        assert await reader.fetch([b"x"], [b"k"], 5.0) == [b"ok"]
        reader.close()

    asyncio.run(run())
    assert len(discoveries) == 1 and node.calls == 2
