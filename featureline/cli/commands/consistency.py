"""`featureline consistency --sample N`: online vs offline, per feature."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from featureline.batch.backfill_cli import parse_instant
from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", type=int, default=1000, help="entities per entity type (default 1000)")
    parser.add_argument("--features", nargs="+", metavar="VIEW:FEATURE", help="only these features")
    parser.add_argument("--feature-service", help="the features of this feature service")
    parser.add_argument("--at", type=parse_instant, help="the instant compared (default: now)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for the HTML chart and JSON (default <home>/reports)",
    )


def run(args: Any, settings: Settings) -> int:
    # pyarrow, pandas, duckdb and the serving stack (~4 s): not for `--help`.
    from featureline.cli.consistency import check_consistency, format_table, write_report

    report = check_consistency(
        settings, args.sample, refs=args.features, service=args.feature_service, at=args.at, seed=args.seed
    )
    print(format_table(report))
    page, data = write_report(report, args.out or settings.home / "reports")
    print(f"chart: {page}\ndata:  {data}")
    return 0 if report.ok else 1
