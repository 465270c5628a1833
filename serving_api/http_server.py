"""The REST port: an HTTP/1.1 server on httptools in the worker's event loop.

The hot endpoints (POST /get-online-features, /get-online-tensor, /describe-features)
are answered straight from the parsed request by serving_api.rest_app.RestHandlers; a
request whose replies are all in the near cache is answered inside `data_received`,
with no task and one write. Everything else (health, metrics, OpenAPI and its docs,
and any unknown path) goes to the FastAPI app through a small ASGI bridge.

Why not uvicorn: measured here (2 cores, `featureline bench serve`, batch 1), uvicorn's
protocol, its ASGI cycle and the task per request cost ~50 of the ~130 us of worker
CPU per request. What this keeps of an HTTP/1.1 server: keep-alive and Connection:
close, HTTP/1.0, pipelined requests answered in order, chunked request bodies,
`Expect: 100-continue`, the body limit (413 as soon as Content-Length says so), 400 on
a malformed request, and on shutdown no new requests while the ones in flight finish.

Hostile clients (issue 14), each limit a field of serving_api.limits.Limits and a
`featureline serve` flag: the request target (414) and the request head (431, size
and header count) are bounded while they arrive, not after; the head must arrive
within a timeout of its first byte and the body within one of the head's end (408:
a trickle of bytes extends neither); idle keep-alive connections are closed; replies
the peer does not read stop the reading of its requests (`pause_writing`), and a peer
that reads none of them for the send timeout is cut off; connections past the cap
get 503. The timers are checked by one sweep per server, not a timer per request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, ClassVar, Final
from urllib.parse import unquote

import httptools
import orjson

from featureline.serving_api import metrics
from featureline.serving_api.limits import INTERNAL_MESSAGE, Limits, body_too_large
from featureline.serving_api.rest_app import Headers, Reply

log = logging.getLogger("featureline.serving.http")

Handler = Callable[[bytes, Headers], Reply | Awaitable[Reply]]
_WANTED_HEADERS: Final = frozenset({b"authorization", b"content-length", b"accept"})
_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}


class _Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "version")

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = True
        self.version = "1.1"


class _Date:
    """The Date header, formatted once a second."""

    second: ClassVar[int] = 0
    value: ClassVar[bytes] = b""

    @classmethod
    def header(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = formatdate(now, usegmt=True).encode()
        return cls.value


def response_bytes(status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]],
                   keep_alive: bool) -> bytes:  # fmt: skip
    reason = _REASONS.get(status, b"Unknown")
    head = [b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\ndate: %s\r\n"
            % (status, reason, content_type, len(body), _Date.header())]  # fmt: skip
    head += [b"%s: %s\r\n" % (k, v) for k, v in extra]
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + body


class _Rejected(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


class HttpConnection(asyncio.Protocol):
    """One client connection. Its timers are checked by the server's sweep (no timer
    handle per request): `msg_at` is when the current request's head began (or, in
    its body, when the head ended), `idle_at` when the last reply was written,
    `stall_at` when writing stalled or the connection began closing."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.request = _Request()
        self.queue: deque[_Request] = deque()
        self.busy = False  # a request of this connection is being answered
        self.closing = False
        self.read_paused = False
        self.write_paused = False  # the transport holds more than max_unsent_bytes
        self.in_message = False  # a request has begun and not ended
        self.in_body = False  # ... and its head has ended
        self.heads = 0  # request heads parsed on this connection
        self.head_room = server.max_header_bytes  # bytes the current head may still take
        self.now = self.msg_at = self.idle_at = self.stall_at = time.monotonic()
        self.body_parts: list[bytes] = []
        self.body_size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport = conn
        server = self.server
        conn.set_write_buffer_limits(high=server.max_unsent_bytes)  # past it: pause_writing
        if len(server.connections) >= server.max_connections:
            self._fail(503, f"too many connections to this worker ({server.max_connections}, "
                            "--http-max-connections); retry shortly")  # fmt: skip
            return
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic()  # the only clock read of a request answered at once
        if self.in_body or len(data) <= self.head_room:
            self.head_room -= len(data)  # reset when a request ends: bytes past one are slack
            self._feed(data)
        else:
            self._feed_bounded(memoryview(data))

    def _feed(self, data: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")  # nothing if already answered

    def _feed_bounded(self, view: memoryview) -> None:
        """A read longer than the room left for the current request head: parse only up
        to the limit (a slice of a view: no copy), and go on only if the head ended
        within it. So a request target or header value split over many reads, which the
        parser joins part by part, stays under the limit (issue 14: a 64 MiB request
        line re-joined on every read blocked the loop and took +124 MiB)."""
        while len(view) and not self.closing:
            if self.in_body or len(view) <= self.head_room:
                self.head_room -= len(view)
                self._feed(view)
                return
            room = max(self.head_room, 0)
            heads = self.heads
            self.head_room -= room
            self._feed(view[:room])
            if self.heads == heads and not self.closing:
                limit = self.server.max_header_bytes
                self._fail(431, f"request head larger than {limit} bytes (--http-max-header-bytes)")
                return
            view = view[room:]

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = _Request()
        self.body_parts = []
        self.body_size = 0
        self.in_message = True
        self.msg_at = self.now

    def on_url(self, url: bytes) -> None:
        self.request.url += url  # bounded by the head's room, so rarely more than one part
        limit = self.server.max_request_line_bytes
        if len(self.request.url) > limit:
            self._fail(414, f"request target longer than {limit} bytes (--http-max-request-line-bytes)")
            raise _Rejected

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.request.headers
        headers.append((name.lower(), value))
        if len(headers) > self.server.max_headers:
            self._fail(431, f"more than {self.server.max_headers} request headers (--http-max-headers)")
            raise _Rejected

    def on_headers_complete(self) -> None:
        request, parser = self.request, self.parser
        self.in_body = True
        self.heads += 1
        self.msg_at = self.now  # the body's timer starts here
        request.method = parser.get_method()
        # The version only fills the ASGI scope (keep-alive comes from the parser), and
        # every POST the app serves is answered without it: ~1 us a request saved.
        if request.method != b"POST":
            request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        limit = self.server.max_body_bytes
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._too_large(int(value))
                raise _Rejected
            if name == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body_bytes:
            self._too_large(self.body_size)
            raise _Rejected
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        self.in_message = self.in_body = False
        self.head_room = self.server.max_header_bytes
        if self.closing:
            return
        request = self.request
        request.body = b"".join(self.body_parts)
        self.queue.append(request)
        if not self.busy:
            self._next()
        else:
            self._flow()

    # -- answering --------------------------------------------------------------------

    def _next(self) -> None:
        """Answer queued requests in order; stop at one that needs I/O, or while the
        peer has not read enough of the replies already sent."""
        while self.queue and not (self.busy or self.write_paused or self.closing):  # lost: queue cleared
            request = self.queue.popleft()
            result = self.server.dispatch(request)
            if isinstance(result, bytes):
                self._write(result, request.keep_alive)
                continue
            self.busy = True
            # A read's future (ServingCore.serve) as it is; anything else (the ASGI app)
            # in a task.
            future = result if isinstance(result, asyncio.Future) else asyncio.ensure_future(result)
            future.add_done_callback(functools.partial(self._done, request=request))
        self._flow()

    def _flow(self) -> None:
        """Stop reading while too many requests wait or the replies are not drained;
        read again once half the queue is answered and the replies drained."""
        if self.transport is None or self.closing:
            return
        if self.read_paused:
            if not self.write_paused and len(self.queue) <= self.server.max_pipelined // 2:
                self.transport.resume_reading()
                self.read_paused = False
        elif self.write_paused or len(self.queue) > self.server.max_pipelined:
            self.transport.pause_reading()
            self.read_paused = True

    def pause_writing(self) -> None:
        self.write_paused = True
        self.stall_at = time.monotonic()
        self._flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.idle_at = time.monotonic()
        self._next()

    def _done(self, task: asyncio.Future[bytes | Reply], request: _Request) -> None:
        self.busy = False
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("error serving %s", request.url.decode("latin-1"), exc_info=exc)
            body = orjson.dumps({"detail": INTERNAL_MESSAGE})
            data = response_bytes(500, body, b"application/json", [], request.keep_alive)
        else:
            result = task.result()
            data = result if isinstance(result, bytes) else _reply_bytes(result, request.keep_alive)
        self.now = time.monotonic()
        self._write(data, request.keep_alive)
        self._next()

    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.closing:
            return  # answered already (an error closed the connection while this ran)
        self.transport.write(data)
        self.idle_at = self.now
        if not keep_alive or (self.server.closing and not self.queue):
            self._close()

    def _close(self) -> None:
        """Close once the replies are sent; the sweep cuts it off if they never are."""
        if self.transport is not None and not self.closing:
            self.closing = True
            self.stall_at = time.monotonic()
            self.transport.close()

    def _too_large(self, size: int) -> None:
        path = self.request.url.partition(b"?")[0].decode("latin-1")
        metrics.observe_request(path, 0, 0.0, "413")  # counted like every other answer
        self._fail(413, str(body_too_large(size, self.server.max_body_bytes)))

    def _fail(self, status: int, message: str) -> None:
        """Answer with an error and close: the rest of the stream cannot be trusted."""
        if self.transport is None or self.closing:
            return
        body = orjson.dumps({"detail": message})
        self.transport.write(response_bytes(status, body, b"application/json", [], False))
        self._close()

    def check_timers(self, now: float) -> None:
        """Called by the server's sweep: enforce the timeouts of issue 14's slowloris,
        slow body, idle and never-reading clients."""
        server = self.server
        if self.transport is None:
            return
        if self.closing or self.write_paused:
            if now - self.stall_at > server.send_timeout_s:
                self.transport.abort()  # close() would wait for a peer that does not read
            return
        if self.busy or self.queue:
            return  # our turn, bounded by the request's own deadline
        if self.in_body:
            if now - self.msg_at > server.body_timeout_s:
                self._fail(408, f"request body not received within {server.body_timeout_s:g} s "
                                "(--http-body-timeout-s)")  # fmt: skip
        elif self.in_message:
            if now - self.msg_at > server.header_timeout_s:
                self._fail(408, f"request head not received within {server.header_timeout_s:g} s "
                                "of its first byte (--http-header-timeout-s)")  # fmt: skip
        elif now - self.idle_at > server.idle_timeout_s:
            self._close()


class HttpServer:
    """Routes: POST paths answered by `handlers`; everything else by the ASGI `app`."""

    def __init__(self, handlers: dict[str, Handler], app: Any, limits: Limits) -> None:
        self.handlers = handlers
        self.app = app
        self.max_body_bytes = limits.max_body_bytes
        self.max_request_line_bytes = limits.http_max_request_line_bytes
        self.max_header_bytes = limits.http_max_header_bytes
        self.max_headers = limits.http_max_headers
        self.header_timeout_s = limits.http_header_timeout_s
        self.body_timeout_s = limits.http_body_timeout_s
        self.idle_timeout_s = limits.http_idle_timeout_s
        self.max_unsent_bytes = limits.http_max_unsent_bytes
        self.send_timeout_s = limits.http_send_timeout_s
        self.max_pipelined = limits.http_max_pipelined
        self.max_connections = limits.http_max_connections
        # A quarter of the shortest timeout, so one fires at most 25% late; at most
        # once a second (a sweep of 10,000 connections: ~10 ms as Python source), at
        # least every 50 ms.
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.idle_timeout_s, self.send_timeout_s)
        self.sweep_s = min(1.0, max(0.05, shortest / 4))
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def dispatch(self, request: _Request) -> bytes | Awaitable[bytes | Reply]:
        """The reply's bytes at once, or an awaitable of its bytes or Reply."""
        path, _, _ = request.url.partition(b"?")
        handler = self.handlers.get(path.decode("latin-1")) if request.method == b"POST" else None
        if handler is None:
            return self._asgi(request)
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers if k in _WANTED_HEADERS
        }
        result = handler(request.body, headers)
        if isinstance(result, Reply):
            return _reply_bytes(result, request.keep_alive)
        return result

    async def _asgi(self, request: _Request) -> bytes:
        """One request through the ASGI app; its response, buffered."""
        path, _, query = request.url.partition(b"?")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.version, "method": request.method.decode("latin-1"),
            "scheme": "http", "path": unquote(path.decode("latin-1")), "raw_path": path,
            "query_string": query, "root_path": "", "headers": request.headers,
            "client": None, "server": None,
        }  # fmt: skip
        sent_body = False
        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await asyncio.Event().wait()  # the response is buffered: no disconnect to report
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = [(k.lower(), v) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        content_type = b"application/octet-stream"
        extra = []
        for name, value in out_headers:
            if name == b"content-type":
                content_type = value
            elif name not in (b"content-length", b"connection", b"date", b"transfer-encoding"):
                extra.append((name, value))
        return response_bytes(status, b"".join(chunks), content_type, extra, request.keep_alive)

    async def start(self, sock: Any, tls: ssl.SSLContext | None = None, handshake_s: float = 10.0) -> None:
        """Serve on `sock`; with `tls`, HTTPS (serving_api.tls), a handshake cut at `handshake_s`."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self),
            sock=sock,
            ssl=tls,
            ssl_handshake_timeout=handshake_s if tls else None,
        )
        self._sweep()

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timers(now)
        self._sweeper = asyncio.get_running_loop().call_later(self.sweep_s, self._sweep)

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish (up to `grace_s`), close."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace_s
        while any(c.busy or c.queue for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()


def _reply_bytes(reply: Reply, keep_alive: bool) -> bytes:
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    return response_bytes(reply.status, reply.body, reply.content_type.encode(), extra, keep_alive)
