"""A small asyncio Redis client for the read path: pipelined, multiplexed, fail-fast.

Why not redis.asyncio: its pipeline costs ~150 us of Python per call, more than the
whole Redis round trip on localhost (~40 us). Here a request's commands are packed
into one write (`hiredis.pack_command`), replies are parsed by hiredis's C reader, and
many concurrent requests share one connection: Redis answers in order, so a FIFO of
waiting futures is all the bookkeeping needed (requests pipeline across each other).

Failure policy (serving must fail fast, then heal by itself):
- a lost connection fails every waiting request at once with RedisUnavailableError;
- the next request reconnects (connect timeout `connect_timeout_s`); after a failed
  connect, requests in the next `retry_interval_s` fail at once instead of each
  waiting for its own connect attempt;
- a reply slower than the caller's timeout closes the connection (its reply stream
  can no longer be trusted to be prompt) and raises RedisTimeoutError.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import hiredis

from featureline.config import RedisConfig
from featureline.errors import ServiceUnavailableError
from featureline.online_store.base import StoreReplyError, StoreTimeoutError, StoreUnavailableError
from featureline.online_store.near_cache import NearCache
from featureline.online_store.redis.connect import login_commands, ssl_context

Command = Sequence[bytes | str | int | float]

# The seam's errors under the names this client had before it moved here.
RedisUnavailableError = StoreUnavailableError
RedisTimeoutError = StoreTimeoutError
RedisReplyError = StoreReplyError


def pack_command(parts: Sequence[bytes | str | int | float]) -> bytes:
    """One command in RESP (hiredis, C): what `fetch` takes."""
    return hiredis.pack_command(tuple(parts))  # type: ignore[arg-type]


def _pack(*parts: str) -> bytes:
    return pack_command(parts)


class _Waiter:
    __slots__ = ("future", "expected", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []


class _Connection(asyncio.Protocol):
    """One TCP connection; replies are matched to waiters in FIFO order."""

    def __init__(self, address: str, on_lost: Callable[[], None] | None = None) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiters: deque[_Waiter] = deque()
        self._outgoing: list[bytes] = []
        self.closed = False
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            head = waiters[0]
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                waiters.popleft()
                if not head.future.done():
                    head.future.set_result(head.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = RedisUnavailableError(f"connection to Redis at {self.address} was lost")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if self.on_lost is not None:
            self.on_lost()

    def send(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisUnavailableError(f"not connected to Redis at {self.address}"))
            return future
        self.waiters.append(_Waiter(future, expected))
        # Requests of one loop iteration go out in one write (one syscall, and Redis
        # reads them in one go): auto-pipelining across concurrent requests.
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        if self._outgoing and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()  # connection_lost fails the waiters
        self.closed = True


class _InvalidationConnection(_Connection):
    """The connection CLIENT TRACKING redirects to (featureline.online_store.near_cache): pushed
    invalidation messages go to the cache, replies to our own commands to their waiters."""

    def __init__(self, address: str, cache: NearCache, on_lost: Callable[[], None]) -> None:
        super().__init__(address, on_lost)
        self.cache = cache

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self.cache.invalidate(reply[2])  # the keys, or None after FLUSHALL
                continue
            head = self.waiters[0]
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                self.waiters.popleft()
                if not head.future.done():
                    head.future.set_result(head.replies)


class _Expired(Exception):
    """A reply's timer ran out (turned into RedisTimeoutError by its caller)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class RedisClient:
    """Shared by every request of one process (one event loop). With a `near_cache`,
    reads are tracked and the cache is kept valid by Redis's invalidations."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout_s: float = 0.5,
        retry_interval_s: float = 0.2,
        near_cache: NearCache | None = None,
        tls: ssl.SSLContext | None = None,
        login: Sequence[Command] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        # TLS and AUTH/SELECT happen once per connection, before it is handed out:
        # the read path itself is the same with or without them.
        self.tls = tls
        self._login = b"".join(hiredis.pack_command(tuple(c)) for c in login)  # type: ignore[arg-type]
        self._login_count = len(login)
        self.connect_timeout_s = connect_timeout_s
        self.retry_interval_s = retry_interval_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._failed_at = 0.0
        self._last_error = ""
        self.near_cache = near_cache
        self._invalidations: _InvalidationConnection | None = None
        self._generation = 0

    @classmethod
    def from_config(cls, cfg: RedisConfig, **options: Any) -> RedisClient:
        """A client for the resolved online store: password/ACL user, db and TLS."""
        cfg.require_single_node()
        return cls(cfg.host, cfg.port, tls=ssl_context(cfg), login=login_commands(cfg), **options)

    async def _open(self, factory: Callable[[], _Connection]) -> Any:
        loop = asyncio.get_running_loop()
        server_hostname = self.host if self.tls is not None else None
        _, conn = await loop.create_connection(
            factory, self.host, self.port, ssl=self.tls, server_hostname=server_hostname
        )
        if self._login_count:
            for reply in await conn.send(self._login, self._login_count):
                if isinstance(reply, hiredis.ReplyError):
                    conn.close()
                    raise RedisUnavailableError(f"Redis at {self.address} refused the login: {reply}")
        return conn

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is not None:  # one connect attempt serves every waiter
            return await asyncio.shield(self._connecting)
        if time.monotonic() - self._failed_at < self.retry_interval_s:
            raise RedisUnavailableError(
                f"Redis at {self.address} is unavailable ({self._last_error}); retrying"
            )
        self._connecting = asyncio.get_running_loop().create_future()
        self._generation += 1
        try:
            proto = await asyncio.wait_for(self._connect(self._generation), self.connect_timeout_s)
        except (TimeoutError, OSError, ServiceUnavailableError) as exc:
            self._lost(self._generation)
            self._failed_at = time.monotonic()
            self._last_error = type(exc).__name__ if not str(exc) else str(exc)
            error = RedisUnavailableError(f"cannot connect to Redis at {self.address}: {self._last_error}")
            self._connecting.set_exception(error)
            self._connecting.exception()  # mark retrieved: waiters may be none
            self._connecting = None
            raise error from None
        self._connecting.set_result(proto)
        self._connecting = None
        return proto

    async def _connect(self, generation: int) -> _Connection:
        """A read connection; with a near cache, tracked before anyone may use it (an
        untracked read would be cached and never invalidated)."""

        def lost() -> None:
            self._lost(generation)

        conn: _Connection | None = None
        inv: _InvalidationConnection | None = None
        cache = self.near_cache
        try:
            conn = await self._open(lambda: _Connection(self.address, lost))
            if cache is not None:
                inv = await self._open(lambda: _InvalidationConnection(self.address, cache, lost))
                subscribe = _pack("CLIENT", "ID") + _pack("SUBSCRIBE", "__redis__:invalidate")
                client_id, _ = await inv.send(subscribe, 2)
                (ok,) = await conn.send(_pack("CLIENT", "TRACKING", "ON", "REDIRECT", str(client_id)), 1)
                if isinstance(ok, hiredis.ReplyError):
                    raise RedisReplyError(f"Redis refused CLIENT TRACKING: {ok}")
        except BaseException:
            for half in (conn, inv):
                if half is not None:
                    half.close()
            raise
        self._conn, self._invalidations = conn, inv
        return conn

    def _lost(self, generation: int) -> None:
        """A connection of `generation` is gone (or never came up): close its partner,
        and drop the cache, since invalidations may have been missed. A late call for
        an older generation does nothing."""
        if generation != self._generation:
            return
        if self.near_cache is not None:
            self.near_cache.clear()
        for conn in (self._conn, self._invalidations):
            if conn is not None and not conn.closed:
                conn.close()

    def fetch(
        self, commands: Sequence[bytes], keys: Sequence[bytes], timeout_s: float | None = None
    ) -> Coroutine[Any, Any, list[Any]]:
        """The seam's read (online_store.base.OnlineReader): RESP-packed commands, their
        replies in order. One node holds every key, so `keys` is not needed and the
        commands go out as one payload (one write, as many replies). A plain function
        returning the coroutine: no extra frame per request on the hot path."""
        return self.execute_packed(b"".join(commands), len(commands), timeout_s)

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None, *, raw: bool = False
    ) -> list[Any]:
        """Send pre-packed commands; returns their `expected` replies in order. An error
        reply raises RedisReplyError, unless `raw`: then it is returned as the
        hiredis.ReplyError it is (the cluster reader reads MOVED/ASK per command)."""
        conn = await self._connection()
        future = conn.send(payload, expected)
        if timeout_s is None:
            replies = await future
        else:
            # A timer on the reply's own future instead of asyncio.wait_for, which
            # costs an extra future and callbacks per call (~3 us at batch 1).
            timer = asyncio.get_running_loop().call_later(timeout_s, _expire, future)
            try:
                replies = await future
            except _Expired:
                conn.close()
                raise RedisTimeoutError(
                    f"Redis at {self.address} did not answer within {timeout_s * 1000:.0f} ms"
                ) from None
            finally:
                timer.cancel()
        if raw:
            return replies
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RedisReplyError(f"Redis error: {reply}")
        return replies

    def submit(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]] | None:
        """Send pre-packed commands on the open connection, without a coroutine: the
        future of their `expected` raw replies (error replies included), or None when
        not connected (then execute_packed, which connects). The cluster reader awaits
        one such future per node instead of a task per node. No timer: the caller's."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return conn.send(payload, expected)

    async def execute(self, commands: Sequence[Command], timeout_s: float | None = None) -> list[Any]:
        packed = [hiredis.pack_command(tuple(c)) for c in commands]  # type: ignore[arg-type]
        return await self.fetch(packed, (), timeout_s)

    async def ping(self, timeout_s: float = 0.5) -> bool:
        try:
            replies = await self.execute([(b"PING",)], timeout_s)
        except ServiceUnavailableError:
            return False
        return replies[0] in (b"PONG", "PONG")

    def close(self) -> None:
        for conn in (self._conn, self._invalidations):
            if conn is not None:
                conn.close()
        self._conn = self._invalidations = None
