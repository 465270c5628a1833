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


def _report(args: Any, ours: dict[str, Any], feast: dict[str, Any] | None) -> None:
    size = f"{args.rows:,} rows, {args.entities:,} entities, 5 features"
    print(f"\nmaterialize offline -> Redis: {size} (machine: {os.cpu_count()} cores)")
    print(f"  {'':22}{'time':>9}{'rows/s':>12}{'entities/s':>12}{'keys':>10}{'process':>10}")
    rows_s = ours["rows"] / ours["seconds"]
    entities_s = ours["entities"] / ours["seconds"]
    print(
        f"  {'featureline':22}{ours['seconds']:>8.2f}s{rows_s:>12,.0f}{entities_s:>12,.0f}"
        f"{ours['keys']:>10,}{ours['process_s']:>9.1f}s"
    )
    if feast is None:
        return
    feast_rows_s = args.rows / feast["seconds"]
    print(
        f"  {'Feast 0.67':22}{feast['seconds']:>8.2f}s{feast_rows_s:>12,.0f}"
        f"{args.entities / feast['seconds']:>12,.0f}{feast['keys']:>10,}{feast['process_s']:>9.1f}s"
    )
    print(
        f"  ratio: {rows_s / feast_rows_s:.1f}x Feast's rows/s (goal >= 10x); "
        f"{entities_s:,.0f} entities/s (goal >= 100,000)"
    )
    print("  " + _parity(ours["sample"], feast["sample"]))
    if len(ours["all_s"]) > 1:
        print(f"  runs (s), best reported: featureline {ours['all_s']}, Feast {feast['all_s']}")


def run(args: Any, settings: Settings) -> int:
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.entities > args.rows:
        from featureline.errors import BadInputError

        raise BadInputError(f"--entities ({args.entities:,}) cannot exceed --rows ({args.rows:,})")
    with tempfile.TemporaryDirectory(prefix="fl-bench-mat-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        proc, port = _start_redis(workdir)
        try:
            print(f"bench materialize: data and Redis in {workdir}", file=sys.stderr)
            repo = write_repo(workdir, args.rows, args.entities, port)
            home = workdir / "home"
            _child("specs", repo, home, port, args.entities, None)
            feasts: list[dict[str, Any]] = []
            ours_runs: list[dict[str, Any]] = []
            for _ in range(max(1, args.repeat)):  # alternate, so both see the same load
                if not args.skip_feast:
                    feasts.append(_child("feast", repo, home, port, args.entities, None))
                ours_runs.append(_child("ours", repo, home, port, args.entities, args.workers))
            ours = _best(ours_runs)
            feast = _best(feasts) if feasts else None
            _report(args, ours, feast)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0
