"""SentinelReader's rules, behind its two interfaces (the discovery function and the
single-node client), with stand-ins for both: when it re-discovers, how often, when it
keeps or replaces its client. Real failovers: tests/test_redis_sentinel.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from featureline.config import RedisConfig
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.near_cache import NearCache
from featureline.online_store.redis.sentinel import Address, SentinelReader

CFG = RedisConfig(redis_type="redis_sentinel", sentinel_master="m", nodes=(("s", 1),), password="pw")
A, B = ("10.0.0.1", 6379), ("10.0.0.2", 6379)


class Node:
    """A single-node client: answers with its address, or fails like a lost connection."""

    def __init__(self, cfg: RedisConfig, near_cache: Any) -> None:
        self.address = (cfg.host, cfg.port)
        self.cfg = cfg
        self.near_cache = near_cache
        self.down = False
        self.closed = False

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None
    ) -> list[Any]:
        if self.down or self.closed:
            raise ServiceUnavailableError(f"connection to {self.address} was lost")
        return [self.address] * expected

    async def ping(self, timeout_s: float = 0.5) -> bool:
        return not (self.down or self.closed)

    def close(self) -> None:
        self.closed = True


class Sentinels:
    """The discovery function: the current answer, and how often it was asked."""

    def __init__(self, answer: Address | Exception) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, cfg: RedisConfig, timeout_s: float) -> Address:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _reader(sentinels: Sentinels, nodes: list[Node], **options: Any) -> SentinelReader:
    def connect(cfg: RedisConfig, cache: Any) -> Node:
        node = Node(cfg, cache)
        nodes.append(node)
        return node

    return SentinelReader(CFG, connect, discover=sentinels, **options)


async def _fetch(reader: SentinelReader) -> Any:
    return (await reader.fetch([b"GET k"], [b"k"], timeout_s=1.0))[0]


def test_the_client_gets_the_discovered_primary_and_the_data_nodes_login() -> None:
    sentinels, nodes = Sentinels(A), []

    async def run() -> None:
        reader = _reader(sentinels, nodes)
        assert await _fetch(reader) == A
        assert await _fetch(reader) == A

    asyncio.run(run())
    assert sentinels.calls == 1 and len(nodes) == 1
    cfg = nodes[0].cfg
    assert (cfg.redis_type, cfg.nodes, cfg.password) == ("redis", (A,), "pw")


def test_after_a_failure_requests_fail_fast_until_the_next_discovery_then_follow() -> None:
    sentinels, nodes = Sentinels(A), []
    cache = NearCache(10)

    async def run() -> None:
        reader = _reader(sentinels, nodes, near_cache=cache, rediscover_interval_s=0.3)
        assert await _fetch(reader) == A
        nodes[0].down = True
        sentinels.answer = ServiceUnavailableError("Sentinel s:1 names A, which does not answer")
        with pytest.raises(ServiceUnavailableError, match="was lost"):
            await _fetch(reader)
        with pytest.raises(ServiceUnavailableError, match="no primary confirmed .*was lost.*re-discovering"):
            await _fetch(reader)  # less than the interval after the first discovery
        await asyncio.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError, match="does not answer"):  # discovery 2
            await _fetch(reader)
        with pytest.raises(ServiceUnavailableError, match="no primary confirmed .*re-discovering"):
            await _fetch(reader)  # within the interval: no discovery, no request to A
        assert sentinels.calls == 2 and nodes[0].closed
        sentinels.answer = B
        epoch = cache.epoch
        while time.monotonic() - started < 0.3:
            with pytest.raises(ServiceUnavailableError):
                await _fetch(reader)
            await asyncio.sleep(0.05)
        assert await _fetch(reader) == B
        assert sentinels.calls == 3 and reader.failovers == 1 and reader.primary == B
        assert cache.epoch > epoch  # replies of the old primary are gone
        assert reader.near_cache is cache and nodes[-1].near_cache is cache

    asyncio.run(run())


def test_the_same_primary_confirmed_keeps_its_client() -> None:
    sentinels, nodes = Sentinels(A), []

    async def run() -> None:
        reader = _reader(sentinels, nodes, rediscover_interval_s=0.0)
        assert await _fetch(reader) == A
        nodes[0].down = True
        with pytest.raises(ServiceUnavailableError):
            await _fetch(reader)
        nodes[0].down = False  # a blip: the primary is back, and still the primary
        assert await _fetch(reader) == A

    asyncio.run(run())
    assert len(nodes) == 1 and not nodes[0].closed and sentinels.calls == 2


def test_concurrent_requests_share_one_discovery() -> None:
    sentinels, nodes = Sentinels(A), []

    async def run() -> list[Any]:
        reader = _reader(sentinels, nodes)
        return await asyncio.gather(*(_fetch(reader) for _ in range(20)))

    assert asyncio.run(run()) == [A] * 20
    assert sentinels.calls == 1 and len(nodes) == 1


def test_a_configuration_error_is_bad_input_at_connect_and_unavailable_per_request() -> None:
    sentinels, nodes = Sentinels(BadInputError("Sentinel s:1 does not know a master named 'm'")), []

    async def run() -> None:
        reader = _reader(sentinels, nodes)
        with pytest.raises(BadInputError, match="does not know"):
            await reader.connect()
        with pytest.raises(ServiceUnavailableError, match="does not know") as err:
            await _fetch(reader)  # a request is answered 503, not 400: it was not the caller's input
        assert not isinstance(err.value, BadInputError)
        assert not await reader.ping()

    asyncio.run(run())
    assert nodes == []


def test_a_primary_that_moved_behind_a_live_connection_is_left_after_the_recheck() -> None:
    sentinels, nodes = Sentinels(A), []

    async def run() -> None:
        reader = _reader(sentinels, nodes, recheck_interval_s=0.1)
        assert await _fetch(reader) == A
        sentinels.answer = B  # A was demoted, its connection stays up and answers
        assert await _fetch(reader) == A  # before the recheck interval: no question asked
        assert sentinels.calls == 1
        await asyncio.sleep(0.15)
        assert await _fetch(reader) == A  # starts the background recheck
        for _ in range(50):
            await asyncio.sleep(0.01)
            if reader.primary == B:
                break
        assert await _fetch(reader) == B and nodes[0].closed
        reader.close()
        assert nodes[1].closed

    asyncio.run(run())
