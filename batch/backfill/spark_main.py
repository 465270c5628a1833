"""Entry point for `spark-submit`: a backfill on a Spark cluster.

    spark-submit --master spark://HOST:7077 batch/backfill/spark_main.py \
        --repo feature_repo --start yesterday --end today [--views ...]

Takes the options of `featureline backfill` (batch/backfill_cli.py, run without the
CLI package); the master is spark-submit's (batch.spark.get_spark keeps it). See
deploy/spark/backfill.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from featureline.batch import backfill_cli
from featureline.command import main_of


def main(argv: Sequence[str] | None = None) -> int:
    return main_of(backfill_cli, "featureline backfill", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
