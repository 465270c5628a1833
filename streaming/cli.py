"""`featureline stream`: run the Beam streaming job until SIGTERM (then drain and exit)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError, FeaturelineError
from featureline.settings import Settings

DEFAULT_SESSION_TIMEOUT_S = 10.0  # streaming.group's (not imported: --help must not load kafka)

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
        help="processes sharing the partitions; each partition has one writer (default: 1)",
    )
    parser.add_argument(
        "--group-mode",
        choices=("auto", "static", "dynamic"),
        default="auto",
        help="dynamic: join the consumer group <group>.members; partitions move between the "
        "processes (of --workers, or separate ones on other machines) when one dies, joins "
        "or leaves (a join costs a few seconds). static: no join, this process owns every "
        "partition, or those of --shard. auto (default): dynamic when --workers > 1",
    )
    parser.add_argument(
        "--session-timeout-s",
        type=float,
        default=DEFAULT_SESSION_TIMEOUT_S,
        help="dynamic: a member silent this long is presumed dead and its partitions "
        "move (default: %(default)s)",
    )
    parser.add_argument(
        "--instance-id",
        default="",
        help="dynamic: static group membership (Kafka's group.instance.id): a restart "
        "within the session timeout keeps the partitions without a rebalance "
        "(--workers N: ID-0 .. ID-N-1)",
    )
    parser.add_argument(
        "--idle-exit-s",
        type=float,
        default=0.0,
        help="drain, flush, commit and exit once no message arrived for this many seconds "
        "(default: run until SIGTERM)",
    )
    parser.add_argument(
        "--shard",
        default="",
        metavar="I/N",
        help="static: own only partitions p with p %% N == I (N processes on N machines "
        "sharing a topic without a group; a dead one's partitions wait for its restart)",
    )
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


def _idle_watchdog(idle_s: float, stop: threading.Event, exiting: threading.Event) -> threading.Thread | None:
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
                exiting.set()
                kafka_read.STOP.set()
                return

    thread = threading.Thread(target=loop, name="idle-exit", daemon=True)
    thread.start()
    return thread


def _run_workers(args: Any, argv: list[str]) -> int:
    """Start `args.workers` processes (group members, or one shard each), forward
    SIGTERM/SIGINT, wait, and merge their stats files."""
    import subprocess

    from featureline.streaming.metrics import merge_summaries

    children: list[subprocess.Popen[bytes]] = []
    stats: list[Path] = []
    mode = _group_mode(args)
    for i in range(args.workers):
        extra = ["--workers", "1", "--progress", "off", "--group-mode", mode]
        if mode == "static":
            extra += ["--shard", f"{i}/{args.workers}"]
        elif args.instance_id:
            extra += ["--instance-id", f"{args.instance_id}-{i}"]
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


def _group_mode(args: Any) -> str:
    """static or dynamic, from --group-mode (auto: dynamic when --workers > 1)."""
    mode = str(args.group_mode)
    if mode == "auto":
        mode = "dynamic" if args.workers > 1 else "static"
    if mode == "dynamic" and args.shard:
        raise BadInputError("--shard is static partitioning: not with --group-mode dynamic")
    if mode == "dynamic" and args.runner != "DirectRunner":
        raise BadInputError(f"--group-mode dynamic runs on the DirectRunner (not {args.runner})")
    if args.instance_id and mode != "dynamic":
        raise BadInputError("--instance-id is a group membership: it needs --group-mode dynamic")
    return mode


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

    pipeline_args = beam_args(args)  # a bad flag fails before the repo is read
    mode = _group_mode(args)
    if args.workers > 1:
        load_repo(settings)  # parse once; the workers read the cached specs
        argv = _without_option(_without_option(sys.argv[1:], "--workers"), "--group-mode")
        return _run_workers(args, argv)
    repo = load_repo(settings)
    exiting = threading.Event()  # SIGTERM or idle: drain and leave (STOP alone: a rebalance)

    def on_signal(*_: Any) -> None:
        exiting.set()
        kafka_read.STOP.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    done = threading.Event()
    show = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    progress = _progress(done, show)
    _idle_watchdog(args.idle_exit_s, done, exiting)
    try:
        if mode == "dynamic":
            _run_dynamic(args, settings, repo, pipeline_args, exiting)
        else:
            _run_plan(args, _plan(args, settings, repo, shard=_shard(args.shard) if args.shard else (0, 1)),
                      pipeline_args)  # fmt: skip
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


def _plan(args: Any, settings: Settings, repo: Any, **where: Any) -> Any:
    from featureline.streaming.pipeline import plan_stream

    return plan_stream(
        settings, repo, start_from=args.start_from, only_views=args.views,
        max_future_s=args.max_future_s, flush_s=args.flush_s, max_records=args.max_records, **where,
    )  # fmt: skip


def _run_plan(args: Any, plan: Any, pipeline_args: list[str]) -> None:
    """Run one pipeline over the plan's partitions until STOP; one line on failure."""
    from featureline.streaming.pipeline import run as run_pipeline

    views = sorted(v.name for vs in plan.views.values() for v in vs)
    parts = ", ".join(f"{t}:{p}" for t, p in sorted(plan.starts))
    print(
        f"stream: {', '.join(views)} from {', '.join(plan.schemas)} "
        f"({len(plan.starts)} partitions: {parts}; {plan.removed_files} uncommitted offline files removed)",
        file=sys.stderr,
    )
    try:
        _require_redis(plan)
        run_pipeline(plan, args.runner, pipeline_args)
    except FeaturelineError:
        raise
    except Exception as exc:  # Beam wraps worker errors in pages of trace; give one line
        raise FeaturelineError(f"the stream job failed: {_last_line(exc)}") from exc


def _run_dynamic(args: Any, settings: Settings, repo: Any, pipeline_args: list[str],
                 exiting: threading.Event) -> None:  # fmt: skip
    """Join the group; a pipeline per assignment until exiting (streaming.group)."""
    from featureline.streaming import kafka_read
    from featureline.streaming.group import GroupMember, Handover, run_member

    base = _plan(args, settings, repo, assigned=())  # the topics and Kafka; no partition
    handover = Handover(kafka_read.STOP.set, kafka_read.STOP.clear, exiting)
    member = GroupMember(
        base.bootstrap, base.group, sorted(base.schemas), handover,
        session_timeout_s=args.session_timeout_s, instance_id=args.instance_id, options=base.kafka_options,
    )  # fmt: skip
    print(f"stream: joining consumer group {member.group}", file=sys.stderr)

    def run_assignment(parts: Any) -> None:
        print(
            f"stream: assigned {len(parts)} partitions {time.monotonic() - handover.idle_since:.2f} s "
            f"after joining (the last drain took {handover.drain_s:.2f} s)",
            file=sys.stderr,
        )
        _run_plan(args, _plan(args, settings, repo, assigned=parts), pipeline_args)

    try:
        run_member(handover, run_assignment)
    finally:
        member.close()
