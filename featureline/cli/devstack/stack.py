"""Start, stop and inspect the embedded dev stack: Redis, Tansu (Kafka) and the registry.

State lives in `<home>/devstack.json` (pids, addresses, binaries, logs) and logs in
`<home>/logs/<service>.log`, so a later `featureline dev status|down`, another shell or
a test can find the servers again. The SQLite registry (`<home>/registry.db`) is a
file Feast creates on first use: it needs no process, only `<home>`.

Both servers keep data in memory only: Redis runs with `--save "" --appendonly no`
(no RDB snapshot, no AOF) and Tansu with `--storage-engine memory://tansu/`, so
`down` + `up` starts from empty topics and an empty online store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from featureline.cli.devstack.binaries import redis_binary, tansu_binary
from featureline.cli.devstack.probes import kafka_answers, redis_answers
from featureline.cli.devstack.processes import (
    exit_code,
    is_running,
    log_tail,
    port_in_use,
    spawn,
    terminate,
)
from featureline.cli.devstack.redis_cluster import (
    ClusterLayout,
    NodeProcess,
    create_cluster,
    launch_nodes,
    wait_ready,
)
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.settings import Settings

SERVICES = ("redis", "kafka")
STATE_FILE = "devstack.json"
STATE_VERSION = 1
# Tansu answers ~1 ms after exec and Redis in ~5 ms; 30 s leaves room for a loaded CI
# machine (2 cores shared with Spark and Beam jobs) without hiding a real hang.
DEFAULT_TIMEOUT_S = 30.0
# Redis saves nothing on SIGTERM here (no persistence), Tansu exits at once; 5 s is
# generous before SIGKILL.
DEFAULT_GRACE_S = 5.0

Report = Callable[[str], None]


class PortInUseError(BadInputError):
    """The configured port is taken by a process the dev stack did not start (exit 2)."""


@dataclass(frozen=True)
class ServiceState:
    """One running server, as recorded in devstack.json."""

    name: str
    pid: int
    host: str
    port: int
    binary: str
    log: str
    argv: tuple[str, ...]
    started_at: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class StackState:
    """What `start_stack` left running (absolute home, so any cwd can find the logs)."""

    home: Path
    registry_url: str
    services: dict[str, ServiceState]
    # `dev up --redis-cluster`: the layout; its nodes are the services "redis-<port>".
    redis_cluster: ClusterLayout | None = None

    def to_json(self) -> str:
        payload: dict[str, object] = {
            "version": STATE_VERSION,
            "home": str(self.home),
            "registry_url": self.registry_url,
            "services": {n: _service_json(s) for n, s in self.services.items()},
        }
        if self.redis_cluster is not None:
            payload["redis_cluster"] = asdict(self.redis_cluster)
        return json.dumps(payload, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        services = {
            name: ServiceState(**{**raw, "argv": tuple(raw["argv"])})
            for name, raw in data["services"].items()
        }
        layout = data.get("redis_cluster")
        cluster = ClusterLayout(**layout) if layout else None
        return cls(Path(data["home"]), data["registry_url"], services, cluster)

    def cluster_nodes(self) -> list[ServiceState]:
        """The recorded Redis Cluster nodes (empty for a single Redis)."""
        if self.redis_cluster is None:
            return []
        return [s for name, s in self.services.items() if name.startswith("redis-")]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    address: str
    running: bool
    answers: bool

    @property
    def up(self) -> bool:
        return self.running and self.answers


def _service_json(state: ServiceState) -> dict[str, object]:
    data = asdict(state)
    data["argv"] = list(state.argv)
    return data


def state_path(settings: Settings) -> Path:
    return settings.home / STATE_FILE


def load_state(settings: Settings) -> StackState | None:
    """The recorded stack, or None when nothing is recorded (or the file is unreadable,
    e.g. written by a different version: then we act as if nothing ran)."""
    path = state_path(settings)
    try:
        return StackState.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_state(settings: Settings, state: StackState) -> None:
    path = state_path(settings)
    if not state.services:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)  # atomic: a concurrent `status` never reads half a file


def _configured(name: str, settings: Settings) -> tuple[str, int]:
    if name == "redis":
        return settings.redis_host, settings.redis_port
    return settings.kafka_host, settings.kafka_port


def _answers(name: str, host: str, port: int) -> bool:
    if name == "redis":
        return redis_answers(host, port)
    return kafka_answers(host, port)


def redis_io_threads(cores: int | None) -> int:
    """Redis I/O threads for this many cores: 1 (off) under 8, else a quarter of the
    cores, at most 4. Reading requests and writing replies is most of Redis's CPU for
    the serving path's large pipelines (a 1,000-row tensor call is ~4,000 commands and
    ~1 MB of replies); commands still run on its one main thread. A quarter, not the
    half Redis advises for a machine of its own: the dev stack shares the machine with
    the serving and worker processes, and busy I/O threads spin."""
    if not cores or cores < 8:
        return 1
    return min(cores // 4, 4)


def _argv(name: str, binary: Path, host: str, port: int, home: Path) -> list[str]:
    if name == "redis":
        threads = redis_io_threads(os.cpu_count())
        return [
            str(binary), "--port", str(port), "--bind", host,
            # No persistence: the dev stack is disposable and fast to refill.
            "--save", "", "--appendonly", "no",
            "--dir", str(home / "redis"), "--daemonize", "no",
            "--io-threads", str(threads), "--io-threads-do-reads", "yes" if threads > 1 else "no",
        ]  # fmt: skip
    url = f"tcp://{host}:{port}"
    return [
        str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip


def _launch(name: str, settings: Settings, home: Path) -> ServiceState:
    host, port = _configured(name, settings)
    binary = redis_binary() if name == "redis" else tansu_binary()
    argv = _argv(name, binary, host, port, home)
    (home / "redis").mkdir(exist_ok=True)
    log = home / "logs" / f"{name}.log"
    pid = spawn(argv, log, cwd=home)
    return ServiceState(name, pid, host, port, str(binary), str(log), tuple(argv), time.time())


def wait_until_answers(state: ServiceState, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Poll until the service answers; raise with the log tail if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not is_running(state.pid, state.binary):
            code = exit_code(state.pid)
            status = f" with exit code {code}" if code is not None else ""
            raise ServiceUnavailableError(
                f"{state.name} (pid {state.pid}) exited{status} during start-up; "
                f"last lines of {state.log}:\n{log_tail(Path(state.log))}"
            )
        if _answers(state.name, state.host, state.port):
            return
        if time.monotonic() >= deadline:
            raise ServiceUnavailableError(
                f"{state.name} (pid {state.pid}) did not answer on {state.address} within "
                f"{timeout_s:.0f} s; last lines of {state.log}:\n{log_tail(Path(state.log))}"
            )
        time.sleep(0.1)


def _reuse(prev: ServiceState, settings: Settings, timeout_s: float, report: Report) -> ServiceState:
    host, port = _configured(prev.name, settings)
    if (prev.host, prev.port) != (host, port):
        raise BadInputError(
            f"{prev.name} is already running from {settings.home} on {prev.address} "
            f"(pid {prev.pid}), not on {host}:{port}; run `featureline dev down` first"
        )
    wait_until_answers(prev, timeout_s)
    report(f"{prev.name:<9} already running  pid {prev.pid:<7} {prev.address}  (answers)")
    return prev


def _start_one(name: str, settings: Settings, home: Path) -> ServiceState:
    host, port = _configured(name, settings)
    if port_in_use(host, port):
        raise PortInUseError(
            f"port {port} ({name}) is already in use by another process; "
            f"set FEATURELINE_{name.upper()}_PORT or stop it"
        )
    return _launch(name, settings, home)


def cluster_ports(settings: Settings, layout: ClusterLayout) -> list[int]:
    """The dev cluster's nodes: FEATURELINE_REDIS_PORT and the ports after it (6379-6384
    for 3 x 1), so the configured Redis address is its first node, a seed."""
    return [settings.redis_port + i for i in range(layout.size)]


def _node_state(node: NodeProcess) -> ServiceState:
    return ServiceState(
        f"redis-{node.port}", node.pid, node.host, node.port, node.binary, node.log, node.argv, time.time()
    )


def _node_of(state: ServiceState) -> NodeProcess:
    return NodeProcess(state.pid, state.host, state.port, state.binary, state.log, state.argv)


def _check_same_redis(previous: StackState | None, layout: ClusterLayout | None) -> None:
    """A running single Redis and a requested cluster (or the reverse) share ports."""
    if previous is None or previous.redis_cluster == layout:
        return
    running = [
        s for s in previous.services.values() if s.name.startswith("redis") and is_running(s.pid, s.binary)
    ]
    if not running:
        return

    def describe(cluster: ClusterLayout | None) -> str:
        if cluster is None:
            return "a single Redis"
        return f"a Redis Cluster of {cluster.primaries} primaries x {cluster.replicas} replicas"

    raise BadInputError(
        f"the dev stack runs {describe(previous.redis_cluster)} (port {running[0].port}), not "
        f"{describe(layout)} as asked; run `featureline dev down` first"
    )


def _start_cluster(
    settings: Settings, home: Path, layout: ClusterLayout, previous: StackState | None, timeout_s: float
) -> tuple[list[ServiceState], bool]:
    """The cluster's node states, and whether this call started them (else reused)."""
    if previous is not None and previous.redis_cluster == layout:
        nodes = previous.cluster_nodes()
        if nodes and all(is_running(n.pid, n.binary) for n in nodes):
            wait_ready([_node_of(n) for n in nodes], timeout_s)
            return nodes, False
    ports = cluster_ports(settings, layout)
    if any(port_in_use(settings.redis_host, p) for p in ports):
        raise PortInUseError(
            f"ports {ports[0]}-{ports[-1]} (Redis Cluster) are not all free; set FEATURELINE_REDIS_PORT "
            "or stop what uses them"
        )
    return [_node_state(n) for n in launch_nodes(settings.redis_host, ports, home, layout)], True


def start_stack(
    settings: Settings,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    report: Report | None = None,
    redis_cluster: ClusterLayout | None = None,
) -> StackState:
    """Start Redis (or a Redis Cluster) and Tansu (or keep ours if they already answer)
    and wait until they answer. Idempotent. On failure, servers started by this call are
    stopped again."""
    say = report or (lambda _msg: None)
    home = settings.home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    previous = load_state(settings)
    _check_same_redis(previous, redis_cluster)
    services: dict[str, ServiceState] = {}
    started: list[ServiceState] = []

    def save() -> None:
        _save_state(settings, StackState(home, settings.resolved_registry_url, services, redis_cluster))

    try:
        for name in SERVICES:
            if name == "redis" and redis_cluster is not None:
                nodes, new = _start_cluster(settings, home, redis_cluster, previous, timeout_s)
                services.update({n.name: n for n in nodes})
                if new:
                    started.extend(nodes)
                    save()  # before waiting, so `dev down` finds them even if we are killed now
                    create_cluster([_node_of(n) for n in nodes], redis_cluster, timeout_s)
                say(_cluster_line(nodes, redis_cluster, new))
                continue
            prev = previous.services.get(name) if previous else None
            if prev is not None and is_running(prev.pid, prev.binary):
                services[name] = _reuse(prev, settings, timeout_s, say)
                continue
            state = _start_one(name, settings, home)
            started.append(state)
            services[name] = state
            # Recorded before waiting, so `dev down` finds it even if we are killed now.
            save()
            wait_until_answers(state, timeout_s)
            say(f"{name:<9} started          pid {state.pid:<7} {state.address}  ({state.binary})")
    except BaseException:
        for state in started:
            terminate(state.pid, state.binary, DEFAULT_GRACE_S)
        # Keep recording whatever still runs from before (e.g. when a port clash made us
        # stop early), so `dev down` can still find it.
        survivors = {
            name: s
            for name, s in {**(previous.services if previous else {}), **services}.items()
            if is_running(s.pid, s.binary)
        }
        cluster = redis_cluster if any(n.startswith("redis-") for n in survivors) else None
        _save_state(settings, StackState(home, settings.resolved_registry_url, survivors, cluster))
        raise
    result = StackState(home, settings.resolved_registry_url, services, redis_cluster)
    _save_state(settings, result)
    return result


def _cluster_line(nodes: list[ServiceState], layout: ClusterLayout, new: bool) -> str:
    what = "started         " if new else "already running "
    ports = f"{nodes[0].port}-{nodes[-1].port}"
    return (
        f"{'redis':<9} {what} {layout.primaries} primaries x {layout.replicas} replicas on "
        f"{nodes[0].host}:{ports}  (Redis Cluster, cluster_state:ok)"
    )


def stop_stack(
    settings: Settings, grace_s: float = DEFAULT_GRACE_S, report: Report | None = None
) -> list[str]:
    """Stop the recorded servers (SIGTERM, SIGKILL after grace_s) and remove the state
    file. Idempotent. Returns the names of the services that were running."""
    say = report or (lambda _msg: None)
    state = load_state(settings)
    stopped: list[str] = []
    if state is not None:
        for name, service in state.services.items():
            if terminate(service.pid, service.binary, grace_s):
                stopped.append(name)
                say(f"{name:<9} stopped          pid {service.pid}")
            else:
                say(f"{name:<9} was not running  pid {service.pid}")
    state_path(settings).unlink(missing_ok=True)
    return stopped


def stack_status(settings: Settings) -> list[ServiceStatus]:
    """Each service: recorded pid, address, whether that process runs and answers."""
    state = load_state(settings)
    result: list[ServiceStatus] = []
    for name in SERVICES:
        if name == "redis" and state is not None and state.redis_cluster is not None:
            for node in state.cluster_nodes():
                running = is_running(node.pid, node.binary)
                answers = running and _answers("redis", node.host, node.port)
                result.append(ServiceStatus(node.name, node.pid, node.address, running, answers))
            continue
        service = state.services.get(name) if state else None
        if service is None:
            host, port = _configured(name, settings)
            answers = _answers(name, host, port)
            result.append(ServiceStatus(name, None, f"{host}:{port}", False, answers))
            continue
        running = is_running(service.pid, service.binary)
        answers = running and _answers(name, service.host, service.port)
        result.append(ServiceStatus(name, service.pid, service.address, running, answers))
    return result


def require_stack(settings: Settings) -> None:
    """Raise ServiceUnavailableError unless both services answer at the configured
    addresses (whoever started them): the check `demo` and jobs run first."""
    for name in SERVICES:
        host, port = _configured(name, settings)
        if not _answers(name, host, port):
            raise ServiceUnavailableError(
                f"{name} does not answer on {host}:{port}; start the dev stack with "
                "`featureline dev up` (or set FEATURELINE_"
                f"{name.upper()}_HOST/_PORT to a running {name})"
            )


__all__ = [
    "PortInUseError",
    "ServiceState",
    "ServiceStatus",
    "StackState",
    "load_state",
    "require_stack",
    "stack_status",
    "start_stack",
    "state_path",
    "stop_stack",
    "wait_until_answers",
]
