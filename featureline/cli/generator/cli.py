"""`featureline generate`: realistic, seeded card transactions to Kafka and/or Parquet."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from featureline.cli.generator.config import GeneratorConfig, make_config, parse_rate, parse_start
from featureline.errors import BadInputError
from featureline.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Size: at most two of --events, --hours, --rate (default 10,000 events over 24 h). "
        "Batch sources (user_profile, fraud labels) are always written under --out."
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--events", type=int, default=None, help="number of valid events")
    parser.add_argument("--hours", type=float, default=None, help="simulated duration in hours")
    parser.add_argument(
        "--rate",
        default=None,
        help="average events per simulated second, or with a unit: 3000/min, 200/h, 100000/d",
    )
    parser.add_argument(
        "--start",
        default=None,
        help="first event time, ISO-8601 (default: now minus the duration; now with --realtime)",
    )
    parser.add_argument("--users", type=int, default=1_000, help="card holders (default 1000)")
    parser.add_argument("--merchants", type=int, default=200, help="merchants (default 200)")
    parser.add_argument(
        "--to", choices=("kafka", "parquet", "both"), default="kafka", help="sink (default kafka)"
    )
    parser.add_argument("--topic", default="transactions", help="Kafka topic (default transactions)")
    parser.add_argument(
        "--partitions", type=int, default=3, help="partitions if the topic is created (default 3)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="offline dir (default: FEATURELINE_OFFLINE_DIR)"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="send each event when its time comes (streaming demo)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    if args.events is not None and args.events < 1:
        raise BadInputError(f"--events must be >= 1, got {args.events}")
    if args.partitions < 1:
        raise BadInputError(f"--partitions must be >= 1, got {args.partitions}")
    return make_config(
        seed=args.seed,
        events=args.events,
        hours=args.hours,
        rate_per_s=parse_rate(args.rate) if args.rate is not None else None,
        start=parse_start(args.start) if args.start is not None else None,
        users=args.users,
        merchants=args.merchants,
        realtime=args.realtime,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    config = config_from_args(args)
    out_dir = (args.out or settings.resolved_offline_dir).resolve()
    from featureline.cli.generator.parquet import write_batch_sources
    from featureline.cli.generator.table import generate_events

    to_kafka = args.to in ("kafka", "both")
    partitions = 0
    if to_kafka:  # fail before generating when Kafka is down
        from featureline.cli.devstack import ensure_topic

        partitions = ensure_topic(settings, args.topic, args.partitions)
    began = time.monotonic()
    events = generate_events(config)
    fraud = int(events["is_fraud"].to_numpy().sum())
    print(
        f"generated {events.num_rows:,} events ({fraud:,} fraud, {fraud / events.num_rows:.2%}) "
        f"from {config.start:%Y-%m-%dT%H:%M:%SZ} to {config.end:%Y-%m-%dT%H:%M:%SZ}, "
        f"seed {config.seed}, in {time.monotonic() - began:.2f} s"
    )
    if args.to in ("parquet", "both"):
        _to_parquet(config, events, out_dir)
    for name, path in write_batch_sources(config, events, out_dir).items():
        print(f"{name}: {path}")
    if to_kafka:
        _to_kafka(args, config, events, settings, partitions)
    return 0


def _to_parquet(config: GeneratorConfig, events: pa.Table, out_dir: Path) -> None:
    from featureline.cli.generator.parquet import RAW_SUBDIR, raw_part_name, write_raw_events

    files = write_raw_events(events, out_dir / RAW_SUBDIR, raw_part_name(config))
    print(f"parquet: {events.num_rows:,} raw events in {len(files)} file(s) under {out_dir / RAW_SUBDIR}")


def _to_kafka(
    args: argparse.Namespace,
    config: GeneratorConfig,
    events: pa.Table,
    settings: Settings,
    partitions: int,
) -> None:
    from featureline.cli.generator.encode import kafka_batch
    from featureline.cli.generator.producer import produce

    batch = kafka_batch(config, events)
    if args.realtime:
        print(f"kafka: pacing {len(batch):,} messages to the wall clock until {config.end:%H:%M:%SZ}")
    progress = not args.quiet and sys.stderr.isatty()
    report = produce(settings, batch, args.topic, realtime=args.realtime, progress=progress)
    print(
        f"kafka: {report.messages:,} messages ({report.malformed:,} malformed) to {args.topic!r} "
        f"({partitions} partitions) on {settings.kafka_bootstrap} in {report.seconds:.2f} s, "
        f"{report.per_second:,.0f} msg/s, compression {report.compression}"
    )
