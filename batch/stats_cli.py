"""`featureline stats`: per-feature, per-day statistics of the offline store, a training
set, or logged served vectors, stored under <offline>/_stats (batch.stats.store).

argparse only at import time (`--help` stays fast); the work loads inside `run`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from featureline.settings import Settings

EPILOG = """\
What is measured, per feature and per UTC day: count, null rate, mean, std, min, max,
quantiles p1..p99 (a log-bucket sketch: within 1% of the exact value), a 20-bar
histogram, the distinct count (HyperLogLog: 1.6% standard error), top values of
strings and bools. Days merge exactly, so a range's figures are its days' together.

Sources (one):
  (default)              the offline store: each plain view's rows from its batch
                         source, --start..--end (default: the last 7 days); written to
                         <offline>/_stats/views/<view>/<day>.json
  --training-set FILE    historical retrieval output (full feature names view__feature);
                         written to <offline>/_stats/training/<name>.json
  --logged PATH          Feast feature-logging files (a file or a directory); values not
                         PRESENT count as nulls; written to <offline>/_stats/logged/<name>.json
Aggregating views have no per-row values offline: measure them on a training set or
logged vectors. `featureline drift` compares two such measurements."""


def configure(parser: argparse.ArgumentParser) -> None:
    from featureline.batch.backfill_cli import parse_instant

    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--training-set", type=Path, metavar="FILE", help="a training set (Parquet)")
    which.add_argument("--logged", type=Path, metavar="PATH", help="logged vectors (Parquet file or dir)")
    parser.add_argument(
        "--start",
        type=parse_instant,
        metavar="T",
        help="offline store: first day (UTC; ISO 8601, today, yesterday)",
    )
    parser.add_argument(
        "--end", type=parse_instant, metavar="T", help="offline store: end, exclusive (default now)"
    )
    parser.add_argument("--views", nargs="+", metavar="VIEW", help="offline store: only these views")
    parser.add_argument(
        "--feature-service",
        default=None,
        metavar="NAME",
        help="map columns through this service's projections",
    )
    parser.add_argument(
        "--timestamp-column",
        default="event_timestamp",
        help="training set: the day column (default event_timestamp)",
    )
    parser.add_argument("--name", default=None, help="file name of a training set's or log's statistics")
    parser.add_argument("--out", type=Path, default=None, help="write the statistics JSON here instead")
    parser.add_argument("--json", action="store_true", help="print each feature's summary as JSON lines")


def run(args: Any, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from featureline.batch.stats.run import Source, measure
    from featureline.batch.stats.store import named_stats_path, write_text, write_view_days
    from featureline.repo import load_repo
    from featureline.stats.table import StatsSet

    end = args.end or datetime.now(UTC)
    start = args.start or (end - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    source = Source(start, end, tuple(args.views or ()), args.training_set, args.logged,
                    args.feature_service, args.timestamp_column)  # fmt: skip
    repo = load_repo(settings)
    stats, skipped = measure(repo, source)
    offline = settings.resolved_offline_dir
    if args.out is not None:
        write_text(args.out, stats.to_json())
        where = [args.out]
    elif args.training_set is not None or args.logged is not None:
        kind = "training" if args.training_set is not None else "logged"
        path = args.training_set or args.logged
        name = args.name or args.feature_service or path.name.split(".")[0]
        where = [named_stats_path(offline, kind, name)]
        write_text(where[0], stats.to_json())
    else:
        where = []
        for view in stats.source["views"]:
            sub = StatsSet({**stats.source, "view": view}, [f for f in stats.features if f.view == view])
            where += write_view_days(offline, sub)
    _print(stats, as_json=args.json)
    for note in skipped:
        print(f"skipped {note}")
    folder = where[0].parent if where else offline
    print(f"{len(stats.features)} features, {len(where)} file(s) written under {folder}")
    return 0


def _print(stats: Any, *, as_json: bool) -> None:
    header = f"{'feature':<40} {'kind':<8} {'days':>4} {'rows':>9} {'null%':>6} {'mean':>11} {'std':>10} "
    header += f"{'min':>10} {'p50':>10} {'p99':>10} {'max':>10} {'distinct':>9}"
    if not as_json:
        print(header)
    for f in stats.features:
        total = f.total()
        s = total.summary() if total is not None else {}
        if as_json:
            print(json.dumps({"view": f.view, "feature": f.feature, "days": sorted(f.days), **s}))
            continue
        null = "" if s.get("null_rate") is None else f"{100 * s['null_rate']:.1f}"
        cells = [_num(s.get(k)) for k in ("mean", "std", "min", "p50", "p99", "max")]
        print(
            f"{f.view + ':' + f.feature:<40} {s.get('kind', ''):<8} {len(f.days):>4} {s.get('count', 0):>9} "
            f"{null:>6} {cells[0]:>11} {cells[1]:>10} {cells[2]:>10} {cells[3]:>10} {cells[4]:>10} "
            f"{cells[5]:>10} {s.get('distinct', ''):>9}"
        )


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
