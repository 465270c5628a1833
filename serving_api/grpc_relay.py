"""Calls the HTTP/2 server does not serve itself, relayed to this worker's grpc.aio
server (health, reflection, and anything unknown, which it answers UNIMPLEMENTED).

Messages go through as bytes, one by one in both directions, so streaming calls (health
Watch, reflection's ServerReflectionInfo) work; the caller's deadline, bearer token and
custom metadata go along, and the status comes back as grpcio sent it.

Back-pressure: a request message's bytes are given back to the client's flow-control
windows only once grpc.aio has taken the message (`consumed`), so a relayed stream
holds at most one window of unread bytes; a message that declares more than the
receive limit is refused from its 5-byte prefix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar


class RelayedStream(Protocol):
    """What a relay reads of the HTTP/2 server's stream (grpc_h2._Stream)."""

    path: str
    authorization: str | None
    deadline: float | None
    metadata: list[tuple[str, str]]


S = TypeVar("S", bound=RelayedStream)
S_contra = TypeVar("S_contra", bound=RelayedStream, contravariant=True)


class RelayConnection(Protocol[S_contra]):
    """What a relay calls on the HTTP/2 connection (grpc_h2.GrpcH2Connection), which
    imports this module: the two meet in these protocols instead of importing each other."""

    def send_message(self, stream: S_contra, message: bytes) -> None: ...

    def end(self, stream: S_contra, code: str, message: str) -> None: ...

    def flush(self) -> None: ...

    def consumed(self, stream: S_contra, size: int) -> None: ...


class Relay(Generic[S]):
    """One relayed call: request messages cut from the client's DATA frames go to the
    grpc.aio call; its responses go back on the stream."""

    def __init__(self, channel: Any, stream: S, conn: RelayConnection[S], max_message: int) -> None:
        self.stream = stream
        self.conn = conn
        self.max_message = max_message
        self.held = 0  # bytes fed and not yet consumed by grpc.aio
        self.buffer = bytearray()
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        if channel is None:
            conn.end(stream, "UNIMPLEMENTED", f"unknown method {stream.path}")
        else:
            self.task = asyncio.ensure_future(self._run(channel))

    def feed(self, data: bytes, end: bool) -> None:
        """Bytes of the request stream; whole messages are passed on as they complete."""
        buffer = self.buffer
        buffer += data
        self.held += len(data)
        while len(buffer) >= 5:
            size = int.from_bytes(buffer[1:5], "big")
            if size > self.max_message:
                self._refuse("RESOURCE_EXHAUSTED", f"request message of {size} bytes is larger than the "
                             f"limit of {self.max_message} bytes")  # fmt: skip
                return
            if len(buffer) < 5 + size:
                break
            if buffer[0]:
                self._refuse("UNIMPLEMENTED", "compressed requests are not supported")
                return
            self.queue.put_nowait(bytes(buffer[5 : 5 + size]))
            del buffer[: 5 + size]
        if end:
            self.queue.put_nowait(None)

    def _refuse(self, code: str, message: str) -> None:
        self.cancel()
        self.buffer = bytearray()
        self.conn.end(self.stream, code, message)

    def release(self) -> int:
        """The bytes still held (the stream ended): the connection gives them back."""
        held, self.held = self.held, 0
        return held

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def _requests(self) -> AsyncIterator[bytes]:
        while (message := await self.queue.get()) is not None:
            size = min(self.held, len(message) + 5)
            self.held -= size
            self.conn.consumed(self.stream, size)
            yield message

    async def _run(self, channel: Any) -> None:
        import grpc

        stream, conn = self.stream, self.conn
        timeout = None if stream.deadline is None else max(0.0, stream.deadline - time.monotonic())
        metadata = list(stream.metadata)
        if stream.authorization:
            metadata.append(("authorization", stream.authorization))
        method = channel.stream_stream(stream.path)
        call = method(self._requests(), timeout=timeout, metadata=metadata or None)
        try:
            async for message in call:
                conn.send_message(stream, message)
                conn.flush()
            code, details = await call.code(), await call.details()
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details()
        conn.end(stream, code.name, details or "")
        conn.flush()
