"""`featureline backfill --start T --end T [--views ...] [--master URL]`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from featureline.settings import Settings


def parse_instant(text: str) -> datetime:
    """ISO 8601 date or date-time (a naive value is UTC, semantics.md), or `now`,
    `today` / `yesterday` (UTC midnights: what a nightly job passes)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    relative = {"now": datetime.now(UTC), "today": midnight, "yesterday": midnight - timedelta(days=1)}
    if text.lower() in relative:
        return relative[text.lower()]
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # argparse turns this into "error: argument --start: <message>", exit 2.
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-01-01 or 2026-01-01T12:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start", required=True, type=parse_instant, help="first day (UTC; ISO 8601, today, yesterday)"
    )
    parser.add_argument(
        "--end", required=True, type=parse_instant, help="end, exclusive (widened to a whole day)"
    )
    parser.add_argument("--views", nargs="+", metavar="VIEW", help="only these views")
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master URL (default $FEATURELINE_SPARK_MASTER or local[2])",
    )
    parser.add_argument("--partitions", type=int, default=None, help="Spark partitions per view (default 4)")
    parser.add_argument(
        "--fail-on-violation",
        action="store_true",
        help="a view whose events break one of its data-quality expectations (dq.* tags) is not "
        "written and the command exits 1 (default: written, the violations reported)",
    )


def run(args: Any, settings: Settings) -> int:
    from featureline.batch.backfill import backfill
    from featureline.batch.quality import report_lines

    report = backfill(
        settings, args.start, args.end, views=args.views, master=args.master,
        partitions=args.partitions, fail_on_violation=args.fail_on_violation,
    )  # fmt: skip
    start = datetime.fromtimestamp(report.start_us / 1e6, UTC).date()
    end = datetime.fromtimestamp(report.end_us / 1e6, UTC).date()
    print(f"backfill {start} .. {end} (end exclusive) -> {settings.resolved_offline_dir}")
    print(f"{'view':<22} {'kind':<12} {'rows':>10} {'tiles':>10} {'seconds':>8}  status")
    for r in report.results:
        status = "ok" if r.ok else f"error: {r.error}"
        print(f"{r.view:<22} {r.kind:<12} {r.rows:>10} {r.tiles:>10} {r.seconds:>8.1f}  {status}")
    for r in report.results:
        for line in report_lines(r.view, r.violations):
            print(line)
    return 0 if report.ok else 1
