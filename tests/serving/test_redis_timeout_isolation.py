"""Through `featureline serve` (REST and gRPC): reads of 10,000 entities whose deadline
runs out while Redis answers them, next to batch-1 readers on both ports. None of the
batch-1 readers gets an error, and the worker's Redis connections are never closed
(a Redis timeout used to close the shared connection, failing every read on it).

The large reads are sent on a raw HTTP/2 connection with a grpc-timeout header and
then left alone: grpcio would reset the stream at its own deadline, which cancels the
server's read instead of letting its Redis timer run out."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import hpack
import httpx
import psutil
import pytest
import redis
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.serving_api import h2_wire as w
from featureline.serving_api.client import FeatureClient
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.settings import Settings
from featureline.specs import RepoSpec

BIG = 10_000
# Deadlines of the large reads: from 1 ms (often spent before Redis is asked) to 20 ms
# (a 10,000-entity read takes Redis and the worker tens of ms), so that some run out
# while Redis answers: the case that closed the connection.
DEADLINES_MS = (1, 5, 10, 20)


@pytest.fixture(scope="module")
def loaded(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[ServerProcess]:
    client = redis.Redis.from_url(serving_settings.redis_url)
    rows = [{"user_id": i, "age": i % 90, "country": "DE", "limit_eur": 1.0, "score": 1.0, "level": 1,
             "vip": False, "event_us": now_us()} for i in range(BIG)]  # fmt: skip
    write_latest(client, serving_spec, "profile", rows)
    client.close()
    server = start_server(serving_settings)
    try:
        yield server
    finally:
        server.stop()


def _redis_ports(server: ServerProcess, redis_port: int) -> set[int]:
    """Local ports of the serve processes' connections to Redis."""
    root = psutil.Process(server.proc.pid)
    ports = set()
    for proc in [root, *root.children(recursive=True)]:
        for conn in proc.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == redis_port and conn.status == psutil.CONN_ESTABLISHED:
                ports.add(conn.laddr.port)
    return ports


def _hmgets(settings: Settings) -> int:
    """HMGETs Redis has run (one per entity of a read)."""
    with redis.Redis.from_url(settings.redis_url) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def _rest_reader(server: ServerProcess, stop: threading.Event, outcomes: list[Any]) -> None:
    with httpx.Client(timeout=5) as http:
        i = 0
        while not stop.is_set():
            i = (i + 1) % BIG
            body = {"features": ["profile:age"], "entities": {"user_id": [i]}}
            try:
                response = http.post(f"{server.url}/get-online-features", json=body)
                ok = response.status_code == 200 and response.json()["results"][1]["values"] == [i % 90]
                outcomes.append(True if ok else f"REST {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                outcomes.append(f"REST {exc!r}")


def _grpc_reader(server: ServerProcess, stop: threading.Event, outcomes: list[Any]) -> None:
    with FeatureClient(server.target, timeout_s=5.0, retries=0) as client:
        i = 0
        while not stop.is_set():
            i = (i + 1) % BIG
            try:
                rows = client.get_online_features({"user_id": [i]}, features=["profile:age"])
                ok = rows.to_dict()["age"] == [i % 90]
                outcomes.append(True if ok else f"gRPC wrong values: {rows}")
            except Exception as exc:  # noqa: BLE001  # any error is this test's failure, shown
                outcomes.append(f"gRPC {exc!r}")


def _large_read(port: int, deadline_ms: int) -> str:
    """GetOnlineFeatures of BIG entities with grpc-timeout `deadline_ms`, on a raw HTTP/2
    connection that waits for the answer whatever it is; returns its grpc-status."""
    features = pb.FeatureList(val=["profile:age"])
    entities = {"user_id": pb.RepeatedValue(val=[pb.Value(int64_val=u) for u in range(BIG)])}
    message = pb.GetOnlineFeaturesRequest(features=features, entities=entities).SerializeToString()
    body = w.message_prefix(message) + message  # ~50 KB: inside the 64 KiB stream window
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    block = encoder.encode([(":method", "POST"), (":scheme", "http"),
                            (":path", f"/{SERVICE_NAME}/GetOnlineFeatures"), (":authority", "test"),
                            ("content-type", "application/grpc"), ("te", "trailers"),
                            ("grpc-timeout", f"{deadline_ms}m")])  # fmt: skip
    chunks = [body[i : i + w.DEFAULT_MAX_FRAME] for i in range(0, len(body), w.DEFAULT_MAX_FRAME)]
    out = w.PREFACE + w.settings_frame({}) + w.frame(w.HEADERS, w.END_HEADERS, 1, block)
    for i, chunk in enumerate(chunks):
        out += w.frame(w.DATA, w.END_STREAM if i == len(chunks) - 1 else 0, 1, chunk)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(out)
        buffer = b""
        while True:
            while len(buffer) < 9 or len(buffer) < 9 + int.from_bytes(buffer[:3], "big"):
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection before answering"
                buffer += chunk
            length = int.from_bytes(buffer[:3], "big")
            kind, flags, sid = buffer[3], buffer[4], int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            payload, buffer = buffer[9 : 9 + length], buffer[9 + length :]
            if kind == w.DATA and length:
                sock.sendall(w.window_update(0, length) + w.window_update(sid, length))
            elif kind == w.HEADERS and sid == 1:
                fields = {k.decode(): v.decode() for k, v in decoder.decode(payload, raw=True)}
                if flags & w.END_STREAM:
                    return fields.get("grpc-status", "?")


def test_timed_out_large_reads_never_fail_batch_one_readers(
    loaded: ServerProcess, serving_settings: Settings
) -> None:
    server = loaded
    with FeatureClient(server.target, timeout_s=5.0, retries=0) as warm:
        warm.get_online_features({"user_id": [1]}, features=["profile:age"])
    ports_before = _redis_ports(server, serving_settings.redis_port)
    hmgets_before = _hmgets(serving_settings)
    assert ports_before, "the worker holds no Redis connection"
    stop = threading.Event()
    outcomes: list[Any] = []
    readers = [threading.Thread(target=_rest_reader, args=(server, stop, outcomes)) for _ in range(3)]
    readers += [threading.Thread(target=_grpc_reader, args=(server, stop, outcomes)) for _ in range(3)]
    for thread in readers:
        thread.start()
    statuses: list[str] = []
    try:
        for _ in range(3):
            statuses += [_large_read(server.grpc_port, ms) for ms in DEADLINES_MS]
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=10)
    failures = [o for o in outcomes if o is not True]
    assert not failures, failures[:5]
    assert len(outcomes) >= 30, "the batch-1 readers hardly ran"
    assert set(statuses) <= {"0", "4"}, statuses  # OK or DEADLINE_EXCEEDED
    # At least one large read reached Redis and still ran out of time (its replies were
    # given up while Redis sent them: the case that closed the connection), not only
    # reads whose deadline passed before they were sent.
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text.splitlines()
    timeouts = [
        line for line in metrics if line.startswith('featureline_serving_redis_errors_total{kind="timeout"}')
    ]
    assert timeouts and float(timeouts[0].split()[-1]) >= 1, statuses
    hmgets = _hmgets(serving_settings) - hmgets_before
    assert hmgets >= (statuses.count("0") + 1) * BIG + len(outcomes), (hmgets, statuses, len(outcomes))
    # No connection was closed; at most one was opened (the bulk connection).
    ports_after = _redis_ports(server, serving_settings.redis_port)
    assert ports_before <= ports_after and len(ports_after - ports_before) <= 1


def test_the_stall_timeout_defaults_to_five_request_budgets_and_at_least_five_seconds() -> None:
    from featureline.serving_api.limits import Limits

    defaults = {"stall_timeout_s": 5.0, "max_abandoned": 100_000, "bulk_commands": 1000}
    assert Limits().redis_options() == defaults
    assert Limits(redis_timeout_s=3.0).redis_options()["stall_timeout_s"] == 15.0
    assert Limits(redis_timeout_s=3.0, redis_stall_timeout_s=0.5).redis_options()["stall_timeout_s"] == 0.5
