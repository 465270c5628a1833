"""`featureline consistency --sample N`: online vs offline, per feature; `--logged`: the
vectors `featureline serve` logged, recomputed offline at their request times."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from featureline.batch.backfill_cli import parse_instant
from featureline.errors import BadInputError
from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", type=int, default=1000, help="entities per entity type (default 1000)")
    parser.add_argument("--features", nargs="+", metavar="VIEW:FEATURE", help="only these features")
    parser.add_argument(
        "--feature-service", "--service", help="the features of this feature service (--logged: its log)"
    )
    parser.add_argument("--at", type=parse_instant, help="the instant compared (default: now)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for the HTML chart and JSON (default <home>/reports)",
    )
    logged = parser.add_argument_group("logged traffic (feature services with a Feast logging_config)")
    logged.add_argument(
        "--logged",
        action="store_true",
        help="compare the vectors `featureline serve` logged with historical retrieval at "
        "each row's request time (every logged service, or --service)",
    )
    logged.add_argument("--since", type=parse_instant, help="--logged: rows logged at or after this time")
    logged.add_argument(
        "--max-rows",
        type=int,
        default=10_000,
        help="--logged: the newest N logged rows per service (default 10000)",
    )


def run(args: Any, settings: Settings) -> int:
    if args.logged:
        if args.features or args.at:
            raise BadInputError("--logged compares logged rows at their own times: no --features or --at")
        return run_logged(args, settings)
    # pyarrow, pandas, duckdb and the serving stack (~4 s): not for `--help`.
    from featureline.cli.consistency import check_consistency, format_table, write_report

    report = check_consistency(
        settings, args.sample, refs=args.features, service=args.feature_service, at=args.at, seed=args.seed
    )
    print(format_table(report))
    page, data = write_report(report, args.out or settings.home / "reports")
    print(f"chart: {page}\ndata:  {data}")
    return 0 if report.ok else 1


def run_logged(args: Any, settings: Settings) -> int:
    from featureline.cli.consistency import format_table
    from featureline.cli.consistency.logged import check_logged, logged_services, write_logged_report
    from featureline.repo import load_repo

    repo = load_repo(settings)
    ok = True
    for service in logged_services(repo, args.feature_service):
        report = check_logged(settings, service, since=args.since, max_rows=args.max_rows, repo=repo)
        print(f"feature service {service}: {report.sample} logged rows from {report.path}")
        print(format_table(report))
        page, data = write_logged_report(report, args.out or settings.home / "reports")
        print(f"chart: {page}\ndata:  {data}")
        ok = ok and report.ok
    return 0 if ok else 1
