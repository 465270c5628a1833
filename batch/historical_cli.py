"""`featureline historical`: build a point-in-time-correct training set into a Parquet file.

    featureline historical --repo feature_repo --entity-df rows.parquet \
        --feature-service fraud_training_v1 --out train.parquet [--engine spark]

argparse only at import time (`--help` stays fast); the engines load inside `run`.
The output is written to a temporary file and renamed, so a failure leaves no partial
`--out` file (and keeps an older one intact).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError
from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--entity-df",
        required=True,
        metavar="FILE",
        help="request rows: .parquet or .csv with the join keys and a timestamp column",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--features", metavar="VIEW:FEATURE,...", help="comma-separated feature refs")
    which.add_argument("--feature-service", metavar="NAME", help="a feature service of the repo")
    parser.add_argument("--out", required=True, metavar="FILE.parquet", help="where to write the result")
    parser.add_argument(
        "--engine", choices=("local", "spark"), default="local", help="DuckDB (local) or Spark"
    )
    parser.add_argument(
        "--full-feature-names", action="store_true", help="name columns view__feature, as Feast does"
    )
    parser.add_argument(
        "--timestamp-column",
        default=None,
        help="the entity frame's time column (default: event_timestamp, or its one timestamp column)",
    )
    parser.add_argument(
        "--memory-limit",
        default=None,
        help="local engine: DuckDB memory limit, e.g. 4GB (default: half of RAM)",
    )
    parser.add_argument(
        "--spark-master",
        default=None,
        help="spark engine: master URL (default: $FEATURELINE_SPARK_MASTER or local[2])",
    )


def run(args: Any, settings: Settings) -> int:
    from featureline.batch.historical import LocalOptions, get_historical_features
    from featureline.offline import atomic_write_table
    from featureline.repo import load_repo

    out = Path(args.out)
    if out.suffix.lower() != ".parquet":
        raise BadInputError(f"--out {str(out)!r}: the result is written as Parquet; name a .parquet file")
    refs = None
    if args.features is not None:
        refs = [r.strip() for r in args.features.split(",") if r.strip()]
    repo = load_repo(settings)
    started = time.perf_counter()
    table = get_historical_features(
        Path(args.entity_df),
        refs,
        feature_service=args.feature_service,
        repo=repo,
        full_feature_names=args.full_feature_names,
        engine=args.engine,
        timestamp_column=args.timestamp_column,
        local_options=LocalOptions(memory_limit=args.memory_limit),
        spark_master=args.spark_master,
    )
    retrieved = time.perf_counter() - started
    atomic_write_table(table, out)
    total = time.perf_counter() - started
    rows = table.num_rows
    print(
        f"wrote {rows} rows x {table.num_columns} columns to {out} "
        f"(retrieval {retrieved:.2f} s, {rows / max(retrieved, 1e-9):,.0f} rows/s; total {total:.2f} s)",
    )
    return 0
