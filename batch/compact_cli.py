"""`featureline compact`: merge each date partition of the offline store into one file.

Streaming appends a file per (partition, offset range) and flush; retrieval and Feast
then open every one of them. Only dates before `--until` (default: today, UTC) are
compacted: the streaming job still writes today's partition and names its files by
offset range to drop uncommitted ones on restart, so an open partition is left alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--until",
        default=None,
        help="compact dates before this one, YYYY-MM-DD (default: today, UTC)",
    )
    parser.add_argument(
        "--min-files", type=int, default=2, help="leave partitions with fewer files alone (default 2)"
    )


def offline_datasets(settings: Settings) -> list[Any]:
    """Every date-partitioned dataset of the repo's offline store: raw topics and views."""
    from featureline.offline import PARTITION_COLUMN, raw_dir
    from featureline.repo import load_repo

    repo = load_repo(settings)
    offline = settings.resolved_offline_dir
    bases = {raw_dir(offline, v.stream_source.topic) for v in repo.views.values() if v.stream_source}
    bases |= {offline / name for name in repo.views}
    return sorted(b for b in bases if b.is_dir() and any(b.glob(f"{PARTITION_COLUMN}=*")))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from featureline.batch.historical.compact import compact_dataset

    until = args.until or dt.datetime.now(dt.UTC).date().isoformat()
    datasets = offline_datasets(settings)
    if not datasets:
        print(f"nothing to compact under {settings.resolved_offline_dir}")
    for base in datasets:
        report = compact_dataset(base, until=until, min_files=args.min_files)
        print(
            f"{base}: {report.partitions} partition(s), {report.files_before} -> {report.files_after} "
            f"files, {report.rows:,} rows"
        )
    return 0
