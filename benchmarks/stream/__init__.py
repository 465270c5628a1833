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
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stream.repo import bench_repo
from benchmarks.stream.runs import feast_push, freshness, throughput
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
        bench = bench_repo(settings, workdir, args.partitions)
        ensure_topic(bench.settings, bench.topic, args.partitions)
        from featureline.repo import load_repo

        load_repo(bench.settings)  # parse once (feast), the jobs read the cache
        _say("throughput run ...")
        thr, table, produce_rate = throughput(args, bench, workdir)
        _say(f"throughput run done: {thr['events_per_s']:,.0f} events/s; freshness run ...")
        fresh = freshness(args, bench, workdir)
        _say("freshness run done; Feast ...")
        feast_rate = feast_push(bench, table, min(args.feast_events, table.num_rows))
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
