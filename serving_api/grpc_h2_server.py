"""The listening side of the public gRPC port (serving_api.grpc_h2 has the connection,
the HTTP/2 protocol itself): native methods by path, a relay to the worker's grpc.aio
server for every other path, the periodic sweep of connections past a timeout, and the
GOAWAY-then-wait shutdown. Not on the per-request path: the connections read what
they need of it through grpc_h2.ConnectionHost."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from featureline.serving_api import h2_limits
from featureline.serving_api import h2_wire as w
from featureline.serving_api.grpc_h2 import GrpcH2Connection
from featureline.serving_api.grpc_methods import Method
from featureline.serving_api.grpc_relay import Relay
from featureline.serving_api.h2_headers import Stream
from featureline.serving_api.limits import Limits


class GrpcH2Server:
    """The listening side: native methods by path, a relay for every other path."""

    def __init__(self, methods: dict[str, Method], max_receive_bytes: int, max_send_bytes: int,
                 relay_target: str | None, limits: Limits | None = None) -> None:  # fmt: skip
        self.methods = methods
        self.max_receive_bytes = max_receive_bytes
        self.max_send_bytes = max_send_bytes
        self.relay_target = relay_target
        self.limits = limits or Limits()
        # Our receive windows: a stream may send one whole message of the limit without
        # waiting; the connection holds at most grpc_max_buffered_bytes not yet handled
        # (but always one whole message).
        self.stream_window = min(w.MAX_WINDOW, max(w.DEFAULT_WINDOW, max_receive_bytes + 5))
        limits = self.limits
        self.connection_window = min(w.MAX_WINDOW, max(self.stream_window, limits.grpc_max_buffered_bytes))
        ours = {w.MAX_CONCURRENT_STREAMS: limits.grpc_max_streams, w.INITIAL_WINDOW_SIZE: self.stream_window,
                w.MAX_HEADER_LIST_SIZE: limits.grpc_max_header_bytes, w.ENABLE_PUSH: 0}  # fmt: skip
        # What every connection starts with: our SETTINGS and the connection window.
        self.preface = w.settings_frame(ours) + w.window_update(0, self.connection_window - w.DEFAULT_WINDOW)
        self.clock: Callable[[], float] = time.monotonic  # the loop's, once started
        self.connections: set[GrpcH2Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._channel: Any = None
        self._sweeper: asyncio.TimerHandle | None = None

    def relay_for(self, stream: Stream, conn: GrpcH2Connection) -> Relay[Stream]:
        if self._channel is None and self.relay_target is not None:
            import grpc

            self._channel = grpc.aio.insecure_channel(self.relay_target)
        return Relay(self._channel, stream, conn, self.max_receive_bytes)

    async def start(self, sock: Any, tls: ssl.SSLContext | None = None, handshake_s: float = 10.0) -> None:
        """Serve on `sock`; with `tls` (ALPN h2, serving_api.tls), a handshake cut at `handshake_s`."""
        loop = asyncio.get_running_loop()
        self.clock = loop.time
        factory: Callable[[], GrpcH2Connection] = lambda: GrpcH2Connection(self)  # noqa: E731
        self._server = await loop.create_server(
            factory, sock=sock, ssl=tls, ssl_handshake_timeout=handshake_s if tls else None
        )
        self._sweep()

    def _sweep(self) -> None:
        """Close connections past a timeout (h2_limits.sweep), and come back."""
        h2_limits.sweep(self.connections, self.limits, self.clock())
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(h2_limits.sweep_interval(self.limits), self._sweep)

    async def stop(self, grace_s: float) -> None:
        """GOAWAY to every connection, then wait up to `grace_s` for calls in flight."""
        if self._sweeper is not None:
            self._sweeper.cancel()
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
