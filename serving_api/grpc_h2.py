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
for the peer's WINDOW_UPDATE; our connection window is topped up as requests are
handled, never for bytes still buffered), PING, RST_STREAM (a cancelled call's future is
cancelled), GOAWAY on shutdown and on protocol errors.

Hostile peers (issue 14; every limit is a field of serving_api.limits.Limits and a
`featureline serve` flag): a header block is bounded in bytes and CONTINUATION frames
as it arrives, streams per connection are bounded (REFUSED_STREAM beyond), stream
resets, SETTINGS and PINGs are rate limited (serving_api.h2_limits), a message that
declares more than the receive limit is refused from its 5-byte prefix, responses
waiting for the peer's window are capped in bytes and in time (a stalled connection is
closed), and connections are bounded in number, in time to their preface and in idle
time. Over a limit: GOAWAY(ENHANCE_YOUR_CALM) and close; other connections never wait.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Protocol

from featureline.serving_api import h2_limits
from featureline.serving_api import h2_wire as w
from featureline.serving_api.grpc_methods import CallInfo, Method, RpcFailure
from featureline.serving_api.grpc_relay import Relay
from featureline.serving_api.h2_headers import HeaderBlocks, Stream, read_call
from featureline.serving_api.limits import INTERNAL_MESSAGE, Limits

log = logging.getLogger("featureline.serving.grpc")


class ConnectionHost(Protocol):
    """What a connection needs of its server (serving_api.grpc_h2_server.GrpcH2Server):
    a Protocol, so that the server's module imports this one and never the reverse."""

    methods: dict[str, Method]
    max_receive_bytes: int
    max_send_bytes: int
    limits: Limits
    connection_window: int
    preface: bytes
    clock: Callable[[], float]
    connections: set[GrpcH2Connection]

    def relay_for(self, stream: Stream, conn: GrpcH2Connection) -> Relay[Stream]: ...


class GrpcH2Connection(asyncio.Protocol):
    def __init__(self, server: ConnectionHost) -> None:
        self.server = server
        limits = self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface_seen = False
        self.settings_seen = False  # the client's first SETTINGS (h2_limits.sweep)
        self.headers = HeaderBlocks(limits.grpc_max_header_bytes, limits.grpc_max_continuations)
        self.streams: dict[int, Stream] = {}
        self.blocked: dict[int, Stream] = {}  # pending data, waiting for the connection window
        self.last_sid = 0
        self.peer_initial_window = w.DEFAULT_WINDOW
        self.send_window = w.DEFAULT_WINDOW
        self.max_frame = w.DEFAULT_MAX_FRAME
        self.received_unacked = 0  # handled request bytes not yet given back to the peer
        self.out: list[bytes] = []
        self.going_away = False
        self.closing = False
        # Counters the sweep compares between passes (h2_limits): no clock on the hot path.
        self.streams_opened = 0
        self.pending_bytes = 0  # response bytes of all streams waiting for a window
        self.progress = 0  # times pending response bytes went out
        self.writing_paused = False  # the transport's buffer is over its high-water mark
        self.rates = h2_limits.FrameRates(limits)
        self.watch = h2_limits.Watch(server.clock())

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    # -- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        server, limit = self.server, self.limits.grpc_max_connections
        self.out.append(server.preface)
        if len(server.connections) >= limit:
            log.info("gRPC connection refused: %d connections open", len(server.connections))
            self.close_with(w.ENHANCE_YOUR_CALM, f"over {limit} connections (--grpc-max-connections)")
            return
        server.connections.add(self)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for stream in self.streams.values():
            self._cancel(stream)
        self.streams.clear()
        self.blocked.clear()
        self.transport = None

    def pause_writing(self) -> None:
        # The peer reads slower than we write: response DATA waits in `pending`
        # (capped, and the sweep closes a connection stalled so).
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.progress += 1
        self._drain()
        self.flush()

    def flush(self) -> None:
        if self.out:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(self.out))
            self.out.clear()

    def go_away(self) -> None:
        """Refuse new streams (shutdown); the connection closes when its calls end."""
        if not self.going_away:
            self.going_away = True
            self.out.append(w.goaway(self.last_sid, w.NO_ERROR))
        self.flush()

    def close_with(self, code: int, message: str, abort: bool = False) -> None:
        """GOAWAY(code) and close; `abort` drops what the transport has not sent yet
        (a peer that does not read would otherwise hold it)."""
        if not self.closing:
            self.closing = self.going_away = True
            self.out.append(w.goaway(self.last_sid, code, message.encode()[:256]))
            self.flush()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
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
                if self.closing:  # a response went over a limit and closed us
                    buffer.clear()
                    return
        except w.ConnectionFailure as failure:
            log.info("gRPC connection closed: %s", failure)
            self.close_with(failure.code, str(failure))
            buffer.clear()
            return
        del buffer[:pos]
        self.flush()

    def _on_frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self.headers.sid and kind != w.CONTINUATION:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, "a header block was not continued")
        if kind == w.DATA:
            self._on_data(flags, sid, payload)
        elif kind == w.HEADERS:
            self._on_headers(flags, sid, payload)
        elif kind == w.CONTINUATION:
            self.headers.add(sid, payload)
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
                self.rates.ping(self.server.clock())
                self.out.append(w.frame(w.PING, w.ACK, 0, payload))
        elif kind == w.RST_STREAM:
            if len(payload) != 4:
                raise w.ConnectionFailure(w.FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 bytes")
            self.rates.reset(self.server.clock())
            stream = self.streams.get(sid)
            if stream is not None:
                self._close(stream, reset=True)
        elif kind == w.GOAWAY:
            self.going_away = True
        elif kind == w.PUSH_PROMISE:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.5).

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & w.ACK:
            return
        self.rates.setting(self.server.clock())
        self.settings_seen = True
        for key, value in w.parse_settings(payload):
            if key == w.INITIAL_WINDOW_SIZE:
                if value > w.MAX_WINDOW:
                    raise w.ConnectionFailure(w.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                # O(streams), at most grpc_max_streams, at most grpc_max_settings_per_s times a second.
                for stream in self.streams.values():
                    stream.send_window += delta
                    if delta > 0 and stream.pending and stream.send_window > 0:
                        self.blocked[stream.sid] = stream
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
            if increment == 0:
                raise w.ConnectionFailure(w.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > w.MAX_WINDOW:
                raise w.ConnectionFailure(w.FLOW_CONTROL_ERROR, "connection window overflow")
            self._drain()
        elif (stream := self.streams.get(sid)) is not None:
            stream.send_window += increment
            if stream.pending:  # only this stream can move: O(1) per frame
                self._pump(stream)

    # -- requests ---------------------------------------------------------------------

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0 or sid % 2 == 0:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
        self.headers.start(sid, bool(flags & w.END_STREAM), w.unpad(flags, payload, priority=True))
        if flags & w.END_HEADERS:
            self._headers_complete()

    def _headers_complete(self) -> None:
        sid, end_stream = self.headers.sid, self.headers.end_stream
        fields = self.headers.finish()
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client: only END_STREAM matters
            if end_stream:
                self._end_of_request(stream)
            return
        if sid <= self.last_sid:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, f"stream {sid} reused or out of order")
        self.last_sid = sid
        if self.going_away or len(self.streams) >= self.limits.grpc_max_streams:
            self.out.append(w.rst_stream(sid, w.REFUSED_STREAM))
            self.rates.reset(self.server.clock())  # a refused stream costs us as a reset one
            return
        self.streams_opened += 1
        stream = self.streams[sid] = Stream(sid, self.peer_initial_window)
        if self._read_headers(stream, fields) and end_stream:
            self._end_of_request(stream)

    def _read_headers(self, stream: Stream, fields: list[tuple[bytes, bytes]]) -> bool:
        """Takes what the call needs from its headers; False if it was answered already."""
        status = read_call(stream, fields)
        if status:
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
        stream = self.streams.get(sid)
        if stream is None or stream.rejected:
            self._credit(len(payload))  # a stream we answered or reset: its data is dropped
            return
        data = w.unpad(flags, payload)
        if len(data) != len(payload):  # padding is consumed at once, on both windows
            self._credit(len(payload) - len(data))
            self.out.append(w.window_update(sid, len(payload) - len(data)))
        if stream.relay is not None:
            stream.relay.feed(data, end=bool(flags & w.END_STREAM))
            return
        body = stream.body
        body += data
        limit = self.server.max_receive_bytes
        if len(body) > limit + 5 or (len(body) >= 5 and int.from_bytes(body[1:5], "big") > limit):
            self._reject_large(stream)  # from the 5-byte prefix: the body is never awaited
        elif flags & w.END_STREAM:
            self._end_of_request(stream)

    def consumed(self, stream: Stream, size: int) -> None:
        """A relayed request message was taken by grpc.aio: its bytes may come again."""
        if size <= 0:
            return
        if self.streams.get(stream.sid) is stream:
            self.out.append(w.window_update(stream.sid, size))
        self._credit(size)
        self.flush()

    def _credit(self, size: int) -> None:
        """Handled request bytes: the connection window is topped up at half."""
        self.received_unacked += size
        if self.received_unacked >= self.server.connection_window // 2:
            self.out.append(w.window_update(0, self.received_unacked))
            self.received_unacked = 0

    def _reject_large(self, stream: Stream) -> None:
        size = int.from_bytes(stream.body[1:5], "big") if len(stream.body) >= 5 else len(stream.body)
        self._credit(len(stream.body))
        stream.body = bytearray()
        stream.rejected = True
        self.finish(stream, None, RpcFailure("RESOURCE_EXHAUSTED",
                    f"request message of {size} bytes is larger than the limit of "
                    f"{self.server.max_receive_bytes} bytes"))  # fmt: skip
        self.out.append(w.rst_stream(stream.sid, w.NO_ERROR))

    def _end_of_request(self, stream: Stream) -> None:
        if stream.relay is not None:
            stream.relay.feed(b"", end=True)
            return
        body = stream.body
        stream.body = bytearray()
        self._credit(len(body))
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
        # A read's future (ServingCore.serve) as it is: no task per call.
        task = stream.task = reply if isinstance(reply, asyncio.Future) else asyncio.ensure_future(reply)
        task.add_done_callback(lambda done: self._task_done(stream, done))

    def _task_done(self, stream: Stream, task: asyncio.Future[bytes]) -> None:
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

    def finish(self, stream: Stream, message: bytes | None, failure: RpcFailure | None) -> None:
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

    def send_message(self, stream: Stream, message: bytes) -> None:
        size = len(message) + 5
        if self.pending_bytes and self.pending_bytes + size > self.limits.grpc_max_pending_bytes:
            self._pending_over_limit()
            return
        if not stream.headers_sent:
            self.out.append(w.frame(w.HEADERS, w.END_HEADERS, stream.sid, w.RESPONSE_HEADERS))
            stream.headers_sent = True
        stream.pending += w.message_prefix(message)
        stream.pending += message
        self.pending_bytes += size
        self._pump(stream)

    def _pending_over_limit(self) -> None:
        """The peer does not open its windows: more responses would only pile up here."""
        limit = self.limits.grpc_max_pending_bytes
        log.info("gRPC connection closed: %d response bytes wait for its window", self.pending_bytes)
        message = f"more than {limit} response bytes wait for the window (--grpc-max-pending-bytes)"
        self.close_with(w.ENHANCE_YOUR_CALM, message, abort=True)

    def end(self, stream: Stream, code: str, message: str) -> None:
        if self.streams.get(stream.sid) is not stream or self.closing:
            return
        trailers = w.TRAILERS_OK if code == "OK" else w.status_trailers(code, message)
        if not stream.headers_sent:  # trailers-only response
            trailers = w.RESPONSE_HEADERS + trailers
            stream.headers_sent = True
        stream.trailers = trailers
        self._pump(stream)

    def _pump(self, stream: Stream) -> None:
        """Send what the windows allow of the stream's pending data, then its trailers."""
        pending = stream.pending
        if pending:
            if self.writing_paused:
                self.blocked[stream.sid] = stream
                return
            sent = 0
            while sent < len(pending):
                size = min(self.send_window, stream.send_window, self.max_frame, len(pending) - sent)
                if size <= 0:
                    break
                self.out.append(w.frame(w.DATA, 0, stream.sid, bytes(pending[sent : sent + size])))
                sent += size
                self.send_window -= size
                stream.send_window -= size
            if sent:
                del pending[:sent]
                self.pending_bytes -= sent
                self.progress += 1
            if pending:
                if stream.send_window > 0:  # else its own WINDOW_UPDATE (or SETTINGS) pumps it
                    self.blocked[stream.sid] = stream
                return
        if stream.trailers is not None:
            self.out.append(w.frame(w.HEADERS, w.END_HEADERS | w.END_STREAM, stream.sid, stream.trailers))
            self.rates.pings = 0  # a call answered: pings since are not "without data"
            self._close(stream)

    def _drain(self) -> None:
        """Pump the streams waiting for the connection window, in turn; each pass moves
        data or stops (bounded by the streams waiting, never a loop without progress)."""
        blocked = self.blocked
        for _ in range(len(blocked)):
            if self.send_window <= 0 or self.writing_paused or not blocked:
                return
            stream = blocked.pop(next(iter(blocked)))
            self._pump(stream)

    def _close(self, stream: Stream, reset: bool = False) -> None:
        self.streams.pop(stream.sid, None)
        self.blocked.pop(stream.sid, None)
        if stream.pending:
            self.pending_bytes -= len(stream.pending)
            stream.pending = bytearray()
        if stream.body:
            self._credit(len(stream.body))
            stream.body = bytearray()
        if stream.relay is not None:
            self._credit(stream.relay.release())
        if reset:
            self._cancel(stream)
        if self.going_away and not self.streams and self.transport is not None:
            self.flush()
            self.transport.close()

    def _cancel(self, stream: Stream) -> None:
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        if stream.relay is not None:
            stream.relay.cancel()
