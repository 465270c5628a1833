"""`featureline stream`: run the Beam streaming job until SIGTERM (then drain and exit)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from featureline.settings import Settings

RUNNERS = ("DirectRunner", "FlinkRunner", "DataflowRunner")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runner",
        choices=RUNNERS,
        default="DirectRunner",
        help="Beam runner (portable runners read Kafka with Beam's ReadFromKafka)",
    )
    parser.add_argument(
        "--start-from",
        choices=("committed", "earliest", "latest"),
        default="committed",
        help="where each partition starts: the committed offset (else the "
        "earliest), the earliest or the latest (default: committed)",
    )
    parser.add_argument(
        "--views",
        nargs="+",
        metavar="VIEW",
        help="only these StreamFeatureViews (default: every one with a KafkaSource)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (default: off)"
    )
    parser.add_argument(
        "--stats-file", type=Path, help="write a JSON summary (events, freshness p50/p99, ...) here on exit"
    )
    parser.add_argument(
        "--max-future-s",
        type=int,
        default=300,
        help="events stamped further in the future go to the DLQ (default: 300)",
    )
    parser.add_argument(
        "--flush-s", type=float, default=2.0, help="offline flush and offset commit interval (default: 2 s)"
    )
    parser.add_argument(
        "--max-records", type=int, default=20_000, help="messages per batch element at most (default: 20000)"
    )
    parser.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                        help="progress line on stderr (auto: when it is a terminal)")  # fmt: skip


def _progress(stop: threading.Event, enabled: bool) -> threading.Thread | None:
    if not enabled:
        return None
    from tqdm import tqdm

    from streaming.metrics import TOTALS

    def loop() -> None:
        bar = tqdm(desc="stream", unit="ev", file=sys.stderr, dynamic_ncols=True)
        while not stop.wait(1.0):
            bar.update(TOTALS.events - bar.n)
            fresh = TOTALS.freshness_quantiles()
            bar.set_postfix(
                lag=sum(TOTALS.lag.values()), dlq=TOTALS.dead, late=TOTALS.late,
                p99_ms=round(fresh.get("p99_s", 0.0) * 1000), refresh=False,
            )  # fmt: skip
        bar.close()

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    return thread


def run(args: Any, settings: Settings) -> int:
    from featureline.repo import load_repo
    from streaming import kafka_read, metrics
    from streaming.pipeline import plan_stream
    from streaming.pipeline import run as run_pipeline

    repo = load_repo(settings)
    plan = plan_stream(
        settings, repo, start_from=args.start_from, only_views=args.views,
        max_future_s=args.max_future_s, flush_s=args.flush_s, max_records=args.max_records,
    )  # fmt: skip
    views = sorted(v.name for vs in plan.views.values() for v in vs)
    print(
        f"stream: {', '.join(views)} from {', '.join(plan.schemas)} "
        f"({len(plan.starts)} partitions, {plan.removed_files} uncommitted offline files removed)",
        file=sys.stderr,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: kafka_read.STOP.set())
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    done = threading.Event()
    show = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    progress = _progress(done, show)
    try:
        run_pipeline(plan, args.runner)
    finally:
        done.set()
        if progress is not None:
            progress.join(timeout=2)
        summary = metrics.TOTALS.summary()
        if args.stats_file:
            metrics.TOTALS.write(args.stats_file)
    print(
        f"stream: stopped after {summary['events']} events "
        f"({summary['dead_letters']} dead letters, {summary['late_events']} late)",
        file=sys.stderr,
    )
    return 0
