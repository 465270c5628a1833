"""Redis trouble, on a private Redis the test stops and starts: requests fail fast with
503 / UNAVAILABLE, health says NOT_SERVING, a hung Redis gives 504 / DEADLINE_EXCEEDED,
and the server recovers by itself (two workers, so the multi-process path runs too)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.cli.devstack import free_port, redis_binary
from featureline.errors import ServiceUnavailableError
from featureline.serving_api.client import FeatureClient, ServingTimeoutError
from featureline.serving_api.proto import SERVICE_NAME
from featureline.settings import Settings
from featureline.specs import RepoSpec

BODY = {"features": ["profile:age"], "entities": {"user_id": [1]}}


class PrivateRedis:
    def __init__(self, port: int, home: str) -> None:
        self.port, self.home = port, home
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [str(redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.home]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _pings(self.port), 10, "private Redis did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.2).ping())
    except redis.RedisError:
        return False


def _wait(predicate: Callable[[], bool], timeout_s: float, message: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(message)
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def private(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[
    tuple[PrivateRedis, ServerProcess, RepoSpec]
]:  # fmt: skip
    port = free_port()
    store = PrivateRedis(port, str(serving_settings.home))
    store.start()
    settings = dataclasses.replace(serving_settings, redis_port=port)
    server = start_server(settings, "--redis-timeout-ms", "300", workers=2)
    try:
        yield store, server, serving_spec
    finally:
        server.stop()
        store.stop()


def _load(port: int, repo: RepoSpec) -> None:
    client = redis.Redis(port=port)
    row = {"user_id": 1, "age": 7, "country": "DE", "limit_eur": 1.0, "score": 1.0, "level": 1,
           "vip": True, "event_us": now_us()}  # fmt: skip
    write_latest(client, repo, "profile", [row])
    client.close()


def _post(server: ServerProcess) -> httpx.Response:
    return httpx.post(f"{server.url}/get-online-features", json=BODY, timeout=5)


def _health(server: ServerProcess) -> int:
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status


def test_redis_down_fails_fast_and_recovers(
    private: tuple[PrivateRedis, ServerProcess, RepoSpec],
) -> None:
    store, server, repo = private
    _load(store.port, repo)
    assert _post(server).json()["results"][1]["values"] == [7]
    store.stop()
    for _ in range(4):  # both workers, every request: 503 at once, never a hang
        started = time.monotonic()
        response = _post(server)
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < 0.5
        assert "Redis" in response.json()["detail"]
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 503
    assert _health(server) == health_pb2.HealthCheckResponse.NOT_SERVING
    client = FeatureClient(server.target, timeout_s=0.3, retries=1)
    with client, pytest.raises(ServiceUnavailableError, match="UNAVAILABLE"):
        client.get_online_features({"user_id": [1]}, features=["profile:age"])
    store.start()
    _load(store.port, repo)
    # Healed = 8 requests in a row answered (both workers, each past its 0.2 s
    # fail-fast window after its last failed connect).
    healed = _wait(lambda: all(_post(server).status_code == 200 for _ in range(8)), 10,
                   "the server did not recover")  # fmt: skip
    assert healed < 5
    for _ in range(4):
        assert _post(server).json()["results"][1]["values"] == [7]
    assert _health(server) == health_pb2.HealthCheckResponse.SERVING
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    errors = [line for line in metrics.splitlines()
              if line.startswith('featureline_serving_redis_errors_total{kind="unavailable"}')]  # fmt: skip
    assert errors and float(errors[0].split()[-1]) >= 4


def test_hung_redis_gives_deadline_errors(
    private: tuple[PrivateRedis, ServerProcess, RepoSpec],
) -> None:
    store, server, repo = private
    _load(store.port, repo)
    assert store.proc is not None
    os.kill(store.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = _post(server)
        assert response.status_code == 504, response.text
        assert time.monotonic() - started < 1.0  # --redis-timeout-ms 300
        client = FeatureClient(server.target, timeout_s=0.2, retries=0)
        with client, pytest.raises(ServingTimeoutError):
            client.get_online_features({"user_id": [1]}, features=["profile:age"])
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 503
    finally:
        os.kill(store.proc.pid, signal.SIGCONT)
    _wait(lambda: _post(server).status_code == 200, 10, "the server did not recover")
