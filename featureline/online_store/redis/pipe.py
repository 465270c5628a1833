"""A write-only Redis connection that keeps several pipelined batches in flight.

redis-py's pipeline sends a batch and then waits for all of its replies, so the client
idles while Redis runs the scripts and Redis idles while the client packs the next
batch. Here a batch is sent as soon as it is packed and replies are read only when more
than `depth` batches are outstanding: client and server work at the same time (about
1.5x the throughput of send-and-wait on two cores). Commands are packed by hiredis (C).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import hiredis

from featureline.config import RedisConfig
from featureline.errors import ServiceUnavailableError
from featureline.online_store.redis.connect import open_socket

_RECV = 1 << 16


class PipelinedWriter:
    """Send command batches without waiting; collect every reply in order."""

    def __init__(self, cfg: RedisConfig, depth: int = 4, timeout_s: float = 60.0) -> None:
        # Logged in (AUTH), on its db (SELECT) and over TLS when the config says so.
        self._sock = open_socket(cfg, timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()
        self._depth = depth
        self._pending: list[int] = []  # replies expected per outstanding batch
        self.replies: list[Any] = []

    def send(self, commands: Sequence[Sequence[Any]]) -> None:
        """Send one batch of commands (packed by hiredis)."""
        payload = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
        self.send_packed(payload, len(commands))

    def send_packed(self, payload: bytes, n_commands: int) -> None:
        """Send `n_commands` already in RESP; read replies of older batches beyond `depth`."""
        self._sock.sendall(payload)
        self._pending.append(n_commands)
        while len(self._pending) > self._depth:
            self._read_batch()

    def finish(self) -> list[Any]:
        """Wait for every outstanding reply; returns all replies since the start."""
        while self._pending:
            self._read_batch()
        return self.replies

    def close(self) -> None:
        self._sock.close()

    def _read_batch(self) -> None:
        expected = self._pending.pop(0)
        for _ in range(expected):
            reply = self._reader.gets()
            while reply is False:
                data = self._sock.recv(_RECV)
                if not data:
                    raise ServiceUnavailableError("Redis closed the connection during a write")
                self._reader.feed(data)
                reply = self._reader.gets()
            if isinstance(reply, hiredis.ReplyError):
                raise ServiceUnavailableError(f"Redis refused a write: {reply}")
            self.replies.append(reply)
