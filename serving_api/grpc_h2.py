"""The public gRPC port: our own HTTP/2 server in the worker's event loop.

Why not grpc.aio alone: measured here (2 cores, `featureline bench serve`), a batch-1
call cost ~390 us of worker CPU through grpc.aio: its C core polls in a thread of its
own and hands every call to the event loop through an eventfd and a task. This server
parses frames in the loop that already holds the Redis connection, answers a request
whose replies are in the near cache within the same `data_received` (no task), and
writes each response (HEADERS, DATA, trailers) in one send.

What it serves natively: the unary feature methods (serving_api.grpc_methods). Every
other path (grpc.health.v1, server reflection, anything unknown) is relayed, message
by message, to the grpc.aio server that this worker runs on a loopback port
(serving_api.grpc_server), so streaming calls, health Watch and reflection behave
exactly as grpcio implements them.

HTTP/2 as used here: one SETTINGS exchange, flow control on both sides (responses wait
for the peer's WINDOW_UPDATE; our receive windows are topped up at half), PING, RST_STREAM
(a cancelled call's task is cancelled), GOAWAY on shutdown and on protocol errors.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import hpack

from featureline.serving_api import h2_wire as w
from featureline.serving_api.grpc_methods import CallInfo, Method, RpcFailure
from featureline.serving_api.grpc_relay import Relay
from featureline.serving_api.limits import INTERNAL_MESSAGE

log = logging.getLogger("featureline.serving.grpc")

# Our receive windows. A stream may send a whole 4 MiB request without waiting; the
# connection window (64 MiB) is topped up whenever half of it has been used.
_STREAM_WINDOW = 8 * 1024 * 1024
_CONNECTION_WINDOW = 64 * 1024 * 1024
_MAX_STREAMS = 1000
_MAX_HEADER_LIST = 64 * 1024


class _Stream:
    __slots__ = ("sid", "path", "authorization", "deadline", "body", "send_window", "pending",
                 "trailers", "task", "relay", "headers_sent", "rejected", "metadata")  # fmt: skip

    def __init__(self, sid: int, send_window: int) -> None:
        self.sid = sid
        self.path = ""
        self.authorization: str | None = None
        self.deadline: float | None = None
        self.body = bytearray()
        self.send_window = send_window
        self.pending = bytearray()  # DATA payload waiting for window
        self.trailers: bytes | None = None  # sent once `pending` is out
        self.task: asyncio.Task[bytes] | None = None
        self.relay: Relay[_Stream] | None = None
        self.headers_sent = False
        self.rejected = False
        self.metadata: list[tuple[str, str]] = []


def _same_table(a: tuple[int, Any, int], b: tuple[int, Any, int]) -> bool:
    # `is`: an equal (name, value) inserted again is still a change of the table.
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


class GrpcH2Connection(asyncio.Protocol):
    def __init__(self, server: GrpcH2Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface_seen = False
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = _MAX_HEADER_LIST
        self.table_generation = 0
        self.decoded_blocks: dict[tuple[int, bytes], list[tuple[bytes, bytes]]] = {}
        self.streams: dict[int, _Stream] = {}
        self.blocked: dict[int, _Stream] = {}
        self.last_sid = 0
        self.header_sid = 0  # a header block spanning CONTINUATION frames
        self.header_block = bytearray()
        self.header_end_stream = False
        self.peer_initial_window = w.DEFAULT_WINDOW
        self.send_window = w.DEFAULT_WINDOW
        self.max_frame = w.DEFAULT_MAX_FRAME
        self.received_unacked = 0
        self.out: list[bytes] = []
        self.going_away = False

    # -- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.server.connections.add(self)
        ours = {w.MAX_CONCURRENT_STREAMS: _MAX_STREAMS, w.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
                w.MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST, w.ENABLE_PUSH: 0}  # fmt: skip
        self.out += [w.settings_frame(ours), w.window_update(0, _CONNECTION_WINDOW - w.DEFAULT_WINDOW)]
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for stream in self.streams.values():
            self._cancel(stream)
        self.streams.clear()
        self.blocked.clear()
        self.transport = None

    def flush(self) -> None:
        if self.out:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(self.out))
            self.out.clear()

    def go_away(self, code: int = w.NO_ERROR, message: str = "") -> None:
        """Refuse new streams; with an error, close the connection now."""
        self.going_away = True
        self.out.append(w.goaway(self.last_sid, code, message.encode()[:256]))
        self.flush()
        if code != w.NO_ERROR and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        try:
            if not self.preface_seen:
                if len(buffer) < len(w.PREFACE):
                    if not w.PREFACE.startswith(bytes(buffer)):
                        raise w.ConnectionFailure(w.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                if buffer[: len(w.PREFACE)] != w.PREFACE:
                    raise w.ConnectionFailure(w.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                self.preface_seen = True
                pos = len(w.PREFACE)
            end = len(buffer)
            unpack = w.HEAD.unpack_from
            while end - pos >= 9:
                high, low, kind, flags, sid = unpack(buffer, pos)
                length = high << 16 | low
                if length > w.DEFAULT_MAX_FRAME:
                    raise w.ConnectionFailure(w.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - pos - 9 < length:
                    break
                payload = bytes(buffer[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._on_frame(kind, flags, sid & 0x7FFFFFFF, payload)
        except w.ConnectionFailure as failure:
            log.info("gRPC connection closed: %s", failure)
            self.go_away(failure.code, str(failure))
            buffer.clear()
            return
        del buffer[:pos]
        self.flush()

    def _on_frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self.header_sid and kind != w.CONTINUATION:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, "a header block was not continued")
        if kind == w.DATA:
            self._on_data(flags, sid, payload)
        elif kind == w.HEADERS:
            self._on_headers(flags, sid, payload)
        elif kind == w.CONTINUATION:
            if sid != self.header_sid or not sid:
                raise w.ConnectionFailure(w.PROTOCOL_ERROR, "unexpected CONTINUATION")
            self.header_block += payload
            if flags & w.END_HEADERS:
                self._headers_complete()
        elif kind == w.SETTINGS:
            self._on_settings(flags, payload)
        elif kind == w.WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif kind == w.PING:
            if len(payload) != 8:
                raise w.ConnectionFailure(w.FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if not flags & w.ACK:
                self.out.append(w.frame(w.PING, w.ACK, 0, payload))
        elif kind == w.RST_STREAM:
            stream = self.streams.pop(sid, None)
            self.blocked.pop(sid, None)
            if stream is not None:
                self._cancel(stream)
        elif kind == w.GOAWAY:
            self.going_away = True
        elif kind == w.PUSH_PROMISE:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.5).

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & w.ACK:
            return
        for key, value in w.parse_settings(payload):
            if key == w.INITIAL_WINDOW_SIZE:
                if value > w.MAX_WINDOW:
                    raise w.ConnectionFailure(w.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == w.MAX_FRAME_SIZE:
                if not w.DEFAULT_MAX_FRAME <= value < 2**24:
                    raise w.ConnectionFailure(w.PROTOCOL_ERROR, "invalid MAX_FRAME_SIZE")
                self.max_frame = value
        self.out.append(w.frame(w.SETTINGS, w.ACK, 0))
        self._drain()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise w.ConnectionFailure(w.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes")
        increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        if sid == 0:
            self.send_window += increment
            if self.send_window > w.MAX_WINDOW:
                raise w.ConnectionFailure(w.FLOW_CONTROL_ERROR, "connection window overflow")
        elif (stream := self.streams.get(sid)) is not None:
            stream.send_window += increment
        self._drain()

    # -- requests ---------------------------------------------------------------------

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0 or sid % 2 == 0:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
        self.header_sid = sid
        self.header_end_stream = bool(flags & w.END_STREAM)
        self.header_block = bytearray(w.unpad(flags, payload, priority=True))
        if flags & w.END_HEADERS:
            self._headers_complete()

    def _headers_complete(self) -> None:
        sid, end_stream = self.header_sid, self.header_end_stream
        self.header_sid = 0
        fields = self._decode(bytes(self.header_block))
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client: only END_STREAM matters
            if end_stream:
                self._end_of_request(stream)
            return
        if sid <= self.last_sid:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, f"stream {sid} reused or out of order")
        self.last_sid = sid
        if self.going_away or len(self.streams) >= _MAX_STREAMS:
            self.out.append(w.rst_stream(sid, w.REFUSED_STREAM))
            return
        stream = self.streams[sid] = _Stream(sid, self.peer_initial_window)
        if self._read_headers(stream, fields) and end_stream:
            self._end_of_request(stream)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """HPACK-decode a header block. A client repeats the same block for every call
        of one method (~5 us to decode in Python), so blocks whose decoding left the
        dynamic table as it was are remembered under (table generation, bytes): the
        same bytes against the same table decode to the same fields."""
        key = (self.table_generation, block)
        fields = self.decoded_blocks.get(key)
        if fields is not None:
            return fields
        before = self._table_state()
        try:
            fields = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(block, raw=True)]
        except Exception as exc:  # hpack's errors: the shared table is now unusable
            raise w.ConnectionFailure(w.COMPRESSION_ERROR, f"bad header block: {exc}") from None
        if not _same_table(self._table_state(), before):
            self.table_generation += 1  # the table changed: earlier decodes no longer apply
            self.decoded_blocks.clear()
        elif len(self.decoded_blocks) < 64:
            self.decoded_blocks[key] = fields
        return fields

    def _table_state(self) -> tuple[int, Any, int]:
        """(entries, first entry, max size) from hpack's public table: an insertion puts a
        new entry object first, an eviction without insertion shortens the table, a
        resize changes the max size. The first entry is held (not its id), so a new
        entry cannot reuse its address while the state is compared (`_same_table`)."""
        # Any: compiled code would unbox a typed tuple entry and box a new object.
        entries: Any = self.decoder.header_table.dynamic_entries
        return (len(entries), entries[0] if entries else None, int(self.decoder.header_table_size))

    def _read_headers(self, stream: _Stream, fields: Iterable[tuple[bytes, bytes]]) -> bool:
        """Takes what the call needs from its headers; False if it was answered already."""
        method = content_type = b""
        for name, value in fields:
            if name == b":path":
                stream.path = value.decode("latin-1")
            elif name == b":method":
                method = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                seconds = w.parse_timeout(value)
                stream.deadline = None if seconds is None else time.monotonic() + seconds
            elif name == b"authorization":
                stream.authorization = value.decode("latin-1")
            elif not name.startswith((b":", b"grpc-")) and name not in (b"te", b"user-agent"):
                stream.metadata.append((name.decode("latin-1"), value.decode("latin-1")))
        if method != b"POST" or not content_type.startswith(b"application/grpc"):
            status = 405 if method != b"POST" else 415
            self.out.append(w.frame(w.HEADERS, w.END_HEADERS | w.END_STREAM, stream.sid,
                                    w.http_status_headers(status)))  # fmt: skip
            self._close(stream, reset=True)
            return False
        if stream.path not in self.server.methods:
            stream.relay = self.server.relay_for(stream, self)
        return True

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, "DATA on stream 0")
        self.received_unacked += len(payload)
        if self.received_unacked >= _CONNECTION_WINDOW // 2:
            self.out.append(w.window_update(0, self.received_unacked))
            self.received_unacked = 0
        stream = self.streams.get(sid)
        if stream is None or stream.rejected:
            return  # a stream we answered or reset: its data is dropped
        data = w.unpad(flags, payload)
        if stream.relay is not None:
            if payload:  # relayed streams may be long: keep their window open
                self.out.append(w.window_update(sid, len(payload)))
            stream.relay.feed(data, end=bool(flags & w.END_STREAM))
            return
        stream.body += data
        if len(stream.body) > self.server.max_receive_bytes + 5:
            self._reject_large(stream)
        elif flags & w.END_STREAM:
            self._end_of_request(stream)

    def _reject_large(self, stream: _Stream) -> None:
        size = int.from_bytes(stream.body[1:5], "big") if len(stream.body) >= 5 else len(stream.body)
        self.finish(stream, None, RpcFailure("RESOURCE_EXHAUSTED",
                    f"request message of {size} bytes is larger than the limit of "
                    f"{self.server.max_receive_bytes} bytes"))  # fmt: skip
        stream.rejected = True
        self.out.append(w.rst_stream(stream.sid, w.NO_ERROR))

    def _end_of_request(self, stream: _Stream) -> None:
        if stream.relay is not None:
            stream.relay.feed(b"", end=True)
            return
        body = stream.body
        if len(body) < 5 or 5 + int.from_bytes(body[1:5], "big") != len(body):
            self.finish(stream, None, RpcFailure("INTERNAL", "the request is not exactly one gRPC message"))
            return
        if body[0]:
            self.finish(stream, None, RpcFailure("UNIMPLEMENTED", "compressed requests are not supported"))
            return
        method = self.server.methods[stream.path]
        try:
            reply = method(bytes(body[5:]), CallInfo(stream.authorization, stream.deadline))
        except RpcFailure as failure:
            self.finish(stream, None, failure)
            return
        if isinstance(reply, bytes):
            self.finish(stream, reply, None)
            return
        task = stream.task = asyncio.ensure_future(reply)
        task.add_done_callback(lambda done: self._task_done(stream, done))

    def _task_done(self, stream: _Stream, task: asyncio.Task[bytes]) -> None:
        if task.cancelled() or self.streams.get(stream.sid) is not stream:
            return
        exc = task.exception()
        if exc is None:
            self.finish(stream, task.result(), None)
        elif isinstance(exc, RpcFailure):
            self.finish(stream, None, exc)
        else:
            log.error("error serving %s", stream.path, exc_info=exc)
            self.finish(stream, None, RpcFailure("INTERNAL", INTERNAL_MESSAGE))
        self.flush()

    # -- responses --------------------------------------------------------------------

    def finish(self, stream: _Stream, message: bytes | None, failure: RpcFailure | None) -> None:
        """The unary answer: HEADERS, the message, trailers; or a trailers-only error."""
        if failure is not None:
            self.end(stream, failure.code, failure.message)
            return
        assert message is not None
        if len(message) > self.server.max_send_bytes:
            self.end(stream, "RESOURCE_EXHAUSTED", f"response message of {len(message)} bytes is larger "
                     f"than the limit of {self.server.max_send_bytes} bytes")  # fmt: skip
            return
        self.send_message(stream, message)
        self.end(stream, "OK", "")

    def send_message(self, stream: _Stream, message: bytes) -> None:
        if not stream.headers_sent:
            self.out.append(w.frame(w.HEADERS, w.END_HEADERS, stream.sid, w.RESPONSE_HEADERS))
            stream.headers_sent = True
        stream.pending += w.message_prefix(message)
        stream.pending += message
        self._pump(stream)

    def end(self, stream: _Stream, code: str, message: str) -> None:
        if self.streams.get(stream.sid) is not stream:
            return
        trailers = w.TRAILERS_OK if code == "OK" else w.status_trailers(code, message)
        if not stream.headers_sent:  # trailers-only response
            trailers = w.RESPONSE_HEADERS + trailers
            stream.headers_sent = True
        stream.trailers = trailers
        self._pump(stream)

    def _pump(self, stream: _Stream) -> None:
        """Send what the windows allow of the stream's pending data, then its trailers."""
        pending = stream.pending
        sent = 0
        while sent < len(pending):
            size = min(self.send_window, stream.send_window, self.max_frame, len(pending) - sent)
            if size <= 0:
                break
            self.out.append(w.frame(w.DATA, 0, stream.sid, bytes(pending[sent : sent + size])))
            sent += size
            self.send_window -= size
            stream.send_window -= size
        del pending[:sent]
        if pending:
            self.blocked[stream.sid] = stream
        elif stream.trailers is not None:
            self.out.append(w.frame(w.HEADERS, w.END_HEADERS | w.END_STREAM, stream.sid, stream.trailers))
            self._close(stream)

    def _drain(self) -> None:
        for stream in list(self.blocked.values()):
            if self.send_window <= 0:
                return
            del self.blocked[stream.sid]
            self._pump(stream)

    def _close(self, stream: _Stream, reset: bool = False) -> None:
        self.streams.pop(stream.sid, None)
        self.blocked.pop(stream.sid, None)
        if reset:
            self._cancel(stream)
        if self.going_away and not self.streams and self.transport is not None:
            self.flush()
            self.transport.close()

    def _cancel(self, stream: _Stream) -> None:
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        if stream.relay is not None:
            stream.relay.cancel()


class GrpcH2Server:
    """The listening side: native methods by path, a relay for every other path."""

    def __init__(self, methods: dict[str, Method], max_receive_bytes: int, max_send_bytes: int,
                 relay_target: str | None) -> None:  # fmt: skip
        self.methods = methods
        self.max_receive_bytes = max_receive_bytes
        self.max_send_bytes = max_send_bytes
        self.relay_target = relay_target
        self.connections: set[GrpcH2Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._channel: Any = None

    def relay_for(self, stream: _Stream, conn: GrpcH2Connection) -> Relay[_Stream]:
        if self._channel is None and self.relay_target is not None:
            import grpc

            self._channel = grpc.aio.insecure_channel(self.relay_target)
        return Relay(self._channel, stream, conn)

    async def start(self, sock: Any, tls: ssl.SSLContext | None = None, handshake_s: float = 10.0) -> None:
        """Serve on `sock`; with `tls` (ALPN h2, serving_api.tls), a handshake cut at `handshake_s`."""
        loop = asyncio.get_running_loop()
        factory: Callable[[], GrpcH2Connection] = lambda: GrpcH2Connection(self)  # noqa: E731
        self._server = await loop.create_server(
            factory, sock=sock, ssl=tls, ssl_handshake_timeout=handshake_s if tls else None
        )

    async def stop(self, grace_s: float) -> None:
        """GOAWAY to every connection, then wait up to `grace_s` for calls in flight."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.go_away()
            if not conn.streams and conn.transport is not None:
                conn.transport.close()
        deadline = time.monotonic() + grace_s
        while any(c.streams for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._channel is not None:
            await self._channel.close()
