"""Hostile HTTP/1.1 clients against the REST port (issue 14; harness: hostile.py).

One `featureline serve` for the module, with the REST timeouts shortened through their
flags so each case is bounded to a few seconds; the size limits are the shipped
defaults. An attack returns whether the server closed or refused (a 4xx) its
connection. uvicorn is not run here: the product ships no uvicorn REST stack.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import redis
from hostile import Attack, MiB, assert_survives, closed_by_peer, closed_unread, connections
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.settings import Settings
from featureline.specs import RepoSpec

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 1.0
# A timer fires on the server's sweep, a quarter of the shortest timeout late at most;
# the rest is this 2-core machine's scheduling under the probes.
SLACK_S = 1.0
_HEAD = b"POST /get-online-features HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
_RESET = (ConnectionResetError, BrokenPipeError)


@pytest.fixture(scope="module")
def target(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[ServerProcess]:
    client = redis.Redis.from_url(serving_settings.redis_url)
    write_latest(client, serving_spec, "profile", [{"user_id": 1, "age": 30, "event_us": now_us()}])
    client.close()
    proc = start_server(
        serving_settings,
        *("--http-header-timeout-s", str(HEADER_TIMEOUT_S), "--http-body-timeout-s", str(BODY_TIMEOUT_S)),
        *("--http-idle-timeout-s", str(IDLE_TIMEOUT_S), "--http-send-timeout-s", str(SEND_TIMEOUT_S)),
        *("--http-max-unsent-bytes", str(64 * 1024)),
    )
    try:
        yield proc
    finally:
        proc.stop()


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return _HEAD + b"Content-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _status(sock: socket.socket, within_s: float = 5.0) -> int:
    """The status of the next response on `sock` (0 if none came)."""
    sock.settimeout(within_s)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def _answered_and_closed(sock: socket.socket, expected: int) -> bool:
    return _status(sock) == expected and closed_by_peer(sock, 2.0)


def _flood(host: str, port: int, start: bytes, filler: bytes, total: int) -> bool:
    """`start`, then `filler` repeated up to `total` bytes, in 1 MiB writes; whether the
    server cut the connection (a reset, or the close after its answer)."""
    chunk = filler * (MiB // len(filler))
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            sock.sendall(start)
            for _ in range(total // len(chunk)):
                sock.sendall(chunk)
        except _RESET:
            return True
        except TimeoutError:
            pass  # the server stopped reading; it must also close
        return closed_by_peer(sock, 3.0)


def bad_request_line(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b"\x00\x01garbage garbage\r\n\r\n")
        time.sleep(0.3)
        return closed_by_peer(sock, 2.0)


def oversized_headers(host: str, port: int) -> bool:
    """One header of 64 MiB (the limit: 64 KiB of head, then 431)."""
    return _flood(host, port, _HEAD + b"x-pad: ", b"a" * 4096, 64 * MiB)


def oversized_request_line(host: str, port: int) -> bool:
    """A 64 MiB request target (the limit: 8 KiB, then 414)."""
    return _flood(host, port, b"GET /health?q=", b"a" * 4096, 64 * MiB)


def many_headers(host: str, port: int) -> bool:
    """100,000 tiny headers (the limit: 100, then 431)."""
    return _flood(host, port, _HEAD, b"a: b\r\n" * 100_000, 600_000)


def _trickle(socks: list[socket.socket], byte: bytes, within_s: float) -> bool:
    """One byte per 100 ms on each of `socks` until the server closes it; whether every
    one was closed within `within_s` of the start."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, sock)
    open_socks, deadline = set(socks), time.monotonic() + within_s
    while open_socks and time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            ready: socket.socket = key.data
            with contextlib.suppress(BlockingIOError, *_RESET):
                if ready.recv(65536):
                    continue  # the 408 before the close
            open_socks.discard(ready)
            selector.unregister(ready)
        for sock in open_socks:
            with contextlib.suppress(BlockingIOError, *_RESET):
                sock.send(byte)
    selector.close()
    return not open_socks


def slowloris(host: str, port: int) -> bool:
    """200 connections each sending its head one byte per 100 ms: each must be closed
    within the header timeout, which the trickle does not extend."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(sock) for sock in connections(host, port, 200)]
        assert len(socks) == 200
        for sock in socks:
            sock.sendall(_HEAD + b"x-slow: ")
        return _trickle(socks, b"a", HEADER_TIMEOUT_S + SLACK_S)


def slow_body(host: str, port: int) -> bool:
    """A body declared as 1,000 bytes and sent one byte per 100 ms: 408 within the body
    timeout."""
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_HEAD + b"Content-Length: 1000\r\n\r\n")
        return _trickle([sock], b" ", BODY_TIMEOUT_S + SLACK_S)


def smuggling_cl_te(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock:
        body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.sendall(_post(body, b"Transfer-Encoding: chunked\r\n"))
        return _answered_and_closed(sock, 400)


def smuggling_cl_cl(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_HEAD + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}" + b" " * 38)
        return _answered_and_closed(sock, 400)


def huge_declared_body(host: str, port: int) -> bool:
    """A 10 GiB Content-Length: 413 before any of the body is read."""
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_HEAD + b"Content-Length: %d\r\n\r\n" % (10 * 1024 * MiB) + b"{" * 65536)
        return _answered_and_closed(sock, 413)


def deep_json(host: str, port: int) -> bool:
    """100,000 nested arrays as the entity values: 400, not a crash or a 500."""
    depth = 100_000
    body = b'{"features": ["profile:age"], "entities": {"user_id": ' + b"[" * depth + b"]" * depth + b"}}"
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_post(body))
        return _status(sock) == 400


def too_many_entities(host: str, port: int) -> bool:
    """10,001 entities, over the default --max-entities: 400."""
    body = orjson.dumps({"features": ["profile:age"], "entities": {"user_id": list(range(10_001))}})
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(_post(body))
        return _status(sock) == 400


def pipelined_flood(host: str, port: int) -> bool:
    """10,000 pipelined requests of 100 entities whose replies (28 KB each, 280 MB in
    all) are never read: the server must stop reading and answering (back-pressure),
    then cut the connection off after the send timeout."""
    features = [f"profile:{name}" for name in ("age", "country", "limit_eur", "score", "level", "vip")]
    request = _post(orjson.dumps({"features": features, "entities": {"user_id": list(range(1, 101))}}))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    with sock:
        sock.settimeout(3.0)
        sock.connect((host, port))
        sender = threading.Thread(target=_send_quietly, args=(sock, request * 10_000), daemon=True)
        sender.start()
        closed = closed_unread(sock, SEND_TIMEOUT_S + SLACK_S + 2.0)
    sender.join(5)
    return closed


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def idle_connections(host: str, port: int) -> bool:
    """500 connections that send nothing: all closed after the idle timeout."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(sock) for sock in connections(host, port, 500)]
        assert len(socks) == 500
        deadline = time.monotonic() + IDLE_TIMEOUT_S + SLACK_S + 1.0
        return all(closed_by_peer(sock, max(deadline - time.monotonic(), 0.01)) for sock in socks)


CASES = [
    bad_request_line,
    oversized_headers,
    oversized_request_line,
    many_headers,
    slowloris,
    slow_body,
    smuggling_cl_te,
    smuggling_cl_cl,
    huge_declared_body,
    deep_json,
    too_many_entities,
    pipelined_flood,
    idle_connections,
]


@pytest.mark.parametrize("attack", CASES, ids=[case.__name__ for case in CASES])
def test_rest_port_survives(target: ServerProcess, attack: Attack) -> None:
    assert_survives(target, attack, target.http_port)
