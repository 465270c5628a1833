"""`featureline bench serve --online-store single,cluster`: the same data in one Redis and
in a local 3-primary Redis Cluster (featureline.cli.devstack.redis_cluster, same
redis-server binary, same machine), one `featureline serve` on each, measured in the
same run (the cost of cluster routing per request and per entity).

The data is written once, into the single Redis (Feast's rows and our tiles, see
setup.py), then every key is copied to the cluster with DUMP / RESTORE, routed by hash
slot: both servers read the same bytes. The cluster has no replicas by default (reads go
to primaries only; a replica would only add replication CPU on the machine).

Each comparison runs single, cluster, cluster, single (each --seconds long) and pools
both runs of a side: a load that drifts during the phase hits both sides alike.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from benchmarks.loadgen.generator import LoadResult
from benchmarks.serve import setup
from featureline.settings import Settings

STORES = ("single", "cluster")
# Issue 13's goal: a cluster read at most 15% slower than one node, at batch 100 and 1,000.
GOAL_OVERHEAD = 0.15
_COPY_BATCH = 1000  # keys per SCAN page and per pipelined DUMP / RESTORE


def parse_stores(text: str) -> list[str]:
    from featureline.errors import BadInputError

    stores = [s.strip() for s in text.split(",") if s.strip()]
    if not stores or any(s not in STORES for s in stores) or stores[0] != "single":
        raise BadInputError(f"--online-store {text!r}: 'single' or 'single,cluster'")
    return stores


def start_cluster(bench: Settings, primaries: int, replicas: int) -> list[Any]:
    """`primaries` primaries (and `replicas` replicas each) on free loopback ports,
    under the bench's home; the nodes, stopped by stop_cluster."""
    from featureline.cli.devstack.redis_cluster import ClusterLayout, free_cluster_ports, start_cluster

    layout = ClusterLayout(primaries=primaries, replicas=replicas).check()
    home = bench.home / "redis-cluster"
    nodes: list[Any] = start_cluster("127.0.0.1", free_cluster_ports(layout.size), home, layout)
    return nodes


def stop_cluster(nodes: list[Any]) -> None:
    from featureline.cli.devstack.redis_cluster import stop_nodes

    stop_nodes(nodes)


def copy_to_cluster(source_port: int, seed: tuple[str, int]) -> int:
    """Every key of the single Redis, DUMP then RESTORE on the primary of its slot;
    returns the keys copied."""
    from featureline.config import RedisConfig
    from featureline.online_store.redis.cluster import discover, key_slot
    from featureline.online_store.redis.connect import plain_client

    owners = discover(RedisConfig(redis_type="redis_cluster", host=seed[0], port=seed[1])).owners()
    source = plain_client(port=source_port)
    targets: dict[str, Any] = {}
    copied = 0
    for keys in _pages(source):
        dump = source.pipeline(transaction=False)
        for key in keys:
            dump.dump(key)
        pipes: dict[str, Any] = {}
        for key, value in zip(keys, dump.execute(), strict=True):
            node = owners[key_slot(key)]
            if value is None or node is None:  # expired meanwhile; a hole is refused by discover
                continue
            if node.address not in targets:
                targets[node.address] = plain_client(host=node.host, port=node.port)
            pipe = pipes.setdefault(node.address, targets[node.address].pipeline(transaction=False))
            pipe.restore(key, 0, value, replace=True)
            copied += 1
        for pipe in pipes.values():
            pipe.execute()
    for client in [source, *targets.values()]:
        client.close()
    return copied


def _pages(client: Any) -> Any:
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, count=_COPY_BATCH)
        if keys:
            yield keys
        if cursor == 0:
            return


def start_server(bench: Settings, args: Any, seed: tuple[str, int], procs: list[Any]) -> dict[str, int]:
    """`featureline serve` on the cluster (redis_type redis_cluster, the first node as
    the seed), with the same flags as the single-Redis server."""
    from featureline.cli.devstack import free_ports

    http, grpc = free_ports(2)
    cluster = dataclasses.replace(bench, redis_host=seed[0], redis_port=seed[1])
    proc = setup.spawn("featureline-serve-cluster", [
        sys.executable, "-m", "featureline.cli", "serve", "--repo", str(bench.repo),
        "--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
        "--workers", str(args.workers), "--max-in-flight", "4096",
        "--near-cache-keys", str(args.near_cache_keys),
    ], cluster, env={"FEATURELINE_REDIS_TYPE": "redis_cluster"})  # fmt: skip
    procs.append(proc)
    setup.wait_port(proc, "127.0.0.1", http)
    setup.wait_port(proc, "127.0.0.1", grpc)
    return {"cluster_http": http, "cluster_grpc": grpc}


def _pooled(a: LoadResult, b: LoadResult) -> LoadResult:
    return LoadResult(a.requests + b.requests, a.errors + b.errors, a.seconds + b.seconds,
                      np.concatenate([a.latencies_ms, b.latencies_ms]))  # fmt: skip


Measure = Callable[[int, int], Awaitable[LoadResult]]  # (http port, grpc port) -> result


async def compare(w: Any, s: dict[str, Any], r: Any, conc: int, secs: float) -> None:
    """One Redis against the cluster: batch 1 (REST, closed loop), batch 100 (REST,
    concurrency 1 and --concurrency), batch 1000 (tensor call, plain views and the
    whole feature service); the overhead of each, against the goal at 100 and 1000."""
    from benchmarks.serve.phases import FEAST_GRPC_METHOD, TENSOR_METHOD, _grpc, _rest

    b1, b1g, b100 = w.rest(1), w.grpc(1), w.rest(100)
    plain, full = w.tensor(1000, False), w.tensor(1000, True)
    # (phase, batch, figure compared, measure, issue 13's goal applies)
    phases: list[tuple[str, int, str, Measure, bool]] = [
        ("batch 1 REST", 1, "rps", lambda h, g: _rest(h, b1, conc, secs), False),
        ("batch 1 gRPC", 1, "rps", lambda h, g: _grpc(g, FEAST_GRPC_METHOD, b1g, conc, secs), False),
        ("batch 100 REST c=1", 100, "p50_ms", lambda h, g: _rest(h, b100, 1, secs), True),
        (f"batch 100 REST c={conc}", 100, "rps", lambda h, g: _rest(h, b100, conc, secs), False),
        ("batch 1000 tensor, plain views", 1000, "p50_ms",
         lambda h, g: _grpc(g, TENSOR_METHOD, plain, 1, secs, raw=False), True),
        (f"batch 1000 tensor, {w.service}", 1000, "p50_ms",
         lambda h, g: _grpc(g, TENSOR_METHOD, full, 1, secs, raw=False), False),
    ]  # fmt: skip
    print(f"one Redis vs {s['cluster_primaries']}-primary cluster (runs single, cluster, cluster, single;"
          " pooled):", flush=True)  # fmt: skip
    ports = {"single": (s["ours_http"], s["ours_grpc"]), "cluster": (s["cluster_http"], s["cluster_grpc"])}
    for phase, batch, figure, measure, goal in phases:
        runs: dict[str, list[LoadResult]] = {"single": [], "cluster": []}
        for side in ("single", "cluster", "cluster", "single"):
            runs[side].append(await measure(*ports[side]))
        one = r.add(phase, "fl-single", _pooled(*runs["single"]))
        many = r.add(phase, "fl-cluster", _pooled(*runs["cluster"]))
        _overhead(r, phase, batch, figure, one[figure], many[figure], goal)


def _overhead(r: Any, phase: str, batch: int, figure: str, one: float, many: float, goal: bool) -> None:
    """Cluster over one node: extra p50 latency (per request and per entity), or the
    extra time per request that its lower req/s means."""
    if not one or not many:
        return
    cost = many / one - 1 if figure == "p50_ms" else one / many - 1
    row: dict[str, Any] = {"phase": f"{phase}: cluster overhead", "figure": figure,
                           "overhead": round(cost, 3)}  # fmt: skip
    if figure == "p50_ms":
        extra_us = (many - one) * 1000
        row["extra_us_per_entity"] = round(extra_us / batch, 2)
        what = f"p50 ({extra_us:+.0f} us a request, {extra_us / batch:+.2f} us an entity)"
    else:
        what = "time per request at this concurrency (from req/s)"
    text = f"  => {phase}: cluster {cost:+.0%} {what}"
    if goal:
        row["met"] = cost <= GOAL_OVERHEAD
        text += f" (goal <= {GOAL_OVERHEAD:.0%}: {'met' if row['met'] else 'NOT met'})"
    r.rows.append(row)
    print(text, flush=True)


__all__ = ["STORES", "compare", "copy_to_cluster", "parse_stores", "start_cluster", "start_server",
           "stop_cluster"]  # fmt: skip
