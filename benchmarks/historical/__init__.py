"""`featureline bench historical`: point-in-time retrieval against Feast, in the same run.

1. vs Feast: 100k entity rows x 1M feature rows, one view of 5 features; our local
   engine and Feast's get_historical_features (file offline store) on the same files,
   each in its own process (clean peak RSS); time, peak memory, ratios, and a check
   that the two agree on every row Feast returns.
2. Scale: 10M entity rows x 10M feature rows with 1M keys, local engine: output rows/s
   and peak memory.
3. The Spark engine on local[2], same data as 2 (or --spark-* sizes): rows/s, and a
   check that its result equals the local engine's.

argparse only at import time; data generation and engines load inside `run`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import child_env
from featureline.errors import FeaturelineError
from featureline.settings import Settings

QUICK = {"entity_rows": 10_000, "feature_rows": 100_000, "keys": 1_000}
QUICK_BIG = {"big_entity_rows": 200_000, "big_feature_rows": 200_000, "big_keys": 20_000}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entity-rows", type=int, default=100_000, help="vs Feast: entity rows")
    parser.add_argument("--feature-rows", type=int, default=1_000_000, help="vs Feast: feature rows")
    parser.add_argument("--keys", type=int, default=10_000, help="vs Feast: distinct keys")
    parser.add_argument("--big-entity-rows", type=int, default=10_000_000, help="scale run: entity rows")
    parser.add_argument("--big-feature-rows", type=int, default=10_000_000, help="scale run: feature rows")
    parser.add_argument("--big-keys", type=int, default=1_000_000, help="scale run: distinct keys")
    parser.add_argument(
        "--spark-entity-rows", type=int, default=None, help="Spark run (default: scale run's)"
    )
    parser.add_argument(
        "--spark-feature-rows", type=int, default=None, help="Spark run (default: scale run's)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (10k x 100k, 200k x 200k)")
    parser.add_argument(
        "--skip", action="append", choices=("feast", "big", "spark"), default=[], help="leave out a part"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side vs Feast (median reported)")
    parser.add_argument("--big-repeat", type=int, default=1, help="runs of the scale run (median reported)")
    parser.add_argument("--workdir", default=None, help="where to generate data (default: a temp dir)")
    parser.add_argument("--no-verify", action="store_true", help="skip the result cross-checks")


def _child(
    side: str, data: Any, home: Path, out: Path | None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.historical.child",
        "--side",
        side,
        "--repo",
        str(data.repo),
        "--home",
        str(home),
        "--entity-df",
        str(data.entity),
        "--out",
        str(out or ""),
    ]
    if side in ("ours", "feast"):
        cmd.append("--pandas")
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(env))
    if done.returncode != 0:
        raise FeaturelineError(f"bench side {side!r} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1] or "{}")
    return result


def _dataset(workdir: Path, name: str, entity_rows: int, feature_rows: int, keys: int) -> Any:
    from benchmarks.historical.data import generate

    print(
        f"  generating {name}: {entity_rows:,} entity rows x {feature_rows:,} feature rows, {keys:,} keys",
        file=sys.stderr,
    )
    data = generate(workdir / f"{name}-{entity_rows}-{feature_rows}-{keys}", entity_rows, feature_rows, keys)
    _child("specs", data, workdir / "home", None)
    return data


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _runs(
    side: str, data: Any, home: Path, out: Path | None, times: int, env: dict[str, str] | None = None
) -> Any:
    """`times` fresh processes of one side: the median run by wall time, with the
    largest peak RSS of all runs and every run's wall time."""
    runs = [_child(side, data, home, out if i == 0 else None, env) for i in range(max(times, 1))]
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = dict(ordered[len(ordered) // 2])
    median["peak_rss"] = max(r["peak_rss"] for r in runs)
    median["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return median


def _vs_feast(args: Any, workdir: Path, verify: bool) -> None:
    data = _dataset(workdir, "feast", args.entity_rows, args.feature_rows, args.keys)
    home = workdir / "home"
    ours_runs, feast_runs = [], []
    for i in range(max(args.repeat, 1)):  # alternate, so both sides see the same machine load
        ours_runs.append(
            _child("ours", data, home, workdir / "ours_a.parquet" if verify and i == 0 else None)
        )
        feast_runs.append(
            _child("feast", data, home, workdir / "feast_a.parquet" if verify and i == 0 else None)
        )
    ours, feast = _median(ours_runs, "seconds_with_pandas"), _median(feast_runs, "seconds")
    size = f"{data.entity_rows:,} entity rows x {data.feature_rows:,} feature rows"
    print(f"\n[1] vs Feast: {size}, 1 view, 5 features; median of {len(ours_runs)} runs each")
    print(f"  {'':24}{'wall':>9}{'CPU':>9}{'rows':>11}{'peak RSS':>11}{'RSS before':>12}   wall of each run")
    for label, r, wall, cpu in (
        ("featureline (local)", ours, "seconds_with_pandas", "cpu_seconds_with_pandas"),
        ("Feast 0.67 (file store)", feast, "seconds", "cpu_seconds"),
    ):
        runs = ours_runs if r is ours else feast_runs
        print(
            f"  {label:24}{r[wall]:>8.2f}s{r[cpu]:>8.2f}s{r['rows']:>11,}{_gib(r['peak_rss']):>11}"
            f"{_gib(r['rss_before']):>12}   {[round(x[wall], 2) for x in runs]}"
        )
    speed = feast["seconds"] / ours["seconds_with_pandas"]
    cpu_speed = feast["cpu_seconds"] / ours["cpu_seconds_with_pandas"]
    memory = ours["peak_rss"] / feast["peak_rss"]
    print(
        f"  ratio: {speed:.1f}x faster in wall time (goal >= 20x; {cpu_speed:.1f}x in CPU time), "
        f"{memory:.2f} of Feast's peak memory (goal <= 0.33)"
    )
    print(f"  (ours as Arrow, without .to_pandas(): {ours['seconds']:.2f} s)")
    if verify:
        print("  " + _agreement(workdir / "ours_a.parquet", workdir / "feast_a.parquet"))


def _median(runs: list[Any], key: str) -> Any:
    ordered = sorted(runs, key=lambda r: r[key])
    median = dict(ordered[len(ordered) // 2])
    median["peak_rss"] = max(r["peak_rss"] for r in runs)
    return median


def _agreement(ours_path: Path, feast_path: Path) -> str:
    import pandas as pd

    ours = pd.read_parquet(ours_path)
    feast = pd.read_parquet(feast_path)
    cols = [f"f{i}" for i in range(5)]
    merged = ours.merge(
        feast[["req_id", *cols]], on="req_id", how="left", suffixes=("", "_feast"), indicator=True
    )
    kept = merged["_merge"] == "both"
    same = pd.Series(True, index=merged.index)
    for c in cols:
        a, b = merged[c], merged[f"{c}_feast"]
        same &= (a == b) | (a.isna() & b.isna())
    disagree = int((~same & kept).sum())
    return (
        f"check: Feast returned {int(kept.sum()):,} of {len(ours):,} rows; on those, "
        f"{disagree:,} rows differ from ours"
    )


def _scale(args: Any, workdir: Path, verify: bool, skip: set[str]) -> None:
    data = _dataset(workdir, "big", args.big_entity_rows, args.big_feature_rows, args.big_keys)
    home = workdir / "home"
    if "big" not in skip:
        ours = _runs("ours", data, home, workdir / "ours_big.parquet" if verify else None, args.big_repeat)
        size = f"{data.entity_rows:,} entity rows x {data.feature_rows:,} feature rows, {data.keys:,} keys"
        print(f"\n[2] local engine: {size}")
        rate = ours["rows"] / ours["seconds"]
        print(
            f"  {ours['seconds']:.2f} s (CPU {ours['cpu_seconds']:.2f} s) -> {rate:,.0f} output rows/s "
            f"(goal >= 1,000,000); peak RSS {_gib(ours['peak_rss_arrow'])} (Arrow result), "
            f"{_gib(ours['peak_rss'])} with .to_pandas() ({ours['seconds_with_pandas']:.2f} s); "
            f"runs {ours['all_seconds']}"
        )
    if "spark" in skip:
        return
    if args.spark_entity_rows or args.spark_feature_rows:
        data = _dataset(
            workdir,
            "big",
            args.spark_entity_rows or data.entity_rows,
            args.spark_feature_rows or data.feature_rows,
            args.big_keys,
        )
        verify = False
    env = {"FEATURELINE_SPARK_DRIVER_MEMORY": os.environ.get("FEATURELINE_SPARK_DRIVER_MEMORY", "8g")}
    spark = _child("spark", data, home, workdir / "spark_big.parquet" if verify else None, env)
    print(
        f"\n[3] Spark engine, local[2]: {data.entity_rows:,} entity rows x {data.feature_rows:,} feature rows"
    )
    print(
        f"  {spark['seconds']:.2f} s (driver CPU {spark['cpu_seconds']:.2f} s) -> "
        f"{spark['rows'] / spark['seconds']:,.0f} output rows/s; peak RSS "
        f"driver Python {_gib(spark['peak_rss'])}, JVM {_gib(spark['jvm_peak_rss'])}"
    )
    if verify and "big" not in skip:
        import pyarrow.parquet as pq

        same = pq.read_table(workdir / "spark_big.parquet").equals(
            pq.read_table(workdir / "ours_big.parquet")
        )
        print(f"  check: Spark result {'equals' if same else 'DIFFERS FROM'} the local engine's")


def run(args: Any, settings: Settings) -> int:
    if args.quick:
        for key, value in {**QUICK, **QUICK_BIG}.items():
            setattr(args, key, value)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    skip = set(args.skip)
    verify = not args.no_verify
    with tempfile.TemporaryDirectory(prefix="fl-bench-hist-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        load = os.getloadavg()[0]
        print(
            f"bench historical (data in {workdir}; {os.cpu_count()} cores, load average {load:.1f} at start)"
        )
        if "feast" not in skip:
            _vs_feast(args, workdir, verify)
        if not {"big", "spark"} <= skip:
            _scale(args, workdir, verify, skip)
        print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
    return 0
