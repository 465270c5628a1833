"""The REST port's own HTTP/1.1 server (serving_api.http_server) on a raw socket:
keep-alive, pipelining, chunked bodies, Expect: 100-continue, the body limit, HTTP/1.0,
malformed requests, and the routes it hands to FastAPI; then each of its limits (issue
14) on a server in this process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import uvloop
from hostile import closed_by_peer
from serve_process import ServerProcess

from featureline.errors import BadInputError
from featureline.serving_api.cli import configure, http_limits
from featureline.serving_api.http_server import HttpServer
from featureline.serving_api.limits import Limits
from featureline.serving_api.rest_app import Reply
from featureline.serving_api.server import listen_socket

BODY = orjson.dumps({"features": ["profile:age"], "entities": {"user_id": [1]}})


def _post(body: bytes, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST /get-online-features HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` responses read by their Content-Length."""
    buffer = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while len(out) < count:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = buffer[:end].decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:])
            headers = {k.lower(): v for k, v in headers.items()}
            length = int(headers.get("content-length", "0"))
            if len(buffer) >= end + 4 + length:
                out.append((int(head[0].split()[1]), headers, buffer[end + 4 : end + 4 + length]))
                buffer = buffer[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return out


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.http_port), timeout=10)


def test_keep_alive_and_pipelined_requests_answer_in_order(server: ServerProcess) -> None:
    bad = orjson.dumps({"features": ["profile:nope"], "entities": {"user_id": [1]}})
    with _connect(server) as sock:
        sock.sendall(_post(BODY) + _post(bad) + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n" + _post(BODY))
        answers = _read_responses(sock, 4)
        assert [status for status, _, _ in answers] == [200, 404, 200, 200]
        assert orjson.loads(answers[0][2])["metadata"]["feature_names"] == ["user_id", "age"]
        assert "nope" in orjson.loads(answers[1][2])["detail"]
        assert orjson.loads(answers[2][2])["status"] == "SERVING"
        assert answers[3][2] == answers[0][2]  # the same request, the same answer, byte for byte
        assert all("date" in headers for _, headers, _ in answers)
        sock.sendall(_post(BODY))  # still open after four requests
        assert _read_responses(sock, 1)[0][0] == 200


def test_chunked_body_and_expect_continue(server: ServerProcess) -> None:
    with _connect(server) as sock:
        head = (b"POST /get-online-features HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        half = len(BODY) // 2
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half, BODY[half:])
        sock.sendall(chunks)
        ((status, _, body),) = _read_responses(sock, 1)
        assert status == 200 and orjson.loads(body)["metadata"]["feature_names"] == ["user_id", "age"]


def test_body_limit_is_413_before_the_body_is_sent(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /get-online-features HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n")
        ((status, headers, body),) = _read_responses(sock, 1)
        assert status == 413 and headers["connection"] == "close"
        assert "200000 bytes" in orjson.loads(body)["detail"]
        assert sock.recv(10) == b""  # closed: the rest of the stream cannot be trusted
    with _connect(server) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        ((_, _, text),) = _read_responses(sock, 1)
    assert b'code="413",endpoint="/get-online-features"' in text


def test_http_10_closes_and_malformed_is_400(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_post(BODY, version="1.0"))
        ((status, headers, _),) = _read_responses(sock, 1)
        assert status == 200 and headers["connection"] == "close"
        assert sock.recv(10) == b""
    with _connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        ((status, _, body),) = _read_responses(sock, 1)
        assert status == 400 and b"Traceback" not in body


def test_routes_other_than_the_hot_posts_go_to_fastapi(server: ServerProcess) -> None:
    with _connect(server) as sock:
        get = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.sendall(get % b"/openapi.json?x=1" + get % b"/nope")
        (status, headers, body), (missing, _, _) = _read_responses(sock, 2)
        assert status == 200 and headers["content-type"] == "application/json"
        assert "/get-online-features" in orjson.loads(body)["paths"]
        assert missing == 404
        sock.sendall(b"GET /get-online-features HTTP/1.1\r\nHost: t\r\n\r\n")  # wrong method
        assert _read_responses(sock, 1)[0][0] == 405


# -- The REST limits (issue 14), on an HttpServer in this process ---------------------
# A real server and real sockets; the handler is a stub (these tests are about the
# HTTP layer, the serving path is covered above and in the hostile suite).


def _echo(body: bytes, headers: Mapping[str, str]) -> Reply:
    return Reply(200, body)


class _Slow:
    """A handler that answers after `delay_s` (a Redis read that takes a while)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def __call__(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        await asyncio.sleep(self.delay_s)
        return Reply(200, body)


@contextmanager
def _serving(**limits: Any) -> Iterator[int]:
    """An HttpServer with `limits` on a free loopback port, in a thread's event loop."""
    loop = uvloop.new_event_loop()
    server = HttpServer({"/echo": _echo, "/slow": _Slow(0.2)}, None, Limits(**limits))
    sock = listen_socket("127.0.0.1", 0, "HTTP")
    loop.run_until_complete(server.start(sock))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0.1), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        sock.close()


def _echo_request(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _connect_to(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _refused(port: int, data: bytes) -> tuple[int, str]:
    """Send `data`; the error status and message, and check the connection is closed."""
    with _connect_to(port) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        ((status, headers, body),) = _read_responses(sock, 1)
        assert headers["connection"] == "close"
        assert sock.recv(10) == b""
    return status, orjson.loads(body)["detail"]


def test_request_line_and_head_limits() -> None:
    with _serving(http_max_request_line_bytes=1000, http_max_header_bytes=4000, http_max_headers=5) as port:
        long_url = b"POST /echo?" + b"a" * 1000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        assert _refused(port, long_url) == (414, "request target longer than 1000 bytes "
                                                 "(--http-max-request-line-bytes)")  # fmt: skip
        status, detail = _refused(port, _echo_request(extra=b"x-big: " + b"b" * 4000 + b"\r\n"))
        assert (status, detail) == (431, "request head larger than 4000 bytes (--http-max-header-bytes)")
        many = b"".join(b"x-%d: 1\r\n" % i for i in range(5))
        status, detail = _refused(port, _echo_request(extra=many))
        assert (status, detail) == (431, "more than 5 request headers (--http-max-headers)")
        # Just under every limit, and pipelined in one write: answered.
        fits = _echo_request(b'{"a": 1}', b"x-big: " + b"b" * 3800 + b"\r\n")
        with _connect_to(port) as sock:
            sock.sendall(fits * 3)
            assert [r[2] for r in _read_responses(sock, 3)] == [b'{"a": 1}'] * 3


def test_head_trickled_in_one_byte_reads_is_still_bounded() -> None:
    """The head limit counts every read, not only the one that crosses it."""
    with _serving(http_max_header_bytes=2000) as port, _connect_to(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nx-big: ")
        for _ in range(40):
            sock.sendall(b"b" * 50)
            time.sleep(0.002)
        ((status, _, _),) = _read_responses(sock, 1)
        assert status == 431


def test_slow_head_and_body_get_408_and_idle_connections_are_closed() -> None:
    timeouts = {"http_header_timeout_s": 0.4, "http_body_timeout_s": 0.4, "http_idle_timeout_s": 0.6}
    with _serving(**timeouts) as port, contextlib.ExitStack() as stack:
        head, body, idle = (stack.enter_context(_connect_to(port)) for _ in range(3))
        idle.sendall(_echo_request())
        assert _read_responses(idle, 1)[0][0] == 200
        started = time.monotonic()
        head.sendall(b"POST /echo HTTP/1.1\r\nx-slow: ")
        body.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        for _ in range(8):  # one byte per 100 ms: no byte may extend the timeout
            with contextlib.suppress(OSError):
                head.sendall(b"x")
                body.sendall(b"x")
            time.sleep(0.1)
        for sock, message in ((head, "request head not received within 0.4 s"),
                              (body, "request body not received within 0.4 s")):  # fmt: skip
            ((status, _, text),) = _read_responses(sock, 1)
            assert status == 408 and orjson.loads(text)["detail"].startswith(message)
        assert idle.recv(10) == b""  # closed 0.6 s after its reply
        assert time.monotonic() - started < 1.5


def test_replies_not_read_stop_the_reading_and_the_peer_is_cut_off() -> None:
    with _serving(http_max_unsent_bytes=64 * 1024, http_send_timeout_s=0.5) as port:
        sock = _connect_to(port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = _echo_request(b"x" * 1000)
        sent = 0
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError, ConnectionResetError, BrokenPipeError):
            while sent < 200_000:  # 200 MB of replies, if the server kept reading
                sock.sendall(request * 100)
                sent += 100
        assert sent < 200_000  # the server stopped reading: our sends blocked
        time.sleep(1.2)  # past the send timeout (0.5 s) and a sweep
        assert closed_by_peer(sock, 5.0)
        sock.close()


def test_connections_past_the_cap_get_503() -> None:
    with _serving(http_max_connections=3) as port:
        held = [_connect_to(port) for _ in range(3)]
        time.sleep(0.1)
        assert _refused(port, b"") == (503, "too many connections to this worker (3, "
                                            "--http-max-connections); retry shortly")  # fmt: skip
        held.pop().close()
        time.sleep(0.1)
        with _connect_to(port) as sock:
            sock.sendall(_echo_request())
            assert _read_responses(sock, 1)[0][0] == 200
        for sock in held:
            sock.close()


def test_pipelined_requests_behind_a_slow_one_answer_in_order() -> None:
    with (
        _serving(http_max_pipelined=2) as port,
        _connect_to(port) as sock,
    ):
        slow = b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nslow"
        sock.sendall(slow + b"".join(_echo_request(b"%d" % i) for i in range(10)))
        assert [body for _, _, body in _read_responses(sock, 11)] == [b"slow"] + [
            b"%d" % i for i in range(10)
        ]


def test_serve_flags_default_to_the_limits() -> None:
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args([])
    defaults = Limits()
    assert http_limits(args) == {name: getattr(defaults, name) for name in http_limits(args)}
    assert {f.name for f in dataclasses.fields(Limits) if f.name.startswith("http_")} == set(
        http_limits(args)
    )
    with pytest.raises(BadInputError, match="--http-header-timeout-s must be > 0"):
        http_limits(parser.parse_args(["--http-header-timeout-s", "0"]))
