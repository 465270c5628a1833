"""Entry point for `spark-submit`: a historical retrieval on a Spark cluster.

    spark-submit --master spark://HOST:7077 batch/historical/submit.py \
        --repo feature_repo --entity-df rows.parquet --feature-service NAME --out out.parquet

Takes the `featureline historical` options (batch/historical_cli.py, run without the
CLI package; the engine is always spark, the master spark-submit's). See
deploy/spark/README.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from featureline.batch import historical_cli
from featureline.command import main_of


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return main_of(historical_cli, "featureline historical", ["--engine", "spark", *args])


if __name__ == "__main__":
    sys.exit(main())
