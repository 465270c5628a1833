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
a malformed request, idle connections closed after `idle_timeout_s`, and on shutdown
no new requests while the ones in flight finish.
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
from typing import Any, ClassVar
from urllib.parse import unquote

import httptools
import orjson

from featureline.serving_api import metrics
from featureline.serving_api.limits import INTERNAL_MESSAGE, body_too_large
from featureline.serving_api.rest_app import Headers, Reply

log = logging.getLogger("featureline.serving.http")

Handler = Callable[[bytes, Headers], Reply | Awaitable[Reply]]
_WANTED_HEADERS = frozenset({b"authorization", b"content-length", b"accept"})
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# Past this many requests queued behind a slow one on a connection, stop reading it.
_MAX_PIPELINED = 16


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


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.request = _Request()
        self.queue: deque[_Request] = deque()
        self.busy = False  # a request of this connection is being answered
        self.closing = False
        self.paused = False
        self.last_active = time.monotonic()
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.too_large = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self.too_large:
                self._fail(400, f"malformed HTTP request: {exc}")

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = _Request()
        self.body_parts = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.request.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        request, parser = self.request, self.parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        limit = self.server.max_body_bytes
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._too_large(int(value))
                return
            if name == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body_bytes:
            self._too_large(self.body_size)
            return
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.too_large or self.closing:
            return
        request = self.request
        request.body = b"".join(self.body_parts)
        self.queue.append(request)
        if len(self.queue) > _MAX_PIPELINED and self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        if not self.busy:
            self._next()

    # -- answering --------------------------------------------------------------------

    def _next(self) -> None:
        """Answer queued requests in order; stop at one that needs I/O."""
        while self.queue and not self.busy and self.transport is not None:
            request = self.queue.popleft()
            result = self.server.dispatch(request)
            if isinstance(result, bytes):
                self._write(result, request.keep_alive)
                continue
            self.busy = True
            task = asyncio.ensure_future(result)
            task.add_done_callback(functools.partial(self._done, request=request))
        if self.paused and len(self.queue) <= _MAX_PIPELINED // 2 and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False

    def _done(self, task: asyncio.Future[bytes], request: _Request) -> None:
        self.busy = False
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("error serving %s", request.url.decode("latin-1"), exc_info=exc)
            body = orjson.dumps({"detail": INTERNAL_MESSAGE})
            data = response_bytes(500, body, b"application/json", [], request.keep_alive)
        else:
            data = task.result()
        self._write(data, request.keep_alive)
        self._next()

    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        self.last_active = time.monotonic()
        if not keep_alive or (self.server.closing and not self.queue):
            self.closing = True
            self.transport.close()

    def _too_large(self, size: int) -> None:
        self.too_large = True
        path = self.request.url.partition(b"?")[0].decode("latin-1")
        metrics.observe_request(path, 0, 0.0, "413")  # counted like every other answer
        self._fail(413, str(body_too_large(size, self.server.max_body_bytes)))

    def _fail(self, status: int, message: str) -> None:
        """Answer with an error and close: the rest of the stream cannot be trusted."""
        if self.transport is None or self.closing:
            return
        self.closing = True
        body = orjson.dumps({"detail": message})
        self.transport.write(response_bytes(status, body, b"application/json", [], False))
        self.transport.close()

    def close_if_idle(self, now: float, idle_s: float) -> None:
        if (
            not self.busy
            and not self.queue
            and now - self.last_active > idle_s
            and self.transport is not None
        ):
            self.closing = True
            self.transport.close()


class HttpServer:
    """Routes: POST paths answered by `handlers`; everything else by the ASGI `app`."""

    def __init__(self, handlers: dict[str, Handler], app: Any, max_body_bytes: int,
                 idle_timeout_s: float = 30.0) -> None:  # fmt: skip
        self.handlers = handlers
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def dispatch(self, request: _Request) -> bytes | Awaitable[bytes]:
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
        return self._later(result, request.keep_alive)

    async def _later(self, pending: Awaitable[Reply], keep_alive: bool) -> bytes:
        return _reply_bytes(await pending, keep_alive)

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
            conn.close_if_idle(now, self.idle_timeout_s)
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(min(5.0, self.idle_timeout_s / 2), self._sweep)

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
