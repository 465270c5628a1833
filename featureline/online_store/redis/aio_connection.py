"""One pipelined asyncio connection of the read client (online_store.redis.aio).

Redis answers a connection's commands in order, so a FIFO of waiters is all the
bookkeeping needed: each reply goes to the oldest waiter still short of replies.

A request that gives up (its timeout, or its future cancelled) does not touch the
connection: its waiter stays in the FIFO, marked only by its future being done, and
its replies are read and dropped when they come, so the order holds and every other
request on the connection goes on.

`read` is the serving path's call: its future ends with the replies, StoreReplyError
(an error reply) or StoreTimeoutError (its timer), all settled here, so a request needs
no task or coroutine around it (the caller chains a callback on the future). The
connection keeps its event loop: asyncio.get_running_loop() costs a getpid() system
call per call on CPython 3.11. The connection is closed (every waiter failed
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
from typing import Any, Final

import hiredis

from featureline.online_store.base import StoreReplyError, StoreTimeoutError, StoreUnavailableError
from featureline.online_store.near_cache import NearCache

# Stall detection granularity: the watchdog closes the connection after STALL_TICKS + 1
# ticks in a row with requests waiting and no byte received, so after between
# stall_timeout_s and 1.25 x that much silence. A tick is a timer every 1.25 s at the
# 5 s default: nothing per request.
STALL_TICKS: Final = 4


class Expired(Exception):
    """A reply's timer ran out (turned into a timeout error by its caller)."""


class _Waiter:
    __slots__ = ("future", "expected", "replies", "timer", "checked", "timeout_s", "counted")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int, checked: bool = False,
                 timeout_s: float = 0.0) -> None:  # fmt: skip
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []
        self.timer: asyncio.TimerHandle | None = None
        self.checked = checked  # an error reply fails the future (StoreReplyError)
        self.timeout_s = timeout_s
        self.counted = False  # its replies are counted in the connection's `abandoned`


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
        self.loop: asyncio.AbstractEventLoop | None = None
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
        self.loop = asyncio.get_running_loop()

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
                self._complete(head)

    def _reply(self, waiters: deque[_Waiter], reply: Any) -> None:
        head = waiters[0]
        head.replies.append(reply)
        if len(head.replies) == head.expected:
            waiters.popleft()
            self._complete(head)

    def _complete(self, waiter: _Waiter) -> None:
        """A waiter's replies are all in: its future gets them, or they are dropped (its
        request gave up)."""
        if waiter.timer is not None:
            waiter.timer.cancel()
        if waiter.counted:
            self.abandoned -= waiter.expected
        future = waiter.future
        if future.done():
            return
        if waiter.checked:
            for reply in waiter.replies:
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(StoreReplyError(f"Redis error: {reply}"))
                    return
        future.set_result(waiter.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        error = StoreUnavailableError(self._reason or f"connection to Redis at {self.address} was lost")
        while self.waiters:
            waiter = self.waiters.popleft()
            if waiter.timer is not None:
                waiter.timer.cancel()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if self.on_lost is not None:
            self.on_lost()

    def send(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]]:
        """Pre-packed commands; the future of their `expected` raw replies (error
        replies included). No timer: a caller that gives up calls `expire`."""
        return self._send(payload, expected, False, None)

    def read(self, payload: bytes, expected: int, timeout_s: float | None) -> asyncio.Future[list[Any]]:
        """Pre-packed read commands; the future of their replies, or of StoreReplyError
        (an error reply) or StoreTimeoutError (none within `timeout_s`; its replies are
        dropped when they come)."""
        return self._send(payload, expected, True, timeout_s)

    def _send(self, payload: bytes, expected: int, checked: bool,
              timeout_s: float | None) -> asyncio.Future[list[Any]]:  # fmt: skip
        loop = self.loop
        if loop is None:
            loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(StoreUnavailableError(f"not connected to Redis at {self.address}"))
            return future
        waiter = _Waiter(future, expected, checked, timeout_s or 0.0)
        if timeout_s is not None:
            # A timer per read (~1 us with its cancel) instead of asyncio.wait_for (a
            # task and its callbacks).
            waiter.timer = loop.call_later(timeout_s, self._timed_out, waiter)
        self.waiters.append(waiter)
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

    def _timed_out(self, waiter: _Waiter) -> None:
        """A read's timer ran out before its replies came: they are dropped when they
        do. Counted even when its future was cancelled meanwhile (they are still due)."""
        waiter.timer = None
        if not waiter.future.done():
            waiter.future.set_exception(StoreTimeoutError(
                f"Redis at {self.address} did not answer within {waiter.timeout_s * 1000:.0f} ms"
            ))  # fmt: skip
        self._abandon(waiter)

    def expire(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        """The timer of a `send` caller ran out: its future fails with Expired, and its
        replies are dropped when they come. Rare (a timeout): the waiter is searched."""
        if future.done():
            return
        future.set_exception(Expired())
        for waiter in self.waiters:
            if waiter.future is future:
                self._abandon(waiter)
                return

    def _abandon(self, waiter: _Waiter) -> None:
        """Count the replies still due to a request that gave up; close the connection
        past the cap."""
        if self.closed or waiter.counted:
            return
        waiter.counted = True
        self.abandoned += waiter.expected
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
