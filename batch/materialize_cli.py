"""`featureline materialize (--start T --end T | --incremental) [--views ...]`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    from featureline.batch.backfill_cli import parse_instant

    parser.add_argument("--start", type=parse_instant, help="first event time (UTC), inclusive")
    parser.add_argument("--end", type=parse_instant, help="last event time (UTC), exclusive")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="from each view's last materialized end (or its ttl / tile retention) to --end or now",
    )
    parser.add_argument("--views", nargs="+", metavar="VIEW", help="only these views")
    parser.add_argument(
        "--workers", type=int, default=None, help="writer processes (default: one per 2 CPUs, at most 4)"
    )
    parser.add_argument(
        "--fail-on-violation",
        action="store_true",
        help="a view whose rows break one of its data-quality expectations (dq.* tags) is not "
        "written and the command exits 1 (default: written, the violations reported)",
    )


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(args: Any, settings: Settings) -> int:
    from featureline.batch.materialize import materialize
    from featureline.batch.quality import report_lines
    from featureline.errors import BadInputError

    if args.incremental == (args.start is not None) or (not args.incremental and args.end is None):
        raise BadInputError("give either --start and --end, or --incremental (with an optional --end)")
    if args.incremental:  # from each view's mark up to --end (default: now)
        report = materialize(
            settings, incremental=True, views=args.views, workers=args.workers, now=args.end,
            fail_on_violation=args.fail_on_violation,
        )  # fmt: skip
    else:
        report = materialize(
            settings, args.start, args.end, views=args.views, workers=args.workers,
            fail_on_violation=args.fail_on_violation,
        )  # fmt: skip
    print(f"{'view':<22} {'kind':<7} {'from':<21} {'to':<21} {'rows':>9} {'entities':>9} "
          f"{'written':>9} {'rows/s':>10}  status")  # fmt: skip
    for r in report.results:
        rate = f"{r.rows_read / r.seconds:,.0f}" if r.seconds > 0 else "-"
        status = ("ok" + (f" ({r.note})" if r.note else "")) if r.ok else f"error: {r.error}"
        print(
            f"{r.view:<22} {r.kind:<7} {_day(r.start_us):<21} {_day(r.end_us):<21} "
            f"{r.rows_read:>9} {r.entities:>9} {r.written:>9} {rate:>10}  {status}"
        )
    for r in report.results:
        for line in report_lines(r.view, r.violations):
            print(line)
    return 0 if report.ok else 1
