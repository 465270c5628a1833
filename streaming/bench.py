"""`featureline bench stream`: end-to-end throughput and freshness, and Feast's push path
on the same events in the same run.

1. throughput: N generated events (featureline.cli.generator, recent event times) are in
   the topic first; `featureline stream` starts from the earliest offset and we time
   it from its first to its last applied batch (and with start-up included);
2. freshness: a new job from the committed offsets, once it applied a 100-event
   warm-up, the producer paced at R events/s for S seconds; freshness = visible in
   Redis - Kafka record time (set when produced; the warm-up is <1 % of the events);
3. Feast: `FeatureStore.write_to_online_store` (what `FeatureStore.push` calls) of the
   same events for `user_last_txn`, latest values only (Feast's stream path computes
   no aggregations), versus ours, which computes every view.

The repo is copied with its own project and topic, so a bench never mixes with other
data on the stack. The stack (Redis + Tansu) is started if it is not running.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events for the throughput run (default: 1,000,000)"
    )
    parser.add_argument(
        "--rate", type=float, default=10_000.0, help="events/s for the freshness run (default: 10,000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="length of the freshness run (default: 30 s)"
    )
    parser.add_argument("--users", type=int, default=10_000, help="users (default: 10,000)")
    parser.add_argument("--merchants", type=int, default=1_000, help="merchants (default: 1,000)")
    parser.add_argument("--partitions", type=int, default=3, help="topic partitions (default: 3)")
    parser.add_argument(
        "--feast-events", type=int, default=200_000, help="events Feast writes (default: 200,000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="stream job processes (featureline stream --workers; default: 2)",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: 100k events, 10 s at the rate, 50k for Feast")  # fmt: skip


@dataclasses.dataclass
class _Bench:
    settings: Settings
    topic: str
    project: str
    repo_dir: Path
    partitions: int


def isolated_repo(settings: Settings, workdir: Path, name: str) -> Settings:
    """A copy of the settings' repo under `workdir` with project and topic `name` (and
    its own offline dir), so a bench or a test shares the stack without mixing data."""
    repo_dir = workdir / "repo"
    shutil.copytree(settings.repo, repo_dir, ignore=shutil.ignore_patterns("data", "__pycache__"))
    yaml = repo_dir / "feature_store.yaml"
    yaml.write_text(yaml.read_text().replace("project: featureline_demo", f"project: {name}"))
    src = repo_dir / "sources.py"
    src.write_text(src.read_text().replace('topic="transactions"', f'topic="{name}"'))
    return dataclasses.replace(settings, repo=repo_dir, offline_dir=str(workdir / "offline"))


def _bench_repo(settings: Settings, workdir: Path, partitions: int) -> _Bench:
    name = f"bench{uuid.uuid4().hex[:6]}"
    bench_settings = isolated_repo(settings, workdir, name)
    return _Bench(bench_settings, name, name, bench_settings.repo, partitions)


def _events(args: Any, n: int, start: datetime, seconds: float) -> Any:
    from featureline.cli.generator import generate_events, kafka_batch, make_config

    config = make_config(events=n, start=start, hours=seconds / 3600, users=args.users,
                         merchants=args.merchants)  # fmt: skip
    # Only valid events: dead letters are measured by the tests, not here.
    config = dataclasses.replace(config, malformed_fraction=0.0)
    table = generate_events(config)
    return table, kafka_batch(config, table)


def _job(
    bench: _Bench, workdir: Path, tag: str, workers: int, *extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    stats = workdir / f"{tag}.json"
    env = {**os.environ, **bench.settings.env_vars()}
    cmd = [sys.executable, "-m", "featureline.cli", "stream", "--repo", str(bench.repo_dir),
           "--progress", "off", "--stats-file", str(stats), "--workers", str(workers),
           *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL), stats


def _wait_applied(bench: _Bench, total: int, timeout_s: float) -> None:
    """Until the job applied `total` messages: offsets start at 0 on a new topic, so
    the watermarks (last applied offset per partition) add up to total - partitions.
    (Not ListOffsets: Tansu 0.6 answers the last batch's base offset as the end.)"""
    import redis

    from featureline.online.tiles import offsets_key

    client = redis.Redis.from_url(bench.settings.redis_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        applied = 0
        for p in range(bench.partitions):
            mark = cast(bytes | None, client.get(offsets_key(bench.project, bench.topic, p)))
            applied += 0 if mark is None else int(mark) + 1
        if applied >= total:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the job did not apply {total:,} events within {timeout_s:.0f} s")


def _stop(job: subprocess.Popen[bytes], stats: Path) -> dict[str, Any]:
    job.terminate()
    job.wait(timeout=60)
    return dict(json.loads(stats.read_text()))


def _throughput(args: Any, bench: _Bench, workdir: Path) -> tuple[dict[str, Any], Any, float]:
    from featureline.cli.generator import produce

    # Event times as a live stream at 50k events/s would have them, ending now.
    span_s = max(args.events / 50_000, 1.0)
    table, batch = _events(args, args.events, datetime.now(UTC) - timedelta(seconds=span_s), span_s)
    report = produce(bench.settings, batch, bench.topic)
    servers_before = _server_cpu_s(bench.settings)
    job, stats = _job(bench, workdir, "throughput", args.workers, "--start-from", "earliest")
    _wait_applied(bench, len(batch), timeout_s=600)
    servers = {k: v - servers_before.get(k, 0.0) for k, v in _server_cpu_s(bench.settings).items()}
    summary = _stop(job, stats)
    summary["servers_cpu_s"] = servers
    return summary, table, report.per_second


def _server_cpu_s(settings: Settings) -> dict[str, float]:
    """CPU seconds Redis and the broker have used so far (Linux /proc)."""
    from featureline.cli.devstack import load_state

    state = load_state(settings)
    out: dict[str, float] = {}
    for name, service in state.services.items() if state else []:
        try:
            fields = Path(f"/proc/{service.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _paced_produce(bench: _Bench, values: list[bytes], keys: list[bytes], rate: float) -> None:
    """Send at `rate` messages/s in 10 ms steps; record time = send time (ms)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bench.settings.kafka_bootstrap, linger_ms=5)
    per_step = max(1, round(rate / 100))
    began = time.monotonic()
    for step, lo in enumerate(range(0, len(values), per_step)):
        delay = began + step / 100 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now_ms = int(time.time() * 1000)
        for i in range(lo, min(lo + per_step, len(values))):
            producer.send(bench.topic, key=keys[i], value=values[i], timestamp_ms=now_ms)
    producer.flush()
    producer.close()


def _freshness(args: Any, bench: _Bench, workdir: Path) -> dict[str, Any]:
    """Resume from the committed offsets (the throughput job drained and committed),
    wait until a 100-event warm-up is applied (the job is up), then pace the rest."""
    n = int(args.rate * args.seconds)
    _, batch = _events(args, n + 100, datetime.now(UTC) - timedelta(seconds=args.seconds), args.seconds)
    job, stats = _job(bench, workdir, "freshness", args.workers, "--start-from", "committed")
    _paced_produce(bench, batch.values[:100], batch.keys[:100], args.rate)
    _wait_applied(bench, args.events + 100, timeout_s=120)
    _paced_produce(bench, batch.values[100:], batch.keys[100:], args.rate)
    _wait_applied(bench, args.events + len(batch), timeout_s=120)
    return _stop(job, stats)


def _feast_push(bench: _Bench, table: Any, n: int) -> float:
    """Rows/s of FeatureStore.write_to_online_store into user_last_txn."""
    bench.settings.export_env()
    from feast import FeatureStore
    from feast.repo_operations import parse_repo

    sys.path.append(str(bench.repo_dir))
    store = FeatureStore(repo_path=str(bench.repo_dir))
    cwd = os.getcwd()
    os.chdir(bench.repo_dir)  # parse_repo names modules relative to the working directory
    try:
        contents = parse_repo(bench.repo_dir)
    finally:
        os.chdir(cwd)
    store.apply([*contents.entities, *contents.data_sources, *contents.feature_views,
                 *contents.stream_feature_views])  # fmt: skip
    df = (
        table.slice(0, n)
        .select(["user_id", "amount", "merchant_id", "country", "event_timestamp", "created"])
        .to_pandas()
    )
    began = time.monotonic()
    for lo in range(0, len(df), 20_000):
        store.write_to_online_store("user_last_txn", df.iloc[lo : lo + 20_000])
    return len(df) / (time.monotonic() - began)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(args: Any, settings: Settings) -> int:
    from featureline.cli.devstack import ensure_topic, load_state, start_stack, stop_stack

    if args.quick:
        args.events, args.seconds, args.feast_events = 100_000, 10.0, 50_000
    started = load_state(settings) is None
    start_stack(settings)
    workdir = Path(tempfile.mkdtemp(prefix="fl-bench-stream-"))
    try:
        bench = _bench_repo(settings, workdir, args.partitions)
        ensure_topic(bench.settings, bench.topic, args.partitions)
        from featureline.repo import load_repo

        load_repo(bench.settings)  # parse once (feast), the jobs read the cache
        _say("throughput run ...")
        thr, table, produce_rate = _throughput(args, bench, workdir)
        _say(f"throughput run done: {thr['events_per_s']:,.0f} events/s; freshness run ...")
        fresh = _freshness(args, bench, workdir)
        _say("freshness run done; Feast ...")
        feast_rate = _feast_push(bench, table, min(args.feast_events, table.num_rows))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started:
            stop_stack(settings)
    _report(args, thr, fresh, feast_rate, produce_rate)
    return 0


def _report_cpu(thr: dict[str, Any]) -> None:
    """CPU per event of the throughput run: the job (its apply span) and the servers.
    Unlike events/s, it does not depend on what else runs on the machine."""
    events = max(thr["events"], 1)
    parts = {"job": thr.get("apply_cpu_s", 0.0), **thr.get("servers_cpu_s", {})}
    per_event = {k: v / events * 1e6 for k, v in parts.items()}
    total = sum(per_event.values())
    cores = os.cpu_count() or 1
    print(
        "  CPU per event: "
        + ", ".join(f"{k} {v:.1f} us" for k, v in per_event.items())
        + f" = {total:.1f} us; {cores} idle cores would carry ~{cores / total * 1e6:,.0f} events/s"
    )


def _report(
    args: Any, thr: dict[str, Any], fresh: dict[str, Any], feast_rate: float, produce_rate: float
) -> None:
    ours = thr["events_per_s"]
    q = {k: fresh["freshness"].get(k, float("nan")) * 1000 for k in ("p50_s", "p99_s", "max_s")}
    print(
        f"stream bench: {args.events:,} events, {args.users:,} users, {args.merchants:,} "
        f"merchants, {args.partitions} partitions, broker + Redis on this machine "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"  throughput (Kafka -> tiles of 2 views + latest values + raw and computed Parquet): "
        f"{ours:,.0f} events/s ({thr['events']:,} events in {thr['apply_span_s']:.1f} s; "
        f"{thr['events'] / thr['elapsed_s']:,.0f}/s counting the job's start-up)"
    )
    print(
        f"  freshness at {args.rate:,.0f} events/s for {args.seconds:.0f} s "
        f"({fresh['events']:,} events): p50 {q['p50_s']:.0f} ms, p99 {q['p99_s']:.0f} ms, "
        f"max {q['max_s']:.0f} ms"
    )
    _report_cpu(thr)
    print(f"  Feast write_to_online_store (user_last_txn, latest only): {feast_rate:,.0f} rows/s")
    print(f"  ratio ours / Feast: {ours / feast_rate:.1f}x")
    print(f"  (producer alone: {produce_rate:,.0f} msg/s)")
