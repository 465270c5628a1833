"""`featureline bench serve`: `feast serve` and `featureline serve` on one Redis and one
data set, driven by the same load generator (benchmarks.loadgen) in the same run.

Phases (each prints our figure, Feast's and the ratio where Feast has one):
  batch 1, REST and gRPC, closed loop at --concurrency: requests/s, p50, p99;
  batch 1 at half our peak rate (open loop): p99 (goal <= 3 ms);
  batch 100, REST: p50 at concurrency 1 (goal <= 5 ms) and requests/s at --concurrency;
  batch 1000 through the tensor call (gRPC): p50 (goal <= 15 ms), plain views and the
  whole feature service (tiles + on-demand views), Feast's REST batch 1000 beside it;
  a soak (--soak-s, default 60 s) at half peak: errors and the workers' memory.
Both servers read the same Feast-written latest values; the feature service's
aggregations (tiles) exist only for us (Feast cannot serve them).

`--online-store single,cluster` also copies the data into a local Redis Cluster (3
primaries by default), starts a second `featureline serve` on it, and measures one
against the other at batch 1, 100 and 1000 (benchmarks/serve/cluster.py); `--compare-only` runs just that.
`--tls` starts a second `featureline serve` with TLS on both ports and compares it with
the plaintext one (benchmarks/serve/tls.py).
`--feature-logging` serves a logged copy of the plain views at 0%, 1% and 100% feature
logging and compares batch-1 REST and gRPC (benchmarks/serve/feature_log.py).
argparse only at import time: `featureline bench --help` imports this module.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from featureline.settings import Settings

DEFAULTS = {"users": 10_000, "seconds": 10.0, "soak_s": 60.0}
QUICK = {"users": 1_000, "seconds": 3.0, "soak_s": 10.0}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes: 1k users, 3 s phases")
    parser.add_argument("--users", type=int, default=None, help="card holders (default 10000)")
    parser.add_argument("--seconds", type=float, default=None, help="per phase (default 10)")
    parser.add_argument("--soak-s", type=float, default=None, help="soak length (default 60)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="processes per server (default 2)")
    parser.add_argument(
        "--near-cache-keys",
        type=int,
        default=0,
        help="run featureline serve with --near-cache-keys N (default 0: off)",
    )
    parser.add_argument("--service", default="fraud_model_v1", help="feature service of the tensor phase")
    parser.add_argument(
        "--bodies",
        type=int,
        default=5_000,
        help="distinct batch-1 request bodies, taken in turn (default 5000; Feast is faster on few)",
    )
    parser.add_argument("--skip-feast", action="store_true", help="measure featureline only")
    parser.add_argument(
        "--online-store",
        default="single",
        help="'single' (default) or 'single,cluster': also serve the same data from a local "
        "3-primary Redis Cluster and compare at batch 1, 100 and 1000",
    )
    parser.add_argument("--cluster-primaries", type=int, default=3, help="cluster primaries (default 3)")
    parser.add_argument(
        "--cluster-replicas", type=int, default=0, help="replicas per cluster primary (default 0)"
    )
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="with --online-store single,cluster, --tls or --feature-logging: only those comparisons",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also run a featureline serve with TLS on both ports (certificates made in the "
        "bench's directory) and compare it with the plaintext one (benchmarks/serve/tls.py)",
    )
    parser.add_argument(
        "--grpc-server",
        choices=["native", "aio"],
        default="native",
        help="which stack serves featureline's gRPC port (default native; serve --grpc-server)",
    )
    parser.add_argument(
        "--serve-args",
        default="",
        metavar="ARGS",
        help="extra flags for featureline's serve processes, one string (an A/B of a serve "
        'setting, e.g. "--redis-bulk-commands 0")',
    )
    parser.add_argument(
        "--feature-logging",
        action="store_true",
        help="also run three featureline serve with a logged feature service over the plain "
        "views (logging off, 1%%, 100%%) and compare batch 1 (benchmarks/serve/feature_log.py)",
    )
    parser.add_argument("--out", default="", help="also write the figures as JSON here")


def _sizes(args: Any) -> dict[str, Any]:
    base = QUICK if args.quick else DEFAULTS
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}


def run(args: Any, settings: Settings) -> int:
    from benchmarks.serve import cluster, setup
    from benchmarks.serve.phases import Workload, run_phases
    from featureline.repo import load_repo

    stores = cluster.parse_stores(args.online_store)
    skip_feast = args.skip_feast or args.compare_only
    sizes = _sizes(args)
    home = settings.home / "bench-serve" / time.strftime("%Y%m%d-%H%M%S")
    bench = setup.bench_settings(settings, home)
    procs: list[setup.Proc] = []
    nodes: list[Any] = []
    # SIGTERM unwinds like Ctrl-C, so the finally below stops Redis and both servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        procs.append(setup.start_redis(bench))
        repo = load_repo(bench)
        keys = setup.entity_values(repo, sizes["users"])
        _say(f"applying {bench.repo} to Feast and writing data for {sizes['users']} users ...")
        store = setup.feast_apply(bench)
        rows = setup.load_plain(store, repo, keys, seed=1)
        from featureline.online_store.redis.connect import plain_client

        tiles = setup.load_tiles(plain_client(port=bench.redis_port), repo, keys, seed=2)
        _say(f"{rows} latest rows (written by Feast), {tiles} tiles (shared core layout)")
        servers = _start_servers(bench, args, procs, skip_feast)
        if "cluster" in stores:
            nodes = cluster.start_cluster(bench, args.cluster_primaries, args.cluster_replicas)
            seed = (nodes[0].host, nodes[0].port)
            copied = cluster.copy_to_cluster(bench.redis_port, seed)
            _say(f"{args.cluster_primaries}-primary cluster ({args.cluster_replicas} replicas each) at "
                 f"{seed[0]}:{seed[1]}: {copied} keys copied (DUMP/RESTORE)")  # fmt: skip
            servers.update(cluster.start_server(bench, args, seed, procs))
            servers["cluster_primaries"] = args.cluster_primaries
        if args.tls:
            from benchmarks.serve import tls

            servers.update(tls.start_server(bench, args, procs))
        if args.feature_logging:
            from benchmarks.serve import feature_log

            servers.update(feature_log.start_servers(bench, args, procs, repo))
        cache = f"{args.near_cache_keys:,} keys" if args.near_cache_keys else "off"
        _say(f"featureline serve: {args.workers} workers, near cache {cache}, gRPC stack {args.grpc_server}")
        servers["keys"] = keys
        workload = Workload.build(repo, keys, args.service, seed=3, single_bodies=args.bodies)
        report = run_phases(workload, servers, sizes, args.concurrency, skip_feast=skip_feast,
                            compare_only=args.compare_only)  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
        if nodes:
            cluster.stop_cluster(nodes)
    report["config"] = {**sizes, "concurrency": args.concurrency, "workers": args.workers,
                        "near_cache_keys": args.near_cache_keys, "bodies": args.bodies,
                        "repo": str(settings.repo), "online_store": stores,
                        "cluster_primaries": args.cluster_primaries,
                        "cluster_replicas": args.cluster_replicas, "tls": args.tls,
                        "grpc_server": args.grpc_server, "feature_logging": args.feature_logging,
                        "serve_args": args.serve_args}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _start_servers(bench: Settings, args: Any, procs: list[Any], skip_feast: bool) -> dict[str, Any]:
    from benchmarks.serve import setup
    from featureline.cli.devstack import free_ports

    ours_http, ours_grpc, feast_http, feast_grpc = free_ports(4)
    ours = setup.spawn("featureline-serve", [
        sys.executable, "-m", "featureline.cli", "serve", "--repo", str(bench.repo),
        "--host", "127.0.0.1", "--http-port", str(ours_http), "--grpc-port", str(ours_grpc),
        "--workers", str(args.workers), "--max-in-flight", "4096",
        "--near-cache-keys", str(args.near_cache_keys), "--grpc-server", args.grpc_server,
        *shlex.split(args.serve_args),
    ], bench)  # fmt: skip
    procs.append(ours)
    servers: dict[str, Any] = {"ours_http": ours_http, "ours_grpc": ours_grpc, "ours": ours}
    if not skip_feast:
        feast = str(Path(sys.executable).with_name("feast"))
        common = ["--no-access-log"]
        rest = setup.spawn("feast-serve", [
            feast, "-c", str(bench.repo), "serve", "-h", "127.0.0.1", "-p", str(feast_http),
            "--workers", str(args.workers), "--max-requests", "0", *common,
        ], bench)  # fmt: skip
        # Feast's gRPC feature server (`feast serve -t grpc` refuses: "Python server
        # only supports 'http'"); one process, a thread pool.
        grpc_proc = setup.spawn("feast-listen-grpc", [
            feast, "-c", str(bench.repo), "listen", "-a", f"127.0.0.1:{feast_grpc}",
            "-w", str(4 * args.concurrency),
        ], bench)  # fmt: skip
        procs += [rest, grpc_proc]
        setup.wait_port(rest, "127.0.0.1", feast_http)
        setup.wait_port(grpc_proc, "127.0.0.1", feast_grpc)
        servers.update(feast_http=feast_http, feast_grpc=feast_grpc)
    setup.wait_port(ours, "127.0.0.1", ours_http)
    setup.wait_port(ours, "127.0.0.1", ours_grpc)
    return servers
