"""Redis Sentinel against real processes: discovery, the errors of a bad configuration,
and a SIGKILLed primary followed by the sync client and the SentinelReader."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import hiredis
import pytest
import redis
from redis_sentinel_helpers import (  # noqa: F401 (the fixture functions register the fixtures)
    PASSWORD,
    eventually,
    fresh_sentinel_setup_fixture,
    sentinel_setup_fixture,
)

from featureline.cli.devstack import free_ports
from featureline.cli.devstack.redis_sentinel import HOST, SentinelSetup
from featureline.config import RedisConfig
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.near_cache import NearCache
from featureline.online_store.redis.aio import RedisClient
from featureline.online_store.redis.durability import wait_for_replicas
from featureline.online_store.redis.sentinel import SentinelReader, discover_primary, sentinel_client


def _client_of(cfg: RedisConfig, cache: NearCache | None) -> RedisClient:
    return RedisClient.from_config(cfg, near_cache=cache)


def test_discovery_finds_the_primary_and_checks_its_role(sentinel_setup: SentinelSetup) -> None:
    cfg = sentinel_setup.redis_config()
    assert discover_primary(cfg) == (HOST, sentinel_setup.primary.port)
    # A dead sentinel first in the list is skipped, and named nowhere since another answered.
    (dead,) = free_ports(1)
    assert discover_primary(dataclasses.replace(cfg, nodes=((HOST, dead), *cfg.nodes))) == (
        HOST,
        sentinel_setup.primary.port,
    )


def test_sync_client_writes_to_the_primary(sentinel_setup: SentinelSetup) -> None:
    client = sentinel_client(sentinel_setup.redis_config(), socket_timeout=2.0)
    try:
        client.set("sentinel:sync", b"v1")
        assert client.get("sentinel:sync") == b"v1"
    finally:
        client.close()
    primary = sentinel_setup.data_client(sentinel_setup.primary)
    assert primary.get("sentinel:sync") == b"v1"
    primary.close()


def test_a_master_no_sentinel_knows_is_a_configuration_error(sentinel_setup: SentinelSetup) -> None:
    cfg = sentinel_setup.redis_config(sentinel_master="nosuchmaster")
    with pytest.raises(BadInputError) as err:
        discover_primary(cfg)
    text = str(err.value)
    for node in sentinel_setup.sentinels:
        assert f"Sentinel {node.address} does not know a master named 'nosuchmaster'" in text
    with pytest.raises(BadInputError, match="nosuchmaster"):
        sentinel_client(cfg)


def test_a_data_node_named_as_a_sentinel_is_named(sentinel_setup: SentinelSetup) -> None:
    replica = sentinel_setup.replica
    cfg = sentinel_setup.redis_config(nodes=((HOST, replica.port),))
    # The data nodes have a password: it answers NOAUTH before it could say "unknown command".
    with pytest.raises(BadInputError, match=f"Sentinel {replica.address} asks for a login: not a Sentinel"):
        discover_primary(cfg)


def test_no_sentinel_reachable_is_unavailable() -> None:
    ports = free_ports(2)
    cfg = RedisConfig(redis_type="redis_sentinel", nodes=tuple((HOST, p) for p in ports))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as err:
        discover_primary(cfg)
    assert not isinstance(err.value, BadInputError)
    assert all(f"Sentinel {HOST}:{p} does not answer" in str(err.value) for p in ports)
    assert time.monotonic() - started < 3.0  # one try per node, no redis-py retries


def test_a_named_primary_that_is_a_replica_is_a_retryable_error(sentinel_setup: SentinelSetup) -> None:
    """One sentinel is told to monitor the replica as a master of another name: what a
    sentinel says mid-failover, before the node it names has been promoted."""
    node = sentinel_setup.sentinels[0]
    admin = sentinel_setup.sentinel_client(node)
    admin.execute_command("SENTINEL", "MONITOR", "stale", HOST, sentinel_setup.replica.port, 1)
    try:
        admin.execute_command("SENTINEL", "SET", "stale", "auth-pass", PASSWORD)
        cfg = sentinel_setup.redis_config(sentinel_master="stale", nodes=((HOST, node.port),))
        with pytest.raises(ServiceUnavailableError) as err:
            discover_primary(cfg)
        assert not isinstance(err.value, BadInputError)
        assert (
            f"names {sentinel_setup.replica.address} as primary of 'stale', but its ROLE is 'slave'"
            in str(err.value)
        )
    finally:
        admin.execute_command("SENTINEL", "REMOVE", "stale")
        admin.close()


def test_a_wrong_password_of_the_data_nodes_is_a_configuration_error(sentinel_setup: SentinelSetup) -> None:
    with pytest.raises(BadInputError, match=f"Redis at {sentinel_setup.primary.address} refused the login"):
        discover_primary(sentinel_setup.redis_config(password="wrong"))


def _get(key: str) -> bytes:
    return hiredis.pack_command(("GET", key))  # type: ignore[arg-type]


async def _read_through_failover(
    setup: SentinelSetup, reader: SentinelReader, expected: dict[str, bytes]
) -> int:
    """Read every key until the reader answers from the promoted replica; every reply
    must be the value written before the kill, or ServiceUnavailableError. Returns how
    many requests failed in between."""
    keys = sorted(expected)
    commands = [_get(k) for k in keys]
    failed = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            replies = await reader.fetch(commands, [k.encode() for k in keys], timeout_s=0.5)
        except ServiceUnavailableError:
            failed += 1
            await asyncio.sleep(0.02)
            continue
        assert replies == [expected[k] for k in keys]  # never a wrong or partial vector
        if reader.primary == (HOST, setup.replica.port):
            return failed
        await asyncio.sleep(0.01)
    pytest.fail(f"the reader did not follow the failover within 30 s ({failed} requests failed)")


def test_sigkill_of_the_primary_is_followed_by_both_clients(fresh_sentinel_setup: SentinelSetup) -> None:
    setup = fresh_sentinel_setup
    cfg = setup.redis_config()
    writer = sentinel_client(cfg, socket_timeout=2.0)
    expected = {f"failover:{i}": f"value-{i}".encode() for i in range(20)}
    writer.mset(expected)
    assert wait_for_replicas(writer, 1, 2000) == 1  # acknowledged: must survive the failover

    async def run() -> tuple[int, SentinelReader]:
        reader = SentinelReader(cfg, _client_of, near_cache=NearCache(1000))
        try:
            assert await reader.connect() == (HOST, setup.primary.port)
            await reader.fetch([_get("failover:0")], [b"failover:0"])
            setup.kill(setup.primary)
            return await _read_through_failover(setup, reader, expected), reader
        finally:
            reader.close()

    failed, reader = asyncio.run(run())
    assert failed > 0 and reader.failovers == 1

    def written() -> bool | None:
        try:
            writer.set("failover:after", b"new")
        except redis.ConnectionError:  # refused, or the sentinels name no master yet
            return None
        return True

    eventually(written, 30, "the sync client to write after the failover")
    promoted = setup.data_client(setup.replica)
    assert promoted.get("failover:after") == b"new"
    assert promoted.execute_command("ROLE")[0] == b"master"
    assert writer.get("failover:19") == b"value-19"
    promoted.close()
    writer.close()
