"""A cheap gRPC caller for the load generator: unary calls on raw HTTP/2 (asyncio).

grpc.aio's client cost ~62 us of generator CPU per call here, as much as the server
it measures; on two shared cores that caps what any server can show. This one writes
a constant header block (static-table and literal fields, no encoder state) and the
request in one send, and reads frames until the call's trailers: ~15-20 us a call.
Responses' header blocks are decoded with `hpack` (servers may index), so grpc-status
is read properly from either server. Requests must fit the peer's initial stream
window (64 KiB by default): it is meant for small calls; batch 1000 uses grpc.aio.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import hpack

from benchmarks.loadgen.generator import Done
from featureline.serving_api import h2_wire as w

_OUR_WINDOW = 16 * 1024 * 1024
_UNKNOWN = object()


class _GrpcConnection(asyncio.Protocol):
    """One HTTP/2 connection with one call in flight at a time."""

    def __init__(self, authority: bytes, path: bytes, tls: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.decoder = hpack.Decoder()
        scheme = b"\x87" if tls else b"\x86"  # :scheme https / http (static table)
        self.head = b"\x83" + scheme + b"".join(  # :method POST
            w.literal(k, v)
            for k, v in ((b":path", path), (b":authority", authority),
                         (b"content-type", b"application/grpc"), (b"te", b"trailers"))
        )  # fmt: skip
        self.sid = -1
        self.waiter: asyncio.Future[bool] | None = None
        self.callback: Done | None = None  # a pushed call's (then no waiter)
        self.block = bytearray()  # a header block continued over CONTINUATION frames
        self.statuses: dict[bytes, bytes | None] = {}  # see _status
        self.status: bytes | None = None
        self.send_window = w.DEFAULT_WINDOW
        self.stream_window = w.DEFAULT_WINDOW
        self.window_waiter: asyncio.Future[None] | None = None
        self.unacked = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(  # type: ignore[attr-defined]
            w.PREFACE + w.settings_frame({w.INITIAL_WINDOW_SIZE: _OUR_WINDOW, w.ENABLE_PUSH: 0})
            + w.window_update(0, _OUR_WINDOW - w.DEFAULT_WINDOW)
        )  # fmt: skip

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._resolve(False)

    def _status(self, block: bytes) -> bytes | None:
        """The block's grpc-status, if it has one. `hpack` is pure Python (~10 us a
        block, two blocks a call): a block that left the decoder's dynamic table as it
        was decodes the same way until the table changes, so its result is kept by its
        bytes, and every kept result is dropped when a block does change the table."""
        known = self.statuses.get(block, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        table = self.decoder.header_table
        before = (table.maxsize, tuple(table.dynamic_entries))
        status = None
        for name, value in self.decoder.decode(block, raw=True):
            if name == b"grpc-status":
                status = value
        if (table.maxsize, tuple(table.dynamic_entries)) == before:
            self.statuses[block] = status
        else:
            self.statuses.clear()
        return status

    def _resolve(self, ok: bool) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback(ok)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(ok)

    async def call(self, message: bytes) -> bool:
        body = self._body(message)
        while self.send_window < len(body) and not self.closed:
            self.window_waiter = asyncio.get_running_loop().create_future()
            await self.window_waiter
        self.waiter = asyncio.get_running_loop().create_future()
        self._send(body)
        return await self.waiter

    def send_now(self, message: bytes, done: Done) -> bool:
        """Send at once when the connection window allows, `done(ok)` at the call's
        end; False (nothing sent) otherwise."""
        body = self._body(message)
        if self.closed or self.send_window < len(body):
            return False
        self.callback = done
        self._send(body)
        return True

    def _body(self, message: bytes) -> bytes:
        body = w.message_prefix(message) + message
        if len(body) > min(self.stream_window, w.DEFAULT_MAX_FRAME):
            raise ValueError("request too large for the raw gRPC caller (use grpc_callers)")
        return body

    def _send(self, body: bytes) -> None:
        self.send_window -= len(body)
        self.sid += 2
        self.status = None
        assert self.transport is not None
        self.transport.write(
            w.frame(w.HEADERS, w.END_HEADERS, self.sid, self.head)
            + w.frame(w.DATA, w.END_STREAM, self.sid, body)
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        while len(buffer) - pos >= 9:
            high, low, kind, flags, sid = w.HEAD.unpack_from(buffer, pos)
            length = high << 16 | low
            if len(buffer) - pos - 9 < length:
                break
            payload = bytes(buffer[pos + 9 : pos + 9 + length])
            pos += 9 + length
            self._on_frame(kind, flags, sid & 0x7FFFFFFF, payload)
        del buffer[:pos]

    def _on_frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if kind == w.DATA:
            self.unacked += len(payload)
            if self.unacked > _OUR_WINDOW // 2 and self.transport is not None:
                self.transport.write(w.window_update(0, self.unacked))
                self.unacked = 0
        elif kind in (w.HEADERS, w.CONTINUATION):
            self.block += w.unpad(flags, payload, priority=True) if kind == w.HEADERS else payload
            if flags & w.END_HEADERS:
                status = self._status(bytes(self.block))
                if status is not None:
                    self.status = status
                self.block.clear()
            if kind == w.HEADERS and flags & w.END_STREAM and sid == self.sid:
                self._resolve(self.status == b"0")
        elif kind == w.SETTINGS and not flags & w.ACK:
            for key, setting in w.parse_settings(payload):
                if key == w.INITIAL_WINDOW_SIZE:
                    self.stream_window = setting
            if self.transport is not None:
                self.transport.write(w.frame(w.SETTINGS, w.ACK, 0))
        elif kind == w.WINDOW_UPDATE and sid == 0:
            self.send_window += int.from_bytes(payload, "big") & 0x7FFFFFFF
            if self.window_waiter is not None and not self.window_waiter.done():
                self.window_waiter.set_result(None)
        elif kind == w.PING and not flags & w.ACK and self.transport is not None:
            self.transport.write(w.frame(w.PING, w.ACK, 0, payload))
        elif kind == w.RST_STREAM and sid == self.sid:
            self._resolve(False)
        elif kind == w.GOAWAY:
            self.closed = True


class _RawCaller:
    """One caller of `raw_grpc_callers`: awaitable, or pushed (run_closed)."""

    def __init__(self, host: str, port: int, method: str, tls: ssl.SSLContext | None,
                 conns: list[_GrpcConnection]) -> None:  # fmt: skip
        self.host, self.port, self.method, self.tls = host, port, method, tls
        self.conns = conns  # every connection opened, closed by raw_grpc_callers' close
        self.conn: _GrpcConnection | None = None

    async def __call__(self, body: bytes) -> bool:
        if self.conn is None or self.conn.closed:
            loop = asyncio.get_running_loop()
            authority = f"{self.host}:{self.port}".encode()
            _, self.conn = await loop.create_connection(
                lambda: _GrpcConnection(authority, self.method.encode(), self.tls is not None),
                self.host, self.port, ssl=self.tls,
            )  # fmt: skip
            self.conns.append(self.conn)
        try:
            return await self.conn.call(body)
        except OSError:
            self.conn.closed = True
            return False

    def push(self, body: bytes, done: Done) -> None:
        if self.conn is None or not self.conn.send_now(body, done):
            asyncio.ensure_future(self._awaited(body, done))  # connect, or wait for window

    async def _awaited(self, body: bytes, done: Done) -> None:
        done(await self(body))


def raw_grpc_callers(
    host: str, port: int, method: str, n: int, tls: ssl.SSLContext | None = None
) -> tuple[list[Callable[[bytes], Awaitable[bool]]], Callable[[], Awaitable[None]]]:
    """`n` callers, one HTTP/2 connection each; returns (callers, close). `tls`: a
    context offering ALPN h2."""
    conns: list[_GrpcConnection] = []

    async def close() -> None:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()

    return [_RawCaller(host, port, method, tls, conns) for _ in range(n)], close
