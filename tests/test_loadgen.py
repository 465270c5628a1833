"""The bench's load generator (benchmarks/loadgen): the closed loop counts every reply
once, its outcome right, whether it is driven by awaits or by the replies' callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import uvloop

from benchmarks.loadgen.generator import Pushable, http_callers, run_closed
from benchmarks.loadgen.grpc_raw import raw_grpc_callers

METHOD = "/test.Echo/Call"


@asynccontextmanager
async def http_server(seen: list[bytes]) -> AsyncIterator[int]:
    """Keep-alive HTTP/1.1: 200, except 500 for a body starting with b"bad"."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                seen.append(body)
                status = b"500 Internal Server Error" if body.startswith(b"bad") else b"200 OK"
                writer.write(b"HTTP/1.1 %s\r\ncontent-length: 2\r\n\r\n{}" % status)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@asynccontextmanager
async def grpc_server(seen: list[bytes]) -> AsyncIterator[int]:
    """A unary method echoing the request, INVALID_ARGUMENT for b"bad..."."""

    async def call(request: bytes, context: Any) -> bytes:
        seen.append(request)
        if request.startswith(b"bad"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
        return request

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


def run(main: Callable[[], Any]) -> Any:
    return uvloop.run(main())


@pytest.mark.parametrize("pushed", [True, False])
def test_http_closed_loop_counts_each_reply_once(pushed: bool) -> None:
    bodies = [b"ok-1", b"bad-2", b"ok-3", b"ok-4"]

    async def main() -> tuple[Any, list[bytes]]:
        seen: list[bytes] = []
        async with http_server(seen) as port:
            callers = http_callers("127.0.0.1", port, "/x", 3)
            assert all(isinstance(c, Pushable) for c in callers)
            if not pushed:  # the awaited loop: plain coroutines, no push
                callers = [lambda body, c=c: c(body) for c in callers]
            return await run_closed(callers, bodies, 0.5), seen

    result, seen = run(main)
    assert result.requests == len(seen) > 50  # every request sent was answered and counted
    assert result.errors == sum(b.startswith(b"bad") for b in seen) > 0
    assert len(result.latencies_ms) == result.requests and result.latencies_ms.min() > 0
    assert sorted(seen[:3]) == sorted(bodies[:3])  # bodies are taken in turn


def test_http_pushed_caller_reconnects_after_the_server_closes() -> None:
    async def main() -> Any:
        seen: list[bytes] = []
        async with http_server(seen) as port:
            callers = http_callers("127.0.0.1", port, "/x", 1)
            first = await run_closed(callers, [b"ok"], 0.2)
            callers[0].conn.close()  # type: ignore[attr-defined]
            second = await run_closed(callers, [b"ok"], 0.2)
        return first, second

    first, second = run(main)
    assert first.requests > 10 and second.requests > 10 and first.errors == second.errors == 0


def test_raw_grpc_closed_loop_reads_grpc_status() -> None:
    bodies = [b"ok-1", b"bad-2", b"ok-3"]

    async def main() -> tuple[Any, list[bytes]]:
        seen: list[bytes] = []
        async with grpc_server(seen) as port:
            callers, close = raw_grpc_callers("127.0.0.1", port, METHOD, 2)
            try:
                return await run_closed(callers, bodies, 0.5), seen
            finally:
                await close()

    result, seen = run(main)
    assert result.requests == len(seen) > 50
    assert result.errors == sum(b.startswith(b"bad") for b in seen) > 0
