"""`featureline bench serve_path`: the serving read path's CPU per request, in process.

What a worker spends on a batch-1 request besides the client's socket: the REST
handler fed raw HTTP/1.1 bytes through the real HTTP server's parser (a transport that
keeps the reply instead of a socket), and the gRPC method called with the request
message; both read the real Redis. `--concurrency` requests stay in flight in one
event loop, as on a worker, so Redis round trips pipeline as they do there. Printed:
CPU microseconds per request (this process: user + system, so the Redis socket's
system calls count), the median of `--rounds` rounds, and the rate.

Why in process: on the 2-core machine `bench serve`'s generator, Redis and two workers
share the cores, so a change of a few microseconds moves its throughput by less than
its run-to-run noise; this measures the same code path with none of that. No Feast
side: it is a measure of our path, not a comparison (`bench serve` is that).
The data are `bench serve`'s (same users, same Feast-written rows, same bodies).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=30_000, help="per round (default 30000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is printed (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--users", type=int, default=10_000, help="card holders (default 10000)")
    parser.add_argument("--bodies", type=int, default=5_000, help="distinct request bodies (default 5000)")


class _Transport:
    """Where the HTTP server writes a reply: handed to the caller, nothing sent."""

    def __init__(self, on_write: Callable[[bytes], None]) -> None:
        self.on_write = on_write

    def write(self, data: bytes) -> None:
        self.on_write(data)

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def close(self) -> None:
        pass


async def _rest_rounds(core: Any, bodies: list[bytes], args: Any) -> list[float]:
    from featureline.serving_api.http_server import HttpConnection, HttpServer
    from featureline.serving_api.rest_app import RestHandlers

    server = HttpServer(RestHandlers(core).routes(), None, core.limits)
    requests = [
        b"POST /get-online-features HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in bodies
    ]

    async def round_() -> float:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        sent = [0]

        def connection(slot: int) -> HttpConnection:
            conn = HttpConnection(server)

            def on_write(reply: bytes) -> None:
                if done.done():
                    return  # the round ended (or failed): this connection stops
                if not reply.startswith(b"HTTP/1.1 200"):
                    done.set_exception(RuntimeError(reply[:300].decode(errors="replace")))
                    return
                sent[0] += 1
                if sent[0] >= args.requests:
                    done.set_result(None)
                    return
                loop.call_soon(conn.data_received, requests[(sent[0] + slot) % len(requests)])

            conn.connection_made(_Transport(on_write))  # type: ignore[arg-type]
            return conn

        conns = [connection(i) for i in range(args.concurrency)]
        cpu = time.process_time()
        for i, conn in enumerate(conns):
            conn.data_received(requests[i])
        await done
        return (time.process_time() - cpu) / args.requests * 1e6

    return [await round_() for _ in range(args.rounds + 1)][1:]  # the first warms the caches


async def _grpc_rounds(core: Any, messages: list[bytes], args: Any) -> list[float]:
    from featureline.serving_api.grpc_methods import CallInfo, FeatureMethods

    method = FeatureMethods(core).get_online
    call = CallInfo()

    async def round_() -> float:
        remaining = [args.requests]

        async def caller(slot: int) -> None:
            i = slot
            while remaining[0] > 0:
                remaining[0] -= 1
                result = method(messages[i % len(messages)], call)
                if not isinstance(result, bytes):
                    await result
                i += args.concurrency

        cpu = time.process_time()
        await asyncio.gather(*(caller(i) for i in range(args.concurrency)))
        return (time.process_time() - cpu) / args.requests * 1e6

    return [await round_() for _ in range(args.rounds + 1)][1:]


def _report(name: str, per_request: list[float]) -> None:
    median = statistics.median(per_request)
    spread = ", ".join(f"{x:.1f}" for x in per_request)
    print(f"  {name:<28} {median:7.1f} us CPU/request (median; rounds: {spread})", flush=True)


def run(args: Any, settings: Settings) -> int:
    import uvloop

    from benchmarks.serve import setup
    from benchmarks.serve.phases import Workload
    from featureline.online_store.redis.aio import RedisClient
    from featureline.online_store.redis.connect import plain_client
    from featureline.repo import load_repo
    from featureline.serving_api.limits import Limits
    from featureline.serving_api.service import ServingCore

    home = settings.home / "bench-serve-path" / time.strftime("%Y%m%d-%H%M%S")
    bench = setup.bench_settings(settings, home)
    redis = setup.start_redis(bench)
    try:
        repo = load_repo(bench)
        keys = setup.entity_values(repo, args.users)
        print(f"writing data for {args.users} users (as bench serve) ...", file=sys.stderr, flush=True)
        setup.load_plain(setup.feast_apply(bench), repo, keys, seed=1)
        setup.load_tiles(plain_client(port=bench.redis_port), repo, keys, seed=2)
        workload = Workload.build(repo, keys, "fraud_model_v1", seed=3, single_bodies=args.bodies)
        rest, grpc = workload.rest(1), workload.grpc(1)

        async def main() -> None:
            client = RedisClient("127.0.0.1", bench.redis_port)
            core = ServingCore(repo, client, Limits())
            gc.collect()
            gc.freeze()  # as a worker does after startup (server.tune_gc)
            print(f"batch 1, plain views, {args.concurrency} in flight, {args.requests} requests a round:")
            _report("REST /get-online-features", await _rest_rounds(core, rest, args))
            _report("gRPC GetOnlineFeatures", await _grpc_rounds(core, grpc, args))
            client.close()

        uvloop.run(main())
    finally:
        redis.stop()
    return 0
