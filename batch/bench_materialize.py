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

from featureline.errors import FeaturelineError
from featureline.settings import Settings

QUICK = {"rows": 100_000, "entities": 10_000}
START, END = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
VIEW = "bench_profile"
SAMPLE_KEYS = 2000


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


# --- data --------------------------------------------------------------------------------


_STORE_YAML = """project: bench_materialize
provider: local
registry: {registry}
online_store:
  type: redis
  connection_string: 127.0.0.1:{port}
offline_store:
  type: file
entity_key_serialization_version: 3
"""
_DEFS = """from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
source = FileSource(name="bench_source", path={path!r}, timestamp_field="event_timestamp",
                    created_timestamp_column="created")
bench_profile = FeatureView(
    name="bench_profile", entities=[user], ttl=timedelta(days=3650), source=source,
    schema=[Field(name="f_amount", dtype=Float64), Field(name="f_score", dtype=Float64),
            Field(name="f_count", dtype=Int64), Field(name="f_age", dtype=Int64),
            Field(name="f_country", dtype=String)],
)
"""


def write_repo(workdir: Path, rows: int, entities: int, redis_port: int) -> Path:
    """A Feast repo with one 5-feature view over one Parquet file of `rows` rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    data = workdir / "source.parquet"
    users = np.concatenate([np.arange(entities), rng.integers(0, entities, max(rows - entities, 0))])
    start_us = 1_767_225_600_000_000  # 2026-01-01
    ts = start_us + rng.integers(0, 30 * 86_400 * 10**6, len(users))
    stamps = pa.array(ts).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "user_id": users,
            "f_amount": rng.lognormal(3.5, 1.2, len(users)).round(2),
            "f_score": rng.random(len(users)),
            "f_count": rng.integers(0, 10_000, len(users)),
            "f_age": rng.integers(0, 5_000, len(users)),
            "f_country": pa.array(rng.choice(["US", "FR", "DE", "GB", "JP"], len(users))),
            "event_timestamp": stamps,
            "created": stamps,
        }
    )
    pq.write_table(table, data)
    repo = workdir / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        _STORE_YAML.format(registry=workdir / "registry.db", port=redis_port)
    )
    (repo / "defs.py").write_text(_DEFS.format(path=str(data)))
    return repo


# --- the two sides, each in its own process -------------------------------------------------


def _child(
    side: str, repo: Path, home: Path, port: int, entities: int, workers: int | None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "featureline.batch.bench_materialize",
        side,
        str(repo),
        str(home),
        str(port),
        str(entities),
    ]
    if workers:
        cmd.append(str(workers))
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise FeaturelineError(f"bench side {side!r} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - began
    return result


def _sample(client: Any, project: str, entities: int) -> dict[str, dict[str, str]]:
    from featureline.online.feast_format import single_key_encoder

    encode = single_key_encoder(project, "user_id", "int64")
    step = max(1, entities // SAMPLE_KEYS)
    out = {}
    for user in range(0, entities, step):
        raw = client.hgetall(encode(user))
        out[str(user)] = {k.hex(): v.hex() for k, v in raw.items()}
    return out


def _feast_side(repo: Path, port: int, entities: int) -> dict[str, Any]:
    from datetime import datetime

    import redis
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    client = redis.Redis(port=port)
    client.flushall()
    began = time.perf_counter()
    store.materialize(datetime.fromisoformat(START), datetime.fromisoformat(END), feature_views=[VIEW])
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "keys": client.dbsize(), "sample": _sample(client, store.project, entities)}


def _our_side(repo: Path, home: Path, port: int, entities: int, workers: int | None) -> dict[str, Any]:
    from datetime import datetime

    import redis

    from featureline.batch.materialize import mark_key, materialize

    settings = Settings(repo=repo, home=home, redis_port=port)
    from featureline.repo import load_repo

    project = load_repo(settings).project  # cached specs: ~5 ms
    client = redis.Redis(port=port)
    client.flushall()
    began = time.perf_counter()
    report = materialize(
        settings, datetime.fromisoformat(START), datetime.fromisoformat(END), views=[VIEW], workers=workers
    )
    seconds = time.perf_counter() - began
    if not report.ok:
        raise FeaturelineError(str(report.results))
    (result,) = report.results
    return {
        "seconds": seconds,
        "rows": result.rows_read,
        "entities": result.entities,
        # Feature hashes only: not materialize's own incremental mark.
        "keys": int(client.dbsize()) - int(client.exists(mark_key(project, VIEW))),  # type: ignore[arg-type]
        "sample": _sample(client, project, entities),
    }


def _child_main(argv: list[str]) -> None:
    side, repo, home, port, entities = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    workers = int(argv[5]) if len(argv) > 5 else None
    if side == "specs":  # untimed set-up: our cached specs, and `feast apply`
        from featureline.repo import load_repo

        load_repo(Settings(repo=repo, home=home, redis_port=port))
        feast_cli = str(Path(sys.executable).parent / "feast")  # the venv's, PATH or not
        subprocess.run([feast_cli, "-c", str(repo), "apply"], check=True, capture_output=True)
        result: dict[str, Any] = {}
    elif side == "feast":
        result = _feast_side(repo, port, entities)
    else:
        result = _our_side(repo, home, port, entities, workers)
    print(json.dumps(result))


# --- the parent --------------------------------------------------------------------------------


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    import redis

    from featureline.cli.devstack import free_port, redis_binary

    port = free_port()
    argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
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


if __name__ == "__main__":
    _child_main(sys.argv[1:])
