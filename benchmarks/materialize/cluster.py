"""The cluster of `featureline bench materialize --online-store single,cluster`: a local
Redis Cluster (featureline.cli.devstack.redis_cluster, the same redis-server binary as
the single Redis, no replicas by default), and the few reads the bench makes of it
(flush, key count, sampled hashes) through a plain client per primary, keys routed by
hash slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Issue 13's goal for the cluster's cost over one node (per request and per entity).
GOAL_OVERHEAD = 0.15


def start(workdir: Path, primaries: int, replicas: int) -> list[Any]:
    from featureline.cli.devstack.redis_cluster import ClusterLayout, free_cluster_ports, start_cluster

    layout = ClusterLayout(primaries=primaries, replicas=replicas).check()
    ports = free_cluster_ports(layout.size)
    nodes: list[Any] = start_cluster("127.0.0.1", ports, workdir / "cluster", layout)
    return nodes


def stop(nodes: list[Any]) -> None:
    from featureline.cli.devstack.redis_cluster import stop_nodes

    stop_nodes(nodes)


class Primaries:
    """flushall, dbsize, exists, hgetall on a cluster, like a redis-py client of one
    node (what benchmarks/materialize/child.py calls)."""

    def __init__(self, seed_port: int) -> None:
        from featureline.config import RedisConfig
        from featureline.online_store.redis.cluster import discover
        from featureline.online_store.redis.connect import plain_client

        slot_map = discover(RedisConfig(redis_type="redis_cluster", port=seed_port))
        self._clients = {n.address: plain_client(host=n.host, port=n.port) for n in slot_map.primaries()}
        self._owners = [None if n is None else n.address for n in slot_map.owners()]

    def _client(self, key: bytes | str) -> Any:
        from featureline.online_store.redis.cluster import key_slot

        address = self._owners[key_slot(key.encode() if isinstance(key, str) else key)]
        if address is None:
            raise KeyError(f"no primary serves the slot of {key!r}")
        return self._clients[address]

    def flushall(self) -> None:
        for client in self._clients.values():
            client.flushall()

    def dbsize(self) -> int:
        return sum(int(c.dbsize()) for c in self._clients.values())

    def exists(self, key: bytes | str) -> int:
        return int(self._client(key).exists(key))

    def hgetall(self, key: bytes) -> dict[bytes, bytes]:
        return dict(self._client(key).hgetall(key))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
