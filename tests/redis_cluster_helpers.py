"""A real local Redis Cluster for tests (featureline.cli.devstack.redis_cluster): 3
primaries with 1 replica each on free loopback ports below 55535, in a temporary home.

`redis_cluster` (tests/conftest.py, session scope) is shared by tests that only read
and write keys; a test that moves slots or kills nodes makes its own with
`running_cluster(home)`, so no other test sees its topology.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from featureline.cli.devstack.redis_cluster import (
    BUS_OFFSET,
    MAX_PORT,
    ClusterLayout,
    NodeProcess,
    free_cluster_ports,
    kill_node,
    start_cluster,
    stop_nodes,
)
from featureline.config import RedisConfig
from featureline.online_store.redis.cluster import key_slot

# Tests fail over faster than the dev stack (2 s): a replica is promoted ~2 s after
# its primary is killed.
TEST_NODE_TIMEOUT_MS = 1000


@dataclass
class LocalCluster:
    host: str
    nodes: list[NodeProcess]
    home: Path

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [(n.host, n.port) for n in self.nodes]

    @property
    def connection_string(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def config(self, seeds: int = 1, **overrides: object) -> RedisConfig:
        """Feast's form: redis_type redis_cluster, the first `seeds` nodes as seeds."""
        nodes = tuple(self.seeds[:seeds])
        values: dict[str, object] = {"host": nodes[0][0], "port": nodes[0][1], "nodes": nodes}
        values.update(overrides)
        return RedisConfig(redis_type="redis_cluster", **values)  # type: ignore[arg-type]

    def client(self) -> RedisCluster:
        """redis-py's own cluster client: the reference the tests compare with."""
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.seeds[:1]])

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.host, port=port, socket_timeout=5.0)

    def node(self, port: int) -> NodeProcess:
        return next(n for n in self.nodes if n.port == port)

    def slots(self, port: int | None = None) -> list[list[object]]:
        """CLUSTER SLOTS as one live node sees it."""
        target = port if port is not None else self.nodes[0].port
        client = self.node_client(target)
        try:
            return list(client.execute_command("CLUSTER SLOTS"))
        finally:
            client.close()

    def owner_port(self, key: bytes, seen_from: int | None = None) -> int:
        slot = key_slot(key)
        for entry in self.slots(seen_from):
            if int(entry[0]) <= slot <= int(entry[1]):  # type: ignore[call-overload]
                return int(entry[2][1])  # type: ignore[index]
        raise AssertionError(f"slot {slot} is not covered")

    def primaries(self, seen_from: int | None = None) -> list[int]:
        return sorted({int(e[2][1]) for e in self.slots(seen_from)})  # type: ignore[index]

    def node_id(self, port: int) -> str:
        client = self.node_client(port)
        try:
            raw = client.execute_command("CLUSTER MYID")
        finally:
            client.close()
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def move_slot(self, slot: int, to_port: int, keys: list[bytes], finish: bool = True) -> int:
        """Cluster spec's migration of one slot to `to_port`: IMPORTING/MIGRATING, MIGRATE
        of `keys` (those of the slot to move now: redis-py decodes CLUSTER GETKEYSINSLOT's
        binary keys lossily, so the caller names them), then (if `finish`) SETSLOT NODE
        on every primary. Returns the port that owned the slot."""
        from_port = next(int(e[2][1]) for e in self.slots() if int(e[0]) <= slot <= int(e[1]))  # type: ignore[index, call-overload]
        source, target = self.node_client(from_port), self.node_client(to_port)
        try:
            target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", self.node_id(from_port))
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", self.node_id(to_port))
            for key in keys:
                source.execute_command("MIGRATE", self.host, to_port, key, 0, 5000)
            if finish:
                for port in (to_port, from_port, *self.primaries()):
                    owner = self.node_client(port)
                    try:
                        owner.execute_command("CLUSTER SETSLOT", slot, "NODE", self.node_id(to_port))
                    finally:
                        owner.close()
        finally:
            source.close()
            target.close()
        return from_port

    def wait_replicated(self, timeout_s: float = 10.0) -> None:
        """Until each replica holds as many keys as its primary (replication is async)."""
        deadline = time.monotonic() + timeout_s
        for entry in self.slots():
            primary = self.node_client(int(entry[2][1]))  # type: ignore[index]
            replicas = [self.node_client(int(r[1])) for r in entry[3:]]  # type: ignore[index]
            try:
                while any(r.dbsize() != primary.dbsize() for r in replicas):
                    assert time.monotonic() < deadline, "replicas did not catch up"
                    time.sleep(0.05)
            finally:
                for c in (primary, *replicas):
                    c.close()

    def kill(self, port: int) -> None:
        kill_node(self.node(port))

    def wait_promoted(self, dead_port: int, seen_from: int, timeout_s: float = 20.0) -> int:
        """Wait until the live node `seen_from` routes no slot to `dead_port`; returns the
        port now serving the dead node's first range."""
        deadline = time.monotonic() + timeout_s
        first = next(e for e in self.slots(seen_from) if int(e[2][1]) == dead_port)  # type: ignore[index]
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                for entry in self.slots(seen_from):
                    if entry[0] == first[0] and int(entry[2][1]) != dead_port:  # type: ignore[index]
                        return int(entry[2][1])  # type: ignore[index]
            time.sleep(0.1)
        raise AssertionError(f"no replica of {dead_port} was promoted within {timeout_s:.0f} s")

    def stop(self) -> None:
        stop_nodes(self.nodes, grace_s=2.0)


def free_port_run(count: int, host: str = "127.0.0.1") -> int:
    """A first port of `count` consecutive free ports (and their bus ports) below 55535:
    what `dev up --redis-cluster` takes from FEATURELINE_REDIS_PORT on."""
    from featureline.cli.devstack.processes import port_in_use

    for _ in range(200):
        (base,) = free_cluster_ports(1, host)
        ports = range(base, base + count)
        if base + count < MAX_PORT - BUS_OFFSET and not any(
            port_in_use(host, p) or port_in_use(host, p + BUS_OFFSET) for p in ports
        ):
            return base
    raise AssertionError(f"no run of {count} free ports found")


@contextlib.contextmanager
def running_cluster(home: Path, layout: ClusterLayout | None = None) -> Iterator[LocalCluster]:
    layout = layout or ClusterLayout(node_timeout_ms=TEST_NODE_TIMEOUT_MS)
    ports = free_cluster_ports(layout.size)
    nodes = start_cluster("127.0.0.1", ports, home, layout)
    cluster = LocalCluster("127.0.0.1", nodes, home)
    try:
        yield cluster
    finally:
        cluster.stop()
