"""A small asyncio Redis client for the read path: pipelined, multiplexed, fail-fast.

Why not redis.asyncio: its pipeline costs ~150 us of Python per call, more than the
whole Redis round trip on localhost (~40 us). Here a request's commands are packed
into one write (`hiredis.pack_command`), replies are parsed by hiredis's C reader, and
many concurrent requests share one connection: Redis answers in order, so a FIFO of
waiting futures is all the bookkeeping needed (requests pipeline across each other;
the connection itself is online_store.redis.aio_connection).

Reads of `bulk_commands` commands or more go on a second connection, opened on the
first such read: Redis answers one connection in order, so a batch-1 read sent behind
a 10,000-command read waits for all of it. Measured on 2 shared cores (load ~2.5), 8
batch-1 readers beside back-to-back 10,000-command reads: batch-1 p99 43-59 ms on one
connection, 7.5-14 ms with the second one (0.3 ms with no large reads); what is left is
the event loop parsing the large read's replies. At load ~7: 118-240 ms against 32-108.

Failure policy (serving must fail fast, then heal by itself; one request's trouble is
never another's):
- a request slower than its timeout gets RedisTimeoutError; its replies, when they
  come, are read and dropped, and the connection stays open for the others;
- a connection is closed, failing every request waiting on it with
  RedisUnavailableError, when it is lost, when Redis sends nothing for
  `stall_timeout_s` while requests wait, or when the replies due to requests that gave
  up pass `max_abandoned` commands (aio_connection);
- the next request reconnects (connect timeout `connect_timeout_s`); after a failed
  connect, requests in the next `retry_interval_s` fail at once instead of each
  waiting for its own connect attempt.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import hiredis

from featureline.config import RedisConfig
from featureline.errors import ServiceUnavailableError
from featureline.online_store.base import StoreReplyError, StoreTimeoutError, StoreUnavailableError
from featureline.online_store.near_cache import NearCache
from featureline.online_store.redis.aio_connection import Connection, Expired, InvalidationConnection
from featureline.online_store.redis.connect import login_commands, ssl_context

Command = Sequence[bytes | str | int | float]

# The seam's errors under the names this client had before it moved here.
RedisUnavailableError = StoreUnavailableError
RedisTimeoutError = StoreTimeoutError
RedisReplyError = StoreReplyError

# 5 x serving's default 1 s request budget: by then every request of the last five
# budgets has timed out without a byte from Redis, which answers a live connection
# within milliseconds even when loaded. A stuck Redis (SIGSTOP, a partition without a
# reset, a long script) is left within 5-6.25 s (aio_connection.STALL_TICKS).
STALL_TIMEOUT_S: Final = 5.0
# ~0.3 s of Redis work at ~3 us an HMGET (10,000 in ~30 ms on 2 loaded cores): a request
# sent behind that many dropped replies can still make serving's 1 s default budget;
# it is also ten timed-out reads of the largest batch (10,000 entities, one view).
MAX_ABANDONED: Final = 100_000
# A 1,000-command read takes Redis ~3 ms: what a batch-1 read behind it may wait on the
# shared connection. Larger reads take the bulk connection.
BULK_COMMANDS: Final = 1_000


def pack_command(parts: Sequence[bytes | str | int | float]) -> bytes:
    """One command in RESP (hiredis, C): what `fetch` takes."""
    return hiredis.pack_command(tuple(parts))  # type: ignore[arg-type]


def _pack(*parts: str) -> bytes:
    return pack_command(parts)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a connect attempt's error retrieved: its waiters may all have gone."""
    if not task.cancelled():
        task.exception()


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
        stall_timeout_s: float = STALL_TIMEOUT_S,
        max_abandoned: int = MAX_ABANDONED,
        bulk_commands: int = BULK_COMMANDS,
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
        self.stall_timeout_s = stall_timeout_s
        self.max_abandoned = max_abandoned
        # Reads of this many commands or more take the bulk connection (0: never).
        self.bulk_commands = bulk_commands
        self._bulk_at = bulk_commands if bulk_commands > 0 else sys.maxsize
        self._conn: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._bulk: Connection | None = None
        self._bulk_connecting: asyncio.Task[Connection] | None = None
        self._failed_at = 0.0
        self._last_error = ""
        self.near_cache = near_cache
        self._invalidations: InvalidationConnection | None = None
        self._tracking_id = 0  # the invalidation connection's CLIENT ID (near cache)
        self._generation = 0

    @classmethod
    def from_config(cls, cfg: RedisConfig, **options: Any) -> RedisClient:
        """A client for the resolved online store: password/ACL user, db and TLS."""
        cfg.require_single_node()
        return cls(cfg.host, cfg.port, tls=ssl_context(cfg), login=login_commands(cfg), **options)

    def _new(self, lost: Callable[[], None]) -> Connection:
        return Connection(
            self.address, lost, stall_timeout_s=self.stall_timeout_s, max_abandoned=self.max_abandoned
        )

    async def _open(self, factory: Callable[[], Connection]) -> Any:
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

    async def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is None:
            if time.monotonic() - self._failed_at < self.retry_interval_s:
                raise RedisUnavailableError(
                    f"Redis at {self.address} is unavailable ({self._last_error}); retrying"
                )
            # A task of its own, so that a caller cancelled meanwhile (a reset gRPC
            # stream) cannot leave the others waiting on an attempt that never ends.
            self._connecting = asyncio.ensure_future(self._reconnect())
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    async def _reconnect(self) -> Connection:
        """One connect attempt; every request that needs it awaits this one."""
        self._generation += 1
        try:
            return await asyncio.wait_for(self._connect(self._generation), self.connect_timeout_s)
        except (TimeoutError, OSError, ServiceUnavailableError) as exc:
            self._lost(self._generation)
            self._failed_at = time.monotonic()
            self._last_error = type(exc).__name__ if not str(exc) else str(exc)
            raise RedisUnavailableError(
                f"cannot connect to Redis at {self.address}: {self._last_error}"
            ) from None
        finally:
            self._connecting = None

    async def _connect(self, generation: int) -> Connection:
        """A read connection; with a near cache, tracked before anyone may use it (an
        untracked read would be cached and never invalidated)."""

        def lost() -> None:
            self._lost(generation)

        conn: Connection | None = None
        inv: InvalidationConnection | None = None
        cache = self.near_cache
        try:
            conn = await self._open(lambda: self._new(lost))
            if cache is not None:
                inv = await self._open(lambda: InvalidationConnection(self.address, cache, lost))
                subscribe = _pack("CLIENT", "ID") + _pack("SUBSCRIBE", "__redis__:invalidate")
                client_id, _ = await inv.send(subscribe, 2)
                await self._track(conn, client_id)
                self._tracking_id = client_id
        except BaseException:
            for half in (conn, inv):
                if half is not None:
                    half.close()
            raise
        self._conn, self._invalidations = conn, inv
        return conn

    @staticmethod
    async def _track(conn: Connection, client_id: int) -> None:
        (ok,) = await conn.send(_pack("CLIENT", "TRACKING", "ON", "REDIRECT", str(client_id)), 1)
        if isinstance(ok, hiredis.ReplyError):
            raise RedisReplyError(f"Redis refused CLIENT TRACKING: {ok}")

    async def _bulk_connection(self) -> Connection:
        """The connection of large reads, opened on the first one (after the main one:
        its fail-fast, and with a near cache its invalidation connection)."""
        bulk = self._bulk
        if bulk is not None and not bulk.closed:
            return bulk
        await self._connection()
        if self._bulk_connecting is None:
            self._bulk_connecting = asyncio.ensure_future(self._reconnect_bulk())
            self._bulk_connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._bulk_connecting)

    async def _reconnect_bulk(self) -> Connection:
        try:
            return await asyncio.wait_for(self._connect_bulk(self._generation), self.connect_timeout_s)
        except (TimeoutError, OSError, ServiceUnavailableError) as exc:
            detail = str(exc) or type(exc).__name__
            raise RedisUnavailableError(
                f"cannot connect to Redis at {self.address} (bulk reads): {detail}"
            ) from None
        finally:
            self._bulk_connecting = None

    async def _connect_bulk(self, generation: int) -> Connection:
        cache = self.near_cache

        def lost() -> None:
            # Its reads' keys are no longer tracked: cached replies could go stale.
            if cache is not None:
                cache.clear()

        conn = await self._open(lambda: self._new(lost))
        try:
            if cache is not None:
                await self._track(conn, self._tracking_id)
            if generation != self._generation:  # reconnected meanwhile: tracked to a dead id
                raise RedisUnavailableError(f"the connection to Redis at {self.address} was replaced")
        except BaseException:
            conn.close()
            raise
        self._bulk = conn
        return conn

    def _lost(self, generation: int) -> None:
        """A connection of `generation` is gone (or never came up): close its partner,
        and drop the cache, since invalidations may have been missed. A late call for
        an older generation does nothing. With a near cache the bulk connection goes
        too: its tracking redirects to the invalidation connection."""
        if generation != self._generation:
            return
        if self.near_cache is not None:
            self.near_cache.clear()
        bulk = self._bulk if self.near_cache is not None else None
        for conn in (self._conn, self._invalidations, bulk):
            if conn is not None and not conn.closed:
                conn.close()

    def fetch(
        self, commands: Sequence[bytes], keys: Sequence[bytes], timeout_s: float | None = None
    ) -> Awaitable[list[Any]]:
        """The seam's read (online_store.base.OnlineReader): RESP-packed commands, their
        replies in order. One node holds every key, so `keys` is not needed and the
        commands go out as one payload (one write, as many replies). Connected (every
        read but the first after a connect): the connection's own future, settled by it
        (aio_connection.read), so a request costs no coroutine or task here."""
        expected = len(commands)
        conn = self._conn if expected < self._bulk_at else self._bulk
        if conn is not None and not conn.closed:
            return conn.read(b"".join(commands), expected, timeout_s)
        return self.execute_packed(b"".join(commands), expected, timeout_s)

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None, *, raw: bool = False
    ) -> list[Any]:
        """Send pre-packed commands, connecting first if needed; returns their
        `expected` replies in order. An error reply raises RedisReplyError, unless
        `raw`: then it is returned as the hiredis.ReplyError it is (the cluster reader
        reads MOVED/ASK per command) and a timeout raises RedisTimeoutError too."""
        if expected < self._bulk_at:
            conn = await self._connection()
        else:
            conn = await self._bulk_connection()
        if not raw:
            return await conn.read(payload, expected, timeout_s)
        future = conn.send(payload, expected)
        timer = None
        if timeout_s is not None:
            timer = asyncio.get_running_loop().call_later(timeout_s, conn.expire, future, expected)
        try:
            return await future
        except Expired:
            raise RedisTimeoutError(
                f"Redis at {self.address} did not answer within {(timeout_s or 0) * 1000:.0f} ms"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()

    def submit(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]] | None:
        """Send pre-packed commands on the open connection, without a coroutine: the
        future of their `expected` raw replies (error replies included), or None when
        not connected (then execute_packed, which connects). The cluster reader awaits
        one such future per node instead of a task per node. No timer: the caller's,
        which calls `expire`."""
        conn = self._conn if expected < self._bulk_at else self._bulk
        if conn is None or conn.closed:
            return None
        return conn.send(payload, expected)

    def expire(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        """The caller of `submit` gives up on `future` (its timer ran out): it fails with
        aio_connection.Expired, and its replies are dropped when they come. A future not
        yet done is one of the open connection's (a closed one's fail at once)."""
        conn = self._conn if expected < self._bulk_at else self._bulk
        if conn is not None:
            conn.expire(future, expected)
        elif not future.done():
            future.set_exception(Expired())

    async def execute(self, commands: Sequence[Command], timeout_s: float | None = None) -> list[Any]:
        packed = [hiredis.pack_command(tuple(c)) for c in commands]  # type: ignore[arg-type]
        return await self.fetch(packed, (), timeout_s)

    async def ping(self, timeout_s: float = 0.5) -> bool:
        try:
            replies = await self.execute([(b"PING",)], timeout_s)
        except ServiceUnavailableError:
            return False
        return replies[0] in (b"PONG", "PONG")

    def connections(self) -> int:
        """Connections open now (tests, metrics): reads, bulk reads, invalidations."""
        return sum(c is not None and not c.closed for c in (self._conn, self._bulk, self._invalidations))

    def close(self) -> None:
        for conn in (self._conn, self._bulk, self._invalidations):
            if conn is not None:
                conn.close()
        self._conn = self._bulk = self._invalidations = None
