"""One pipelined asyncio connection of the read client (online_store.redis.aio).

Redis answers a connection's commands in order, so a FIFO of waiters is all the
bookkeeping needed: each reply goes to the oldest waiter still short of replies.

A request that gives up (its timeout, or its task cancelled) does not touch the
connection: its waiter stays in the FIFO, marked only by its future being done, and
its replies are read and dropped when they come, so the order holds and every other
request on the connection goes on. The connection is closed (every waiter failed
with StoreUnavailableError, the client reconnects) only when Redis itself is stuck:
- no byte received for `stall_timeout_s` while requests wait (a watchdog timer per
  connection, not per request: it ticks every stall_timeout_s / STALL_TICKS while
  requests wait, and stops when none does);
- replies of requests that gave up pile past `max_abandoned` commands: every request
  sent after them waits for them first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from featureline.online_store.base import StoreUnavailableError
from featureline.online_store.near_cache import NearCache

# Stall detection granularity: the watchdog closes the connection after STALL_TICKS + 1
# ticks in a row with requests waiting and no byte received, so after between
# stall_timeout_s and 1.25 x that much silence. A tick is a timer every 1.25 s at the
# 5 s default: nothing per request.
STALL_TICKS = 4


class Expired(Exception):
    """A reply's timer ran out (turned into a timeout error by its caller)."""


class _Waiter:
    __slots__ = ("future", "expected", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []


class Connection(asyncio.Protocol):
    """One TCP connection; replies are matched to waiters in FIFO order."""

    def __init__(
        self,
        address: str,
        on_lost: Callable[[], None] | None = None,
        *,
        stall_timeout_s: float = 5.0,
        max_abandoned: int = 100_000,
    ) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiters: deque[_Waiter] = deque()
        self._outgoing: list[bytes] = []
        self.closed = False
        self.on_lost = on_lost
        self.stall_timeout_s = stall_timeout_s
        self.max_abandoned = max_abandoned
        # Replies still due to requests that gave up (commands, not requests).
        self.abandoned = 0
        self._quiet = 0  # watchdog ticks in a row with waiters and no byte received
        self._watchdog: asyncio.TimerHandle | None = None
        self._reason = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._quiet = 0
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            # _reply inlined: no method call per reply on the read path.
            head = waiters[0]
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                waiters.popleft()
                if not head.future.done():
                    head.future.set_result(head.replies)
                else:  # its request gave up: the replies are dropped here
                    self.abandoned -= head.expected

    def _reply(self, waiters: deque[_Waiter], reply: Any) -> None:
        head = waiters[0]
        head.replies.append(reply)
        if len(head.replies) == head.expected:
            waiters.popleft()
            if not head.future.done():
                head.future.set_result(head.replies)
            else:  # its request gave up: the replies are dropped here
                self.abandoned -= head.expected

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        error = StoreUnavailableError(self._reason or f"connection to Redis at {self.address} was lost")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if self.on_lost is not None:
            self.on_lost()

    def send(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(StoreUnavailableError(f"not connected to Redis at {self.address}"))
            return future
        self.waiters.append(_Waiter(future, expected))
        # Requests of one loop iteration go out in one write (one syscall, and Redis
        # reads them in one go): auto-pipelining across concurrent requests.
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(payload)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.stall_timeout_s / STALL_TICKS, self._tick)
        return future

    def _flush(self) -> None:
        if self._outgoing and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _tick(self) -> None:
        """The stall watchdog: runs while requests wait, closes a silent connection."""
        self._watchdog = None
        if self.closed:
            return
        if not self.waiters:
            self._quiet = 0
            self.abandoned = 0  # nothing is due: resync (a give-up counted after its pop)
            return
        self._quiet += 1
        if self._quiet > STALL_TICKS:
            self.close(
                f"Redis at {self.address} sent nothing for {self.stall_timeout_s:.1f} s while "
                f"{len(self.waiters)} requests waited; connection closed, reconnecting"
            )
            return
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self.stall_timeout_s / STALL_TICKS, self._tick)

    def expire(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        """A request's timer: fail its future with Expired; its replies are dropped."""
        if not future.done():
            future.set_exception(Expired())
            self.abandon(expected)

    def abandon(self, expected: int) -> None:
        """A request that was sent here gave up on its `expected` replies (expired or
        cancelled): count them, and close the connection past the cap."""
        if self.closed:
            return
        self.abandoned += expected
        if self.abandoned > self.max_abandoned:
            self.close(
                f"Redis at {self.address}: {self.abandoned} replies of timed-out requests "
                f"still due (cap {self.max_abandoned}); connection closed, reconnecting"
            )

    def close(self, reason: str = "") -> None:
        """Abort the connection; connection_lost fails the waiters with `reason`."""
        if self.transport is not None and not self.closed:
            self._reason = reason
            self.transport.abort()
        self.closed = True


class InvalidationConnection(Connection):
    """The connection CLIENT TRACKING redirects to (featureline.online_store.near_cache): pushed
    invalidation messages go to the cache, replies to our own commands to their waiters."""

    def __init__(
        self,
        address: str,
        cache: NearCache,
        on_lost: Callable[[], None],
        *,
        stall_timeout_s: float = 5.0,
        max_abandoned: int = 100_000,
    ) -> None:
        # Named, not **options: mypyc's build passed the options dict as the float
        # (TypeError "float object expected; got dict" on every near-cache connect).
        super().__init__(address, on_lost, stall_timeout_s=stall_timeout_s, max_abandoned=max_abandoned)
        self.cache = cache

    def data_received(self, data: bytes) -> None:
        self._quiet = 0
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self.cache.invalidate(reply[2])  # the keys, or None after FLUSHALL
                continue
            self._reply(self.waiters, reply)
