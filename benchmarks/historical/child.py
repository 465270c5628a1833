"""One side of `featureline bench historical`, in its own process so its peak memory is
its own: `python -m benchmarks.historical.child --side ours|feast|spark|specs ...`.

Prints one JSON line: seconds of the timed call (wall and this process's CPU, all
threads), output rows, the process's peak RSS (kernel high-water mark, not sampled)
and its RSS before the call (imports, data). CPU seconds tell the work apart from the
waiting on a machine shared with other jobs.
Setup (imports, `feast apply`, Spark start) is outside the timed call on every side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.historical.data import FEATURES


def rss_bytes(pid: int | str = "self", field: str = "VmRSS") -> int:
    """VmRSS (now) or VmHWM (peak) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_self() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _settings(args: argparse.Namespace) -> Any:
    from featureline.settings import Settings

    return Settings(
        repo=Path(args.repo), home=Path(args.home), offline_dir=str(Path(args.repo).parent / "offline")
    )


def _run_feast(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    from feast import FeatureStore
    from feast.repo_operations import parse_repo

    os.chdir(args.repo)  # Feast resolves definition files against the cwd and sys.path
    sys.path.insert(0, args.repo)
    contents = parse_repo(Path(args.repo))
    store = FeatureStore(repo_path=args.repo)
    store.apply([*contents.entities, *contents.data_sources, *contents.feature_views])
    entity_df = pd.read_parquet(args.entity_df)
    before = rss_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    result = store.get_historical_features(entity_df=entity_df, features=list(FEATURES)).to_df()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _peak_self()
    if args.out:
        result.to_parquet(args.out)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": len(result),
        "peak_rss": peak,
        "rss_before": before,
    }


def _run_ours(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from featureline.batch.historical import get_historical_features
    from featureline.repo import load_repo

    repo = load_repo(_settings(args))  # the spec cache: no `import feast` here
    extra: dict[str, Any] = {}
    if engine == "spark":
        from featureline.batch.spark import get_spark

        spark = get_spark()
        spark.range(1).count()  # JVM and executors up before the clock starts
    before = rss_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    table = get_historical_features(Path(args.entity_df), list(FEATURES), repo=repo, engine=engine)  # type: ignore[arg-type]
    seconds, extra["cpu_seconds"] = time.perf_counter() - started, time.process_time() - cpu
    extra["peak_rss_arrow"] = _peak_self()  # before .to_pandas() copies the result
    if args.pandas:
        frame = table.to_pandas()
        extra["seconds_with_pandas"] = time.perf_counter() - started
        extra["cpu_seconds_with_pandas"] = time.process_time() - cpu
        del frame
    peak = _peak_self()
    if engine == "spark":
        extra["jvm_peak_rss"] = sum(rss_bytes(pid, "VmHWM") for pid in _java_children())
    if args.out:
        pq.write_table(table, args.out)
    return {"seconds": seconds, "rows": table.num_rows, "peak_rss": peak, "rss_before": before, **extra}


def _java_children() -> list[int]:
    """The JVM(s) this process started (pyspark's gateway), found in /proc: PySpark has
    no public API for the gateway's pid."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if rest[1] == str(me) and name == "java":
            found.append(int(stat.parent.name))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.historical.child")
    parser.add_argument("--side", choices=("ours", "feast", "spark", "specs"), required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--entity-df", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--pandas", action="store_true", help="also time .to_pandas()")
    args = parser.parse_args(argv)
    if args.side == "specs":
        from featureline.repo import load_repo

        load_repo(_settings(args))  # parses with Feast once and fills the spec cache
        result: dict[str, Any] = {}
    elif args.side == "feast":
        result = _run_feast(args)
    else:
        result = _run_ours(args, "local" if args.side == "ours" else "spark")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
