"""`featureline stream`: run the Beam streaming job until SIGTERM (then drain and exit)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from featureline.errors import FeaturelineError
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
        "--flink-master",
        metavar="HOST:PORT",
        help="FlinkRunner: the Flink cluster's REST address (Beam's --flink_master; "
        "default: Beam's, an embedded Flink)",
    )
    parser.add_argument(
        "--pipeline-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other Beam pipeline option, passed as --NAME=VALUE (repeatable), "
        "e.g. environment_type=EXTERNAL",
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
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the partitions (p %% N == i); each partition has one writer (default: 1)",
    )
    parser.add_argument(
        "--idle-exit-s",
        type=float,
        default=0.0,
        help="drain, flush, commit and exit once no message arrived for this many seconds "
        "(default: run until SIGTERM)",
    )
    parser.add_argument("--shard", default="", help=argparse.SUPPRESS)  # "i/N", set for workers
    parser.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                        help="progress line on stderr (auto: when it is a terminal)")  # fmt: skip


def _progress(stop: threading.Event, enabled: bool) -> threading.Thread | None:
    if not enabled:
        return None
    from tqdm import tqdm

    from featureline.streaming.metrics import TOTALS

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


def _idle_watchdog(idle_s: float, stop: threading.Event) -> threading.Thread | None:
    """Stop the job (as SIGTERM does) once the counters stood still for `idle_s`: the
    way a bounded run (the demo, a catch-up) ends after reading everything there is."""
    if idle_s <= 0:
        return None
    from featureline.streaming import kafka_read
    from featureline.streaming.metrics import TOTALS

    def loop() -> None:
        seen, since = -1, time.monotonic()
        while not stop.wait(0.25):
            now_seen = TOTALS.events + TOTALS.skipped + TOTALS.dead + TOTALS.late
            if now_seen != seen:
                seen, since = now_seen, time.monotonic()
            elif time.monotonic() - since >= idle_s:
                kafka_read.STOP.set()
                return

    thread = threading.Thread(target=loop, name="idle-exit", daemon=True)
    thread.start()
    return thread


def _run_workers(args: Any, argv: list[str]) -> int:
    """Start `args.workers` processes (one shard each), forward SIGTERM/SIGINT, wait,
    and merge their stats files."""
    import subprocess

    from featureline.streaming.metrics import merge_summaries

    children: list[subprocess.Popen[bytes]] = []
    stats: list[Path] = []
    for i in range(args.workers):
        extra = ["--shard", f"{i}/{args.workers}", "--workers", "1", "--progress", "off"]
        if args.stats_file:
            stats.append(args.stats_file.with_name(f"{args.stats_file.name}.{i}"))
            extra += ["--stats-file", str(stats[-1])]
        cmd = [sys.executable, "-m", "featureline.cli", *argv, *extra]
        children.append(subprocess.Popen(cmd))

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    if args.stats_file:
        merge_summaries(stats, args.stats_file)
    return max(codes)


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv less `name VALUE` / `name=VALUE` (the workers get their own)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def _shard(text: str) -> tuple[int, int]:
    from featureline.errors import BadInputError

    index, _, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise BadInputError(f"--shard {text!r}: expected I/N") from None
    if not 0 <= shard[0] < shard[1]:
        raise BadInputError(f"--shard {text!r}: expected 0 <= I < N")
    return shard


def beam_args(args: Any) -> list[str]:
    """The Beam pipeline options the runner flags ask for, as Beam's own argv."""
    from featureline.errors import BadInputError

    out: list[str] = []
    if args.flink_master:
        if args.runner != "FlinkRunner":
            raise BadInputError(f"--flink-master needs --runner FlinkRunner (not {args.runner})")
        out.append(f"--flink_master={args.flink_master}")
    for option in args.pipeline_option:
        name, sep, value = option.partition("=")
        name = name.lstrip("-")
        if not sep or not name:
            raise BadInputError(f"--pipeline-option {option!r}: expected NAME=VALUE")
        if name == "runner":
            raise BadInputError("--pipeline-option runner=...: use --runner")
        out.append(f"--{name}={value}")
    return out


def _require_redis(plan: Any) -> None:
    """A login, TLS or unreachable Redis: one line before Beam starts (not pages of trace)."""
    from featureline.online_store import open_store

    open_store(plan.redis).close()


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def run(args: Any, settings: Settings) -> int:
    from featureline.repo import load_repo
    from featureline.streaming import kafka_read, metrics
    from featureline.streaming.pipeline import plan_stream
    from featureline.streaming.pipeline import run as run_pipeline

    pipeline_args = beam_args(args)  # a bad flag fails before the repo is read
    if args.workers > 1 and not args.shard:
        load_repo(settings)  # parse once; the workers read the cached specs
        return _run_workers(args, _without_option(sys.argv[1:], "--workers"))
    repo = load_repo(settings)
    plan = plan_stream(
        settings, repo, start_from=args.start_from, only_views=args.views,
        shard=_shard(args.shard) if args.shard else (0, 1),
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
    _idle_watchdog(args.idle_exit_s, done)
    try:
        _require_redis(plan)
        run_pipeline(plan, args.runner, pipeline_args)
    except FeaturelineError:
        raise
    except Exception as exc:  # Beam wraps worker errors in pages of trace; give one line
        raise FeaturelineError(f"the stream job failed: {_last_line(exc)}") from exc
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
