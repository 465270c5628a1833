"""A local Redis Sentinel setup: one primary, one replica and three sentinels on loopback.

All five processes run the dev stack's redis-server (`redis_binary()`; sentinels are the
same binary with `--sentinel`), on free ports, logging to files under `workdir`, started
detached as featureline.cli.devstack starts the single Redis. Tests use it to fail a
primary over (SIGKILL it, then the sentinels promote the replica); it is also a dev
helper: `start_sentinel_setup(dir)` and point a feature_store.yaml at
`setup.connection_string()` with `redis_type: redis_sentinel`.

Timings: a sentinel marks the primary down after `down_after_ms` without a reply
(1,000 ms here, Redis's default is 30 s), needs 2 of 3 sentinels to agree (quorum 2),
elects a leader and promotes the replica; on loopback that is ~2-4 s after the SIGKILL.
Start-up takes ~2-3 s, most of it the sentinels finding each other through hello
messages, which they publish every 2 s: a failover needs a majority of them to know of
each other, so `wait_ready` waits for that too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from featureline.cli.devstack.binaries import redis_binary
from featureline.cli.devstack.processes import free_ports, is_running, log_tail, spawn, terminate
from featureline.config import RedisConfig
from featureline.errors import ServiceUnavailableError
from featureline.online_store.redis.connect import CLIENT_ERRORS, plain_client

HOST = "127.0.0.1"
DEFAULT_MASTER = "mymaster"


@dataclass(frozen=True)
class Node:
    """One process of the setup: a data node (primary or replica) or a sentinel."""

    name: str
    port: int
    pid: int
    log: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass
class SentinelSetup:
    master_name: str
    primary: Node  # the node started as primary (after a failover it may be a replica)
    replica: Node
    sentinels: list[Node]
    workdir: Path
    password: str = field(default="", repr=False)
    binary: Path = field(default_factory=redis_binary)

    @property
    def data_nodes(self) -> list[Node]:
        return [self.primary, self.replica]

    def connection_string(self) -> str:
        """Feast's connection_string for redis_type: redis_sentinel: the sentinels,
        then the data nodes' options (Feast passes those to the primary's connections)."""
        text = ",".join(s.address for s in self.sentinels)
        return f"{text},password={self.password}" if self.password else text

    def redis_config(self, **overrides: Any) -> RedisConfig:
        """The RedisConfig featureline.config resolves from that feature_store.yaml."""
        first = self.sentinels[0]
        cfg = RedisConfig(
            host=HOST,
            port=first.port,
            password=self.password,
            redis_type="redis_sentinel",
            sentinel_master=self.master_name,
            nodes=tuple((HOST, s.port) for s in self.sentinels),
        )
        return replace(cfg, **overrides)

    def data_client(self, node: Node, **options: Any) -> Any:
        """A plain redis-py client of one data node (setup and checks)."""
        return plain_client(host=HOST, port=node.port, password=self.password or None, **options)

    def sentinel_client(self, node: Node) -> Any:
        return plain_client(host=HOST, port=node.port, socket_timeout=2.0, decode_responses=True)

    def kill(self, node: Node) -> None:
        """SIGKILL: the node dies without a goodbye, as in a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)

    def restart_as_replica(self, node: Node, primary: Node) -> Node:
        """Start a killed data node again on its port, as a replica of `primary` (what an
        orchestrator does after a crash): with WAIT on, the promoted primary needs a
        replica again before writes can be acknowledged. Returns the new Node, which
        also takes the old one's place in this setup."""
        argv = _data_argv(self.binary, node.port, self.workdir / node.name, self.password, primary.port)
        new = replace(node, pid=spawn(argv, node.log, cwd=self.workdir / node.name))
        if self.primary.name == node.name:
            self.primary = new
        else:
            self.replica = new
        return new

    def pause(self, node: Node) -> None:
        """SIGSTOP: the node keeps its sockets but answers nothing (a hung replica)."""
        os.kill(node.pid, signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGCONT)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGCONT)  # a paused node cannot handle SIGTERM
            terminate(node.pid, self.binary, grace_s=3.0)


def _data_argv(binary: Path, port: int, workdir: Path, password: str, primary_port: int | None) -> list[str]:
    argv = [
        str(binary), "--port", str(port), "--bind", HOST, "--daemonize", "no",
        # No persistence: the setup is disposable; a restarted node resyncs from the primary.
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]  # fmt: skip
    if password:
        argv += ["--requirepass", password, "--masterauth", password]
    if primary_port is not None:
        argv += ["--replicaof", HOST, str(primary_port)]
    return argv


def _sentinel_conf(port: int, name: str, primary_port: int, password: str, timing: tuple[int, int]) -> str:
    down_after_ms, failover_timeout_ms = timing
    lines = [
        f"port {port}",
        f"bind {HOST}",
        "daemonize no",
        f"sentinel monitor {name} {HOST} {primary_port} 2",
        f"sentinel down-after-milliseconds {name} {down_after_ms}",
        f"sentinel failover-timeout {name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {name} 1",
    ]
    if password:
        lines.append(f"sentinel auth-pass {name} {password}")
    return "\n".join(lines) + "\n"


def start_sentinel_setup(
    workdir: Path,
    *,
    master_name: str = DEFAULT_MASTER,
    password: str = "",
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
    timeout_s: float = 30.0,
) -> SentinelSetup:
    """Start the five processes and wait until every sentinel sees the primary, the
    replica and the two other sentinels. Stops what it started if that fails."""
    binary = redis_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(5, HOST)
    nodes: list[Node] = []

    def launch(name: str, argv: list[str], port: int) -> Node:
        node_dir = workdir / name
        node_dir.mkdir(exist_ok=True)
        log = workdir / "logs" / f"{name}.log"
        node = Node(name, port, spawn(argv, log, cwd=node_dir), log)
        nodes.append(node)
        return node

    try:
        primary_argv = _data_argv(binary, ports[0], workdir / "primary", password, None)
        primary = launch("primary", primary_argv, ports[0])
        replica_argv = _data_argv(binary, ports[1], workdir / "replica", password, ports[0])
        replica = launch("replica", replica_argv, ports[1])
        setup = SentinelSetup(master_name, primary, replica, [], workdir, password, binary)
        # The replica must be in sync before the sentinels start: a sentinel lists the
        # replicas from the primary's INFO, which it asks at once and then every 10 s.
        _wait(setup, lambda: _replica_in_sync(setup), timeout_s, "the replica to sync with the primary")
        for i, port in enumerate(ports[2:]):
            conf = workdir / f"sentinel-{i}" / "sentinel.conf"
            conf.parent.mkdir(exist_ok=True)  # sentinel rewrites its config: a file of its own
            timing = (down_after_ms, failover_timeout_ms)
            conf.write_text(_sentinel_conf(port, master_name, primary.port, password, timing))
            setup.sentinels.append(launch(f"sentinel-{i}", [str(binary), str(conf), "--sentinel"], port))
        _wait(setup, lambda: sentinels_ready(setup), timeout_s, "the sentinels to see both data nodes")
    except BaseException:
        for node in nodes:
            terminate(node.pid, binary, grace_s=2.0)
        raise
    return setup


def _wait(setup: SentinelSetup, ready: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        for node in [*setup.data_nodes, *setup.sentinels]:
            if not is_running(node.pid, setup.binary):
                raise ServiceUnavailableError(
                    f"redis {node.name} (pid {node.pid}, {node.address}) exited while waiting for "
                    f"{what}; last lines of {node.log}:\n{log_tail(node.log)}"
                )
        if time.monotonic() >= deadline:
            raise ServiceUnavailableError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _replica_in_sync(setup: SentinelSetup) -> bool:
    client = setup.data_client(setup.replica, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        info = client.info("replication")
    except CLIENT_ERRORS:
        return False
    finally:
        client.close()
    return info.get("master_link_status") == "up"


def sentinels_ready(setup: SentinelSetup) -> bool:
    """Every sentinel sees the master up with >= 1 replica and knows the other two."""
    for node in setup.sentinels:
        client = setup.sentinel_client(node)
        try:
            state = client.execute_command("SENTINEL", "MASTER", setup.master_name)
        except CLIENT_ERRORS:
            return False
        finally:
            client.close()
        fields = _pairs(state)
        if fields.get("flags") != "master" or int(fields.get("num-slaves", 0)) < 1:
            return False
        if int(fields.get("num-other-sentinels", 0)) < len(setup.sentinels) - 1:
            return False
    return True


def _pairs(reply: Any) -> dict[str, str]:
    """SENTINEL MASTER's flat [name, value, ...] reply (redis-py may already parse it)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


@contextlib.contextmanager
def running_sentinel_setup(workdir: Path, **options: Any) -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(workdir, **options)
    try:
        yield setup
    finally:
        setup.stop()
