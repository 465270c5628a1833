"""Entry point for `spark-submit`: a backfill on a Spark cluster.

    spark-submit --master spark://HOST:7077 batch/backfill/spark_main.py \
        --repo feature_repo --start yesterday --end today [--views ...]

Takes the options of `featureline backfill`; the master is spark-submit's
(batch.spark.get_spark keeps it). See deploy/spark/backfill.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from featureline.cli import main as cli_main

    return cli_main(["backfill", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
