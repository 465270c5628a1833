"""The hostile-client harness: one attack against a running `featureline serve`, with
normal clients probing both ports on other connections while it runs.

A case passes (issue 14) when
- the server is alive afterwards,
- every probe (a normal REST and a normal gRPC request, each on a connection of its
  own) made during the attack is answered within 1 s,
- the serving worker's peak RSS during the attack exceeds its RSS before by less than
  64 MiB (peak from VmHWM, reset through /proc/PID/clear_refs before each case),
- the abusive connection is closed or refused by the server (the attack says so).

Attacks are plain functions `attack(host, port) -> bool` (True: the server closed or
refused the abusive connection) with a bounded duration: loopback only, a few seconds
each, so the whole suite fits CI.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
import psutil
from serve_process import ServerProcess

from featureline.serving_api.proto import SERVICE_NAME, pb

MiB = 1024 * 1024
PROBE_DEADLINE_S = 1.0
MAX_GROWTH_MIB = 64.0
Attack = Callable[[str, int], bool]

# The serving repo's profile view (tests/serving/serving_data.py); user 1 exists.
_REST_BODY = orjson.dumps({"features": ["profile:age"], "entities": {"user_id": [1]}})
_GRPC_REQUEST = pb.GetOnlineFeaturesRequest(
    features=pb.FeatureList(val=["profile:age"]),
    entities={"user_id": pb.RepeatedValue(val=[pb.Value(int64_val=1)])},
).SerializeToString()


def worker_process(server: ServerProcess) -> psutil.Process:
    """The serving worker (`featureline serve --workers 1` runs one child process)."""
    children = psutil.Process(server.proc.pid).children(recursive=True)
    workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
    assert len(workers) == 1, f"expected one worker process, found {workers}"
    return workers[0]


def status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM)


@dataclass
class Probes:
    """Normal requests on their own connections, every 50 ms until stopped."""

    http_port: int
    grpc_port: int
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _rest(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=PROBE_DEADLINE_S)
        try:
            conn.request("POST", "/get-online-features", _REST_BODY, {"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                self.failures.append(f"REST {response.status}: {body[:200]!r}")
        finally:
            conn.close()

    def _grpc(self, channel: grpc.Channel) -> None:
        call = channel.unary_unary(f"/{SERVICE_NAME}/GetOnlineFeatures")
        call(_GRPC_REQUEST, timeout=PROBE_DEADLINE_S)

    def _timed(self, what: str, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # a probe's failure is a finding, not a test error
            self.failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.latencies.append(time.perf_counter() - start)

    def run(self) -> None:
        # A channel opened before the attack: one connection, like a model server's.
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            self._timed("gRPC warm-up", lambda: self._grpc(channel))
            while not self._stop.is_set():
                self._timed("REST", self._rest)
                self._timed("gRPC", lambda: self._grpc(channel))
                self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Verdict:
    alive: bool
    closed: bool
    growth_mib: float
    probes: int
    slowest_s: float
    failures: list[str]

    def problems(self) -> list[str]:
        found = []
        if not self.alive:
            found.append("the server died")
        if not self.closed:
            found.append("the abusive connection was neither closed nor refused")
        if self.growth_mib >= MAX_GROWTH_MIB:
            found.append(f"the worker grew by {self.growth_mib:.0f} MiB (limit {MAX_GROWTH_MIB:.0f})")
        if self.failures:
            found.append(f"{len(self.failures)} probe(s) failed, first: {self.failures[0]}")
        if self.slowest_s > PROBE_DEADLINE_S:
            found.append(f"slowest probe {self.slowest_s:.2f} s")
        if self.probes < 2:
            found.append(f"only {self.probes} probe(s) answered during the attack")
        return found


def run_case(server: ServerProcess, attack: Attack, port: int) -> Verdict:
    """Run `attack` against `port` of `server` while probes run on both ports."""
    worker = worker_process(server)
    before_kib = status_kib(worker.pid, "VmRSS")
    reset_peak(worker.pid)
    probes = Probes(server.http_port, server.grpc_port)
    thread = threading.Thread(target=probes.run, daemon=True)
    thread.start()
    try:
        closed = attack("127.0.0.1", port)
    finally:
        time.sleep(0.2)  # at least one probe after the attack's last byte
        probes.stop()
        thread.join(10)
    alive = server.proc.poll() is None and worker.is_running()
    peak_kib = status_kib(worker.pid, "VmHWM") if alive else before_kib
    return Verdict(
        alive=alive,
        closed=closed,
        growth_mib=(peak_kib - before_kib) / 1024,
        probes=len(probes.latencies),
        slowest_s=max(probes.latencies, default=0.0),
        failures=probes.failures,
    )


def assert_survives(server: ServerProcess, attack: Attack, port: int) -> Verdict:
    verdict = run_case(server, attack, port)
    problems = verdict.problems()
    assert not problems, f"{attack.__name__}: {'; '.join(problems)}\n{server.log_text()}"
    return verdict


def closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `within_s`, reading and
    dropping whatever it sends meanwhile."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


# Linux TCP states (include/net/tcp_states.h), the first byte of TCP_INFO.
_TCP_CLOSE, _TCP_CLOSE_WAIT = 7, 8


def closed_unread(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes or resets `sock` within `within_s`, seen in the kernel's
    TCP state (TCP_INFO, Linux) so that nothing is read: reading would drain the replies
    of a client that is meant never to read them, and let the server go on."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (_TCP_CLOSE, _TCP_CLOSE_WAIT):
            return True
        time.sleep(0.05)
    return False


def connections(host: str, port: int, n: int) -> Iterator[socket.socket]:
    """Up to `n` connections (stops at the first refused one)."""
    for _ in range(n):
        try:
            yield socket.create_connection((host, port), timeout=2)
        except OSError:
            return
