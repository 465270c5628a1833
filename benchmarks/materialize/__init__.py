"""`featureline bench materialize`: offline -> Redis, ours against `feast materialize`.

One run, one generated Feast repo and Parquet file (default 1M rows, 100k entities,
5 features, the size of shared/anchors.md), one private Redis (no persistence):

0. set-up, not timed: `feast apply`, and our specs cached;
1. Feast 0.67 `FeatureStore.materialize(start, end)` in a fresh process; a sample of
   the hashes it wrote is kept;
2. Redis flushed; featureline `materialize(settings, start, end)` in a fresh process;
   (1 and 2 alternate `--repeat` times; the best run of each side is reported)
3. rows/s (source rows / materialize time), entities/s, and the ratio; then a check
   that on the sampled keys our hashes hold exactly Feast's bytes (every Feast field;
   ours adds only `_fl_ts:{view}`, the event-time order of last-write-wins).

With `--online-store single,cluster`, a local Redis Cluster (3 primaries by default,
benchmarks/materialize/cluster.py) is started too, and each round also runs ours into
the cluster (redis_type redis_cluster, flushed first): entities/s on one Redis and on
the cluster side by side, the cluster's cost per entity, and a check that the cluster's
sampled hashes equal the single Redis's byte for byte.

Times are of the materialize call (imports and set-up excluded for both sides);
whole-process wall times are printed beside them.
argparse only at import time: everything heavy loads inside `run`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import child_env
from benchmarks.materialize.data import write_repo
from featureline.errors import FeaturelineError
from featureline.settings import Settings

QUICK = {"rows": 100_000, "entities": 10_000}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows (default 1M)")
    parser.add_argument("--entities", type=int, default=100_000, help="distinct entities (default 100k)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="our writer processes (default: materialize's own, one per 2 CPUs, at most 4, "
        "and one per 20,000 entities)",
    )
    parser.add_argument("--quick", action="store_true", help="100k rows, 10k entities")
    parser.add_argument("--skip-feast", action="store_true", help="measure ours only")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per side, alternating; the best is reported (default 1)"
    )
    parser.add_argument("--workdir", default=None, help="where to generate data (default: a temp dir)")
    parser.add_argument(
        "--online-store",
        default="single",
        choices=["single", "single,cluster"],
        help="'single,cluster': also materialize into a local Redis Cluster (default single)",
    )
    parser.add_argument("--cluster-primaries", type=int, default=3, help="cluster primaries (default 3)")
    parser.add_argument("--cluster-replicas", type=int, default=0, help="replicas per primary (default 0)")


def _child(
    side: str, repo: Path, home: Path, port: int, entities: int, workers: int | None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.materialize.child",
        side,
        str(repo),
        str(home),
        str(port),
        str(entities),
    ]
    if workers:
        cmd.append(str(workers))
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if done.returncode != 0:
        raise FeaturelineError(f"bench side {side!r} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - began
    return result


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    from featureline.cli.devstack import free_port, redis_binary
    from featureline.online_store.redis.connect import answers

    port = free_port()
    argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if answers("127.0.0.1", port, 1.0):
            return proc, port
        time.sleep(0.05)
    proc.terminate()
    raise FeaturelineError(f"could not start redis-server on port {port}")


def _parity(ours: dict[str, dict[str, str]], feast: dict[str, dict[str, str]]) -> str:
    """Every field Feast wrote, byte for byte, on the sampled keys."""
    order_prefix = b"_fl_ts:".hex()
    differ = 0
    for user, fields in feast.items():
        mine = {k: v for k, v in ours.get(user, {}).items() if not k.startswith(order_prefix)}
        differ += mine != fields
    return f"check: on {len(feast):,} sampled keys, {differ:,} hashes differ from Feast's bytes"


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "all_s": [round(r["seconds"], 2) for r in runs]}


def _line(label: str, args: Any, run: dict[str, Any]) -> str:
    rows_s, entities_s = args.rows / run["seconds"], args.entities / run["seconds"]
    return (f"  {label:22}{run['seconds']:>8.2f}s{rows_s:>12,.0f}{entities_s:>12,.0f}"
            f"{run['keys']:>10,}{run['process_s']:>9.1f}s")  # fmt: skip


def _report(
    args: Any, ours: dict[str, Any], feast: dict[str, Any] | None, cluster: dict[str, Any] | None
) -> None:
    size = f"{args.rows:,} rows, {args.entities:,} entities, 5 features"
    print(f"\nmaterialize offline -> Redis: {size} (machine: {os.cpu_count()} cores)")
    print(f"  {'':22}{'time':>9}{'rows/s':>12}{'entities/s':>12}{'keys':>10}{'process':>10}")
    print(_line("featureline", args, ours))
    if cluster is not None:
        print(_line(f"featureline, {args.cluster_primaries}-primary", args, cluster))
    if feast is not None:
        print(_line("Feast 0.67", args, feast))
        rows_s, feast_rows_s = ours["rows"] / ours["seconds"], args.rows / feast["seconds"]
        print(
            f"  ratio: {rows_s / feast_rows_s:.1f}x Feast's rows/s (goal >= 10x); "
            f"{ours['entities'] / ours['seconds']:,.0f} entities/s (goal >= 100,000)"
        )
        print("  " + _parity(ours["sample"], feast["sample"]))
    if cluster is not None:
        _cluster_report(args, ours, cluster)
    if len(ours["all_s"]) > 1:
        others = "".join(f", {name} {run['all_s']}" for name, run in (("cluster", cluster), ("Feast", feast))
                         if run is not None)  # fmt: skip
        print(f"  runs (s), best reported: featureline {ours['all_s']}{others}")


def _cluster_report(args: Any, ours: dict[str, Any], cluster: dict[str, Any]) -> None:
    from benchmarks.materialize.cluster import GOAL_OVERHEAD

    cost = cluster["seconds"] / ours["seconds"] - 1
    per_entity_us = (cluster["seconds"] - ours["seconds"]) / args.entities * 1e6
    met = "met" if cost <= GOAL_OVERHEAD else "NOT met"
    goal = f"goal <= {GOAL_OVERHEAD:.0%}: {met}"
    print(f"  cluster: {cost:+.0%} time ({per_entity_us:+.2f} us per entity; {goal})")
    same = sum(cluster["sample"].get(user) == fields for user, fields in ours["sample"].items())
    print(f"  check: on {len(ours['sample']):,} sampled keys, {len(ours['sample']) - same:,} cluster "
          "hashes differ from one Redis's bytes")  # fmt: skip


def run(args: Any, settings: Settings) -> int:
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.entities > args.rows:
        from featureline.errors import BadInputError

        raise BadInputError(f"--entities ({args.entities:,}) cannot exceed --rows ({args.rows:,})")
    from benchmarks.materialize import cluster

    with tempfile.TemporaryDirectory(prefix="fl-bench-mat-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        proc, port = _start_redis(workdir)
        nodes: list[Any] = []
        try:
            print(f"bench materialize: data and Redis in {workdir}", file=sys.stderr)
            if args.online_store == "single,cluster":
                nodes = cluster.start(workdir, args.cluster_primaries, args.cluster_replicas)
            repo = write_repo(workdir, args.rows, args.entities, port)
            home = workdir / "home"
            _child("specs", repo, home, port, args.entities, None)
            if nodes:
                _child("specs-cluster", repo, home, nodes[0].port, args.entities, None)
            runs: dict[str, list[dict[str, Any]]] = {"feast": [], "ours": [], "ours-cluster": []}
            for _ in range(max(1, args.repeat)):  # alternate, so all see the same load
                if not args.skip_feast:
                    runs["feast"].append(_child("feast", repo, home, port, args.entities, None))
                runs["ours"].append(_child("ours", repo, home, port, args.entities, args.workers))
                if nodes:
                    runs["ours-cluster"].append(
                        _child("ours-cluster", repo, home, nodes[0].port, args.entities, args.workers)
                    )
            best = {side: _best(r) if r else None for side, r in runs.items()}
            assert best["ours"] is not None
            _report(args, best["ours"], best["feast"], best["ours-cluster"])
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if nodes:
                cluster.stop(nodes)
    print(f"load average (1/5/15 min) at the end: {os.getloadavg()}")
    return 0
