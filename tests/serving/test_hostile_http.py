"""Hostile HTTP/1.1 clients against the REST port (issue 14; harness: hostile.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
from hostile import assert_survives, closed_by_peer
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.settings import Settings
from featureline.specs import RepoSpec


@pytest.fixture(scope="module")
def target(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[ServerProcess]:
    client = redis.Redis.from_url(serving_settings.redis_url)
    write_latest(client, serving_spec, "profile", [{"user_id": 1, "age": 30, "event_us": now_us()}])
    client.close()
    proc = start_server(serving_settings)
    try:
        yield proc
    finally:
        proc.stop()


def bad_request_line(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b"\x00\x01garbage garbage\r\n\r\n")
        time.sleep(0.3)
        return closed_by_peer(sock, 2.0)


def test_bad_request_line(target: ServerProcess) -> None:
    assert_survives(target, bad_request_line, target.http_port)
