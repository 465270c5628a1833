"""The async cluster reader (featureline.online_store.redis.cluster_aio) against a real
local Redis Cluster: routing compared with redis-py's RedisCluster, MOVED after a slot
migration and after a redis-cli reshard, ASK during a migration, a killed primary
(errors, never a partial reply list, then recovery once its replica is promoted), and
per-node near-cache invalidation."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hiredis
import pytest
from redis_cluster_helpers import LocalCluster, running_cluster

from featureline.cli.devstack.redis_cluster import redis_cli_binary
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.near_cache import NearCache
from featureline.online_store.redis.aio import RedisClient
from featureline.online_store.redis.cluster import key_slot
from featureline.online_store.redis.cluster_aio import ClusterReader


def _keys(n: int, seed: int = 7) -> list[bytes]:
    """Keys like Feast's (binary entity keys), some with "{" and hash tags."""
    rng = random.Random(seed)
    keys = [b"proj" + bytes(rng.randrange(256) for _ in range(20)) for _ in range(n)]
    return keys + [b"{user:1}:a", b"{user:1}:b", b"x{}y", b"{"]


def _write(cluster: LocalCluster, keys: Sequence[bytes]) -> None:
    client = cluster.client()
    try:
        for i, key in enumerate(keys):
            client.hset(key, mapping={b"f": str(i).encode(), b"g": key[::-1]})
    finally:
        client.close()
    cluster.wait_replicated()


def _commands(keys: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Two commands per key (as the serving plan reads a view's fields and tiles)."""
    commands: list[bytes] = []
    command_keys: list[bytes] = []
    for key in keys:
        commands += [
            hiredis.pack_command((b"HMGET", key, b"f", b"g")),
            hiredis.pack_command((b"HGETALL", key)),
        ]
        command_keys += [key, key]
    return commands, command_keys


def _expected(cluster: LocalCluster, keys: Sequence[bytes]) -> list[Any]:
    """The same reads through redis-py's RedisCluster, flattened like hiredis's replies."""
    client = cluster.client()
    try:
        out: list[Any] = []
        for key in keys:
            out.append(client.hmget(key, [b"f", b"g"]))
            flat = [part for pair in client.hgetall(key).items() for part in pair]
            out.append(flat)
        return out
    finally:
        client.close()


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _same(got: list[Any], expected: list[Any]) -> bool:
    """Replies in _commands' order: HMGET (as a list), then HGETALL (field -> value: its
    order is the hash's own)."""
    if len(got) != len(expected):
        return False
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        same = list(a) == list(b) if i % 2 == 0 else _pairs(a) == _pairs(b)
        if not same:
            return False
    return True


def _loaded(cluster: LocalCluster, n: int) -> tuple[list[bytes], list[bytes], list[bytes], list[Any]]:
    """`n` keys written to `cluster`: (keys, their read commands, each command's key, the
    replies redis-py's RedisCluster reads for them)."""
    keys = _keys(n)
    _write(cluster, keys)
    commands, command_keys = _commands(keys)
    return keys, commands, command_keys, _expected(cluster, keys)


def _reader(cluster: LocalCluster, near_cache: NearCache | None = None, seeds: int = 1) -> ClusterReader:
    return ClusterReader.from_config(cluster.config(seeds=seeds), RedisClient, near_cache=near_cache)


def test_reads_are_routed_as_redis_py_routes_them(redis_cluster: LocalCluster) -> None:
    keys, commands, command_keys, expected = _loaded(redis_cluster, 300)

    async def run() -> None:
        reader = _reader(redis_cluster)
        try:
            assert len(reader.route(command_keys).groups) == 3
            got = await reader.fetch(commands, command_keys, timeout_s=5.0)
            assert _same(got, expected)
            one = await reader.fetch(commands[:1], command_keys[:1])  # one node: no gather
            assert one == [expected[0]]
            assert await reader.fetch([], []) == []
            assert await reader.ping()
        finally:
            reader.close()

    asyncio.run(run())


def test_a_reply_error_of_the_key_itself_is_raised(redis_cluster: LocalCluster) -> None:
    client = redis_cluster.client()
    client.set(b"plain-string", b"1")
    client.close()

    async def run() -> None:
        reader = _reader(redis_cluster)
        try:
            with pytest.raises(ServiceUnavailableError, match="WRONGTYPE"):
                await reader.fetch([hiredis.pack_command((b"HGETALL", b"plain-string"))], [b"plain-string"])
        finally:
            reader.close()

    asyncio.run(run())


def test_a_single_redis_is_refused_by_the_reader(stack: Any) -> None:
    from featureline.config import RedisConfig

    cfg = RedisConfig(redis_type="redis_cluster", host=stack.redis_host, port=stack.redis_port)
    with pytest.raises(BadInputError, match="not in cluster mode"):
        ClusterReader.from_config(cfg, RedisClient)


def _other_primary(cluster: LocalCluster, port: int) -> int:
    return next(p for p in cluster.primaries() if p != port)


def test_moved_after_a_migration_and_after_a_redis_cli_reshard(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        keys, commands, command_keys, expected = _loaded(cluster, 200)

        async def run() -> None:
            reader = _reader(cluster)
            try:
                assert _same(await reader.fetch(commands, command_keys), expected)
                # 1. One slot migrated by the cluster spec's protocol.
                slot = key_slot(keys[0])
                owner = cluster.owner_port(keys[0])
                in_slot = [k for k in keys if key_slot(k) == slot]
                cluster.move_slot(slot, _other_primary(cluster, owner), in_slot)
                assert _same(await reader.fetch(commands, command_keys, timeout_s=5.0), expected)
                await asyncio.sleep(0.05)  # the background refresh the MOVED asked for
                await reader.fetch(commands[:2], command_keys[:2])
                await asyncio.sleep(0.05)
                assert reader.refreshes >= 1
                assert reader.slot_map.owners()[slot].port == cluster.owner_port(keys[0])  # type: ignore[union-attr]
                # 2. The first slots of another primary moved by redis-cli's reshard.
                source = cluster.owner_port(keys[1])
                target = _other_primary(cluster, source)
                argv = [
                    str(redis_cli_binary()), "--cluster", "reshard", f"127.0.0.1:{source}",
                    "--cluster-from", cluster.node_id(source), "--cluster-to", cluster.node_id(target),
                    "--cluster-slots", "300", "--cluster-yes",
                ]  # fmt: skip
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
                assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
                assert _same(await reader.fetch(commands, command_keys, timeout_s=5.0), expected)
            finally:
                reader.close()

        asyncio.run(run())


def test_ask_during_a_migration_reads_the_moved_key_from_its_new_node(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        keys = [b"{tag}:moved", b"{tag}:stays"]
        _write(cluster, keys)
        commands, command_keys = _commands(keys)
        expected = _expected(cluster, keys)
        owner = cluster.owner_port(keys[0])
        target = _other_primary(cluster, owner)
        # Half a migration: the slot is MIGRATING with one of its two keys moved.
        cluster.move_slot(key_slot(keys[0]), target, [keys[0]], finish=False)

        async def run() -> None:
            reader = _reader(cluster)
            try:
                assert _same(await reader.fetch(commands, command_keys, timeout_s=5.0), expected)
                assert reader.refreshes == 0  # ASK changes no route
            finally:
                reader.close()

        asyncio.run(run())


def test_a_killed_primary_fails_requests_then_its_promoted_replica_serves(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        keys, commands, command_keys, expected = _loaded(cluster, 150)
        victim = cluster.owner_port(keys[0])
        witness = _other_primary(cluster, victim)
        cache = NearCache(10_000)

        async def run() -> list[str]:
            reader = _reader(cluster, near_cache=cache, seeds=6)
            outcomes: list[str] = []
            try:
                assert _same(await reader.fetch(commands, command_keys), expected)
                assert await reader.ping()
                cluster.kill(victim)
                deadline = time.monotonic() + 30.0
                while time.monotonic() < deadline:
                    try:
                        got = await reader.fetch(commands, command_keys, timeout_s=1.0)
                    except ServiceUnavailableError:
                        outcomes.append("unavailable")
                    else:
                        # Never a partial or wrong vector: every reply equals redis-py's.
                        assert _same(got, expected)
                        outcomes.append("ok")
                        if "unavailable" in outcomes and outcomes[-3:] == ["ok"] * 3:
                            break
                    await asyncio.sleep(0.05)
                assert await reader.ping()
                assert victim not in {n.port for n in reader.slot_map.primaries()}
            finally:
                reader.close()
            return outcomes

        outcomes = asyncio.run(run())
        assert victim not in cluster.primaries(seen_from=witness)  # its replica took over
        assert outcomes[0] == "unavailable", outcomes
        assert outcomes[-3:] == ["ok"] * 3, outcomes


def test_each_nodes_writes_invalidate_the_shared_near_cache(redis_cluster: LocalCluster) -> None:
    keys = _keys(60, seed=11)
    _write(redis_cluster, keys)
    commands, command_keys = _commands(keys)
    cache = NearCache(10_000)

    async def run() -> None:
        reader = _reader(redis_cluster, near_cache=cache)
        try:
            token = cache.begin()
            got = await reader.fetch(commands, command_keys)
            cache.store(token, zip(command_keys, commands, got, strict=True))
            assert len(cache) == len(keys)
            # One key per primary is written; each primary's invalidation drops its key.
            by_node: dict[int, bytes] = {}
            for key in keys:
                by_node.setdefault(redis_cluster.owner_port(key), key)
            assert len(by_node) == 3
            writer = redis_cluster.client()
            try:
                for key in by_node.values():
                    writer.hset(key, b"f", b"changed")
            finally:
                writer.close()
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and len(cache) > len(keys) - 3:
                await asyncio.sleep(0.01)
            assert len(cache) == len(keys) - 3
            assert all(cache.lookup([commands[command_keys.index(k)]]) == [None] for k in by_node.values())
        finally:
            reader.close()

    asyncio.run(run())
