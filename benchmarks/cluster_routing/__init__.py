"""`featureline bench cluster_routing`: what routing by hash slot costs the serving path.

A micro benchmark of the Redis Cluster reader (featureline.online_store.redis.cluster_aio),
in one process on loopback:

- per key: redis-py's `redis.crc.key_slot`, the reader's `slot_of` (the same CRC16 with
  the hash-tag scan skipped for keys without "{"), and a dict lookup (what a per-key slot
  cache would cost on a hit), on Feast-like keys (~45 bytes);
- per request: `ClusterReader.route` (node of every command, through its per-key
  cache, warm here, and the stable order by node) at each batch, and a whole `fetch`
  against node clients that answer at once (the reader's client CPU without I/O);
- end to end: one `fetch` of `batch` keys x 2 commands on a local 3-primary cluster vs
  `RedisClient.fetch` of the same commands on one Redis (same binary, same machine,
  same run, uvloop as in `featureline serve`), and the same Redis sent the commands in
  3 payloads on 3 connections (the reader's fan-out without 3 server processes: what
  is left of the overhead is the nodes' own wake-ups), sequential (latency):
  the two alternate in blocks of --repeat/10 calls, so a change of the machine's load
  hits both, and the median of each is reported.

Prints a table and one JSON line (`{"bench": "cluster_routing", ...}`). argparse only at
import time; redis, hiredis and the servers load inside `run`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from featureline.settings import Settings

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batches", default="1,100,1000", help="entities per request, comma separated (default 1,100,1000)"
    )
    parser.add_argument("--repeat", type=int, default=300, help="fetches per batch size (default 300)")
    parser.add_argument("--no-servers", action="store_true", help="only the in-process parts (no Redis)")


def _keys(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    # Feast's key: serialized entity key (~35 bytes for one int64 join key) + project.
    return [b"\x02\x00\x00\x00user_id" + rng.randbytes(28) + b"featureline_demo" for _ in range(n)]


def _per_call_ns(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def _per_key(keys: Sequence[bytes]) -> dict[str, float]:
    from featureline.online_store.redis.cluster import key_slot
    from featureline.online_store.redis.cluster_aio import slot_of

    cache = {k: key_slot(k) for k in keys}
    n = len(keys)
    return {
        "redis.crc.key_slot": _per_call_ns(lambda: [key_slot(k) for k in keys], 20) / n,
        "slot_of": _per_call_ns(lambda: [slot_of(k) for k in keys], 20) / n,
        "dict hit": _per_call_ns(lambda: [cache[k] for k in keys], 20) / n,
    }


class _Instant:
    """A node client that answers at once (no I/O): what the reader's own work costs."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None, *, raw: bool = False
    ) -> list[Any]:
        return [[b"1", None]] * expected  # an HMGET's reply: a value and a missing field

    def submit(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        future.set_result([[b"1", None]] * expected)
        return future

    def expire(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        pass  # its futures are done at once

    async def ping(self, timeout_s: float = 0.5) -> bool:
        return True

    def close(self) -> None:
        pass


def _client_cpu(batches: Sequence[int]) -> dict[int, dict[str, float]]:
    """route() and a whole fetch() per request against _Instant nodes, in us."""
    import uvloop

    from featureline.online_store.redis.aio import pack_command
    from featureline.online_store.redis.cluster import ClusterNode, SlotMap, SlotRange
    from featureline.online_store.redis.cluster_aio import ClusterReader

    nodes = [ClusterNode("10.0.0.1", 7000 + i, f"{i:040x}") for i in range(3)]
    ranges = [
        SlotRange(0, 5460, nodes[0]),
        SlotRange(5461, 10922, nodes[1]),
        SlotRange(10923, 16383, nodes[2]),
    ]

    def instant(host: str, port: int, cache: Any) -> Any:
        return _Instant(f"{host}:{port}")

    async def measure() -> dict[int, dict[str, float]]:
        reader = ClusterReader(SlotMap.build(ranges, nodes[0].address), instant)
        out: dict[int, dict[str, float]] = {}
        for batch in batches:
            keys = [k for k in _keys(batch) for _ in range(2)]  # 2 commands per entity
            commands = [pack_command((b"HMGET", k, b"f", b"g")) for k in keys]
            calls = max(20, 20_000 // len(keys))
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter_ns()
                for _ in range(calls):
                    await reader.fetch(commands, keys, 1.0)
                best = min(best, (time.perf_counter_ns() - start) / calls)
            route_ns = _per_call_ns(functools.partial(reader.route, keys), calls)
            out[batch] = {"route_us": route_ns / 1000, "fetch_us": best / 1000}
        reader.close()
        return out

    return uvloop.run(measure())


async def _alternating_medians(
    calls: dict[str, Callable[[], Any]], repeat: int, blocks: int = 10
) -> dict[str, float]:
    """Median latency (us) of each call; the calls take turns in `blocks` blocks, so a
    change of the machine's load hits all of them alike."""
    for call in calls.values():
        for _ in range(20):  # connect, warm the per-key caches
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(blocks):
        for name, call in calls.items():
            for _ in range(max(1, repeat // blocks)):
                start = time.perf_counter_ns()
                await call()
                times[name].append((time.perf_counter_ns() - start) / 1000)
    return {name: statistics.median(values) for name, values in times.items()}


async def _fetches(
    single_port: int, cluster_cfg: Any, batches: Sequence[int], repeat: int
) -> dict[int, dict[str, float]]:
    """Per batch, median us of: one Redis (one payload), the same Redis through 3
    connections (the commands cut in 3 payloads, sent as the reader sends them: its
    client-side fan-out without more server processes), and the cluster."""
    from featureline.online_store.redis.aio import RedisClient, pack_command
    from featureline.online_store.redis.cluster_aio import ClusterReader
    from featureline.online_store.redis.cluster_fanout import send_all

    single = RedisClient("127.0.0.1", single_port)
    thirds = [RedisClient("127.0.0.1", single_port) for _ in range(3)]
    cluster = ClusterReader.from_config(cluster_cfg, RedisClient)
    out: dict[int, dict[str, float]] = {}
    try:
        for batch in batches:
            keys = [k for k in _keys(batch) for _ in range(2)]
            commands = [pack_command((b"HMGET", k, b"f", b"g")) for k in keys]
            n = len(commands)
            cuts = [commands[i * n // 3 : (i + 1) * n // 3] for i in range(3)]

            async def fan_out(cuts: list[list[bytes]] = cuts) -> list[list[Any]]:
                sends = [(c, b"".join(cut), len(cut)) for c, cut in zip(thirds, cuts, strict=True) if cut]
                return await send_all(sends, 5.0, lambda: None)

            medians = await _alternating_medians(
                {
                    "single_us": functools.partial(single.fetch, commands, keys, 5.0),
                    "single_3conn_us": fan_out,
                    "cluster_us": functools.partial(cluster.fetch, commands, keys, 5.0),
                },
                repeat,
            )
            out[batch] = {**medians, "overhead": medians["cluster_us"] / medians["single_us"] - 1}
    finally:
        for client in [single, *thirds]:
            client.close()
        cluster.close()
    return out


def _servers_run(batches: Sequence[int], repeat: int) -> dict[int, dict[str, float]]:
    import uvloop

    from featureline.cli.devstack import free_port, redis_binary
    from featureline.cli.devstack.probes import redis_answers
    from featureline.cli.devstack.processes import spawn, terminate
    from featureline.cli.devstack.redis_cluster import free_cluster_ports, start_cluster, stop_nodes
    from featureline.config import RedisConfig

    home = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    port = free_port()
    binary = redis_binary()
    argv = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    pid = spawn(argv, home / "single.log", cwd=home)
    nodes = start_cluster("127.0.0.1", free_cluster_ports(3), home, _layout(0))
    try:
        while not redis_answers("127.0.0.1", port):
            time.sleep(0.05)
        seeds = tuple((n.host, n.port) for n in nodes)
        cfg = RedisConfig(redis_type="redis_cluster", host=seeds[0][0], port=seeds[0][1], nodes=seeds)
        return uvloop.run(_fetches(port, cfg, batches, repeat))
    finally:
        stop_nodes(nodes)
        terminate(pid, binary)


def _layout(replicas: int) -> Any:
    from featureline.cli.devstack.redis_cluster import ClusterLayout

    return ClusterLayout(primaries=3, replicas=replicas)


def run(args: argparse.Namespace, settings: Settings) -> int:
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()
    per_key = _per_key(_keys(10_000))
    print("slot of one key (ns):  " + "  ".join(f"{name} {ns:.0f}" for name, ns in per_key.items()))
    cpu = _client_cpu(batches)
    print("client CPU per request, 2 commands per entity (us), nodes that answer at once:")
    for batch, row in cpu.items():
        print(f"  batch {batch:>5}: route() {row['route_us']:>7.1f}   whole fetch() {row['fetch_us']:>7.1f}")
    fetches = {} if args.no_servers else _servers_run(batches, args.repeat)
    if fetches:
        print(f"{'batch':>6} {'one Redis':>10} {'one Redis, 3 conns':>19} {'3-primary cluster':>18}"
              f" {'overhead':>9}  (median us per fetch)")  # fmt: skip
        for batch, row in fetches.items():
            print(f"{batch:>6} {row['single_us']:>10.0f} {row['single_3conn_us']:>19.0f} "
                  f"{row['cluster_us']:>18.0f} {row['overhead']:>9.0%}")  # fmt: skip
    load = [load_before, os.getloadavg()]
    print(f"load average (1/5/15 min) before {load[0]}, after {load[1]} ({os.cpu_count()} CPUs)")
    print(json.dumps({"bench": "cluster_routing", "per_key_ns": per_key, "client_us": cpu,
                      "fetch": fetches, "loadavg": load}))  # fmt: skip
    return 0
