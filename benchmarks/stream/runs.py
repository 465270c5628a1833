"""The stream benchmark's three runs: throughput (a backlog drained by `featureline
stream`), freshness (a paced producer), and Feast's `write_to_online_store`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from benchmarks.stream.repo import Bench
from featureline.settings import Settings


def _events(args: Any, n: int, start: datetime, seconds: float) -> Any:
    from featureline.cli.generator import generate_events, kafka_batch, make_config

    config = make_config(events=n, start=start, hours=seconds / 3600, users=args.users,
                         merchants=args.merchants)  # fmt: skip
    # Only valid events: dead letters are measured by the tests, not here.
    config = dataclasses.replace(config, malformed_fraction=0.0)
    table = generate_events(config)
    return table, kafka_batch(config, table)


def _job(
    bench: Bench, workdir: Path, tag: str, workers: int, *extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    stats = workdir / f"{tag}.json"
    env = {**os.environ, **bench.settings.env_vars()}
    cmd = [sys.executable, "-m", "featureline.cli", "stream", "--repo", str(bench.repo_dir),
           "--progress", "off", "--stats-file", str(stats), "--workers", str(workers),
           *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL), stats


def _wait_applied(bench: Bench, total: int, timeout_s: float) -> None:
    """Until the job applied `total` messages: offsets start at 0 on a new topic, so
    the watermarks (last applied offset per partition) add up to total - partitions.
    (Not ListOffsets: Tansu 0.6 answers the last batch's base offset as the end.)"""
    from featureline.online.tiles import offsets_key
    from featureline.online_store.redis.connect import plain_client

    client = plain_client(bench.settings.redis_url)
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


def throughput(args: Any, bench: Bench, workdir: Path) -> tuple[dict[str, Any], Any, float]:
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


def _paced_produce(bench: Bench, values: list[bytes], keys: list[bytes], rate: float) -> None:
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


def freshness(args: Any, bench: Bench, workdir: Path) -> dict[str, Any]:
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


def feast_push(bench: Bench, table: Any, n: int) -> float:
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
