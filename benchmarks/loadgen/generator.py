"""A small load generator for HTTP/1.1 and gRPC, used by `featureline bench serve`.

The same generator drives `feast serve` and ours, so the two are measured alike.

- HTTP: raw asyncio streams with keep-alive, one connection per concurrent caller;
  a response is read by its Content-Length (both servers send one). An HTTP client
  library (httpx ~400 us per call) would cap the rate below what the servers do.
- gRPC: grpc.aio unary calls on raw bytes (no message objects in the loop).
- closed loop (`run_closed`): `concurrency` callers, each sends its next request when the
  previous answer arrives: the peak rate at that concurrency. Callers that can `push`
  (HTTP here, the raw gRPC caller) are driven from their replies' callbacks: the next
  request leaves inside the previous reply's data_received, with no task, coroutine or
  future per request (the generator shares the 2 cores with the servers it measures).
- open loop (`run_open`): requests start on a fixed schedule whatever the answers do,
  and latency counts from the scheduled start, so a stall shows up as latency instead
  of silently slowing the schedule (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

Call = Callable[[bytes], Awaitable[bool]]  # one request -> ok?
Done = Callable[[bool], None]


@runtime_checkable
class Pushable(Protocol):
    """A caller that also takes a request with a callback for its outcome."""

    def push(self, body: bytes, done: Done) -> None: ...


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray  # closed loop: per call; open loop: from the scheduled start
    # Open loop only: from the actual send (the server's share), and how late the
    # generator sent (its own lag on a busy machine, plus waiting for a free caller).
    service_ms: np.ndarray | None = None
    lag_ms: np.ndarray | None = None
    # A generator that reports percentiles, not each call (wrk): p50, p90, p99, max.
    fixed_percentiles: tuple[float, float, float, float] | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if self.fixed_percentiles is not None:
            return dict(zip((50, 90, 99, 100), self.fixed_percentiles, strict=True))[int(q)]
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else 0.0

    def summary(self) -> dict[str, float]:
        out = {
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.pct(50), 3),
            "p90_ms": round(self.pct(90), 3),
            "p99_ms": round(self.pct(99), 3),
            "max_ms": round(
                self.pct(100)
                if self.fixed_percentiles or not len(self.latencies_ms)
                else float(self.latencies_ms.max()),
                3,
            ),  # fmt: skip
        }
        if self.service_ms is not None and self.lag_ms is not None and len(self.service_ms):
            out["service_p50_ms"] = round(float(np.percentile(self.service_ms, 50)), 3)
            out["service_p99_ms"] = round(float(np.percentile(self.service_ms, 99)), 3)
            out["lag_p99_ms"] = round(float(np.percentile(self.lag_ms, 99)), 3)
        return out


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class _HttpProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time. A Protocol
    (not streams): ~2x less generator CPU per request, which matters on 2 cores."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.callback: Done | None = None  # a pushed request's (then no waiter)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or (self.waiter is None and self.callback is None):
            return
        match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        callback, self.callback = self.callback, None
        if callback is not None:
            callback(status == 200)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        callback, self.callback = self.callback, None
        if callback is not None:
            callback(False)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


class HttpConnection:
    """Posts JSON bodies to one path over one keep-alive connection."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                 tls: ssl.SSLContext | None = None):  # fmt: skip
        self.host, self.port, self.tls = host, port, tls
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: "
        ).encode()
        self._proto: _HttpProtocol | None = None

    async def post(self, body: bytes) -> int:
        proto = self._proto
        if proto is None or proto.closed:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_HttpProtocol, self.host, self.port, ssl=self.tls)
            self._proto = proto
        assert proto.transport is not None
        proto.waiter = asyncio.get_running_loop().create_future()
        proto.transport.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        return await proto.waiter

    def send_now(self, body: bytes, done: Done) -> bool:
        """Send at once on an open connection, `done(status == 200)` on the reply;
        False (nothing sent) when the connection must be opened first."""
        proto = self._proto
        if proto is None or proto.closed or proto.transport is None:
            return False
        proto.callback = done
        proto.transport.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        return True

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


class _HttpCaller:
    """One caller of `http_callers`: awaitable, or pushed (run_closed)."""

    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn

    async def __call__(self, body: bytes) -> bool:
        try:
            status = await self.conn.post(body)
        except (OSError, ValueError):
            self.conn.close()
            return False
        return status == 200

    def push(self, body: bytes, done: Done) -> None:
        if not self.conn.send_now(body, done):  # (re)connect first: the awaitable path
            asyncio.ensure_future(self._after_connect(body, done))

    async def _after_connect(self, body: bytes, done: Done) -> None:
        done(await self(body))


def http_callers(
    host: str, port: int, path: str, n: int, headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> list[Call]:  # fmt: skip
    """`n` independent callers (one connection each); `tls`: HTTPS with this context."""
    return [_HttpCaller(HttpConnection(host, port, path, headers, tls)) for _ in range(n)]


def grpc_callers(
    target: str, method: str, n: int, channels: int = 2, credentials: Any = None
) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    """`n` callers sharing `channels` grpc.aio channels; returns (callers, close).
    `credentials`: grpc channel credentials (TLS); None: plaintext."""
    import grpc

    def channel() -> Any:
        if credentials is None:
            return grpc.aio.insecure_channel(target)
        return grpc.aio.secure_channel(target, credentials)

    opened = [channel() for _ in range(channels)]
    stubs = [ch.unary_unary(method) for ch in opened]

    def make(stub: Callable[..., Awaitable[bytes]]) -> Call:
        async def call(body: bytes) -> bool:
            try:
                await stub(body, timeout=5.0)
            except grpc.RpcError:
                return False
            return True

        return call

    async def close() -> None:
        for ch in opened:
            await ch.close()

    return [make(stubs[i % channels]) for i in range(n)], close


async def run_closed(callers: Sequence[Call], bodies: Sequence[bytes], seconds: float) -> LoadResult:
    """Every caller loops until `seconds` pass; bodies are taken in turn."""
    if callers and all(isinstance(c, Pushable) for c in callers):
        return await _run_pushed(cast(list[Pushable], list(callers)), bodies, seconds)
    stop = time.perf_counter() + seconds
    source = itertools.cycle(bodies)
    latencies: list[float] = []
    errors = 0

    async def loop(call: Call) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            start = time.perf_counter()
            ok = await call(next(source))
            latencies.append(time.perf_counter() - start)
            errors += not ok

    began = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in callers))
    elapsed = time.perf_counter() - began
    return LoadResult(len(latencies), errors, elapsed, np.array(latencies) * 1000)


async def _run_pushed(callers: Sequence[Pushable], bodies: Sequence[bytes], seconds: float) -> LoadResult:
    """run_closed's loop driven by the replies: each reply's callback sends its caller's
    next request (the same requests, order and latency clock as the awaited loop)."""
    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    stop = clock() + seconds
    source = itertools.cycle(bodies)
    latencies: list[float] = []
    errors = 0
    running = len(callers)
    finished: asyncio.Future[None] = loop.create_future()

    def start(caller: Pushable) -> None:
        nonlocal running
        sent = clock()
        if sent >= stop:
            running -= 1
            if not running and not finished.done():
                finished.set_result(None)
            return

        def done(ok: bool) -> None:
            nonlocal errors
            latencies.append(clock() - sent)
            errors += not ok
            start(caller)

        try:
            caller.push(next(source), done)
        except Exception:  # counted as a failed request; the next one goes on the next tick
            loop.call_soon(done, False)

    began = clock()
    for caller in callers:
        start(caller)
    await finished
    return LoadResult(len(latencies), errors, clock() - began, np.array(latencies) * 1000)


async def run_open(
    callers: Sequence[Call], bodies: Sequence[bytes], rate: float, seconds: float
) -> LoadResult:
    """Requests start on a fixed schedule (every 1/rate s), request i on caller
    i mod len(callers); latency counts from the scheduled start. A caller still busy
    when its next request is due sends it late, and the lateness counts as latency:
    a slow server cannot slow the schedule down (no coordinated omission). One loop
    per caller instead of a task per request keeps the generator cheap."""
    source = itertools.cycle(bodies)
    latencies: list[float] = []
    service: list[float] = []
    lags: list[float] = []
    errors = 0
    total = int(rate * seconds)
    began = time.perf_counter() + 0.01
    stride = len(callers)

    async def loop(k: int, call: Call) -> None:
        nonlocal errors
        for i in range(k, total, stride):
            scheduled = began + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            ok = await call(next(source))
            done = time.perf_counter()
            latencies.append(done - scheduled)
            service.append(done - sent)
            lags.append(sent - scheduled)
            errors += not ok

    await asyncio.gather(*(loop(k, c) for k, c in enumerate(callers)))
    elapsed = time.perf_counter() - began
    return LoadResult(
        len(latencies),
        errors,
        elapsed,
        np.array(latencies) * 1000,
        np.array(service) * 1000,
        np.array(lags) * 1000,
    )
