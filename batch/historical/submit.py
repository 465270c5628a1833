"""Entry point for `spark-submit`: a historical retrieval on a Spark cluster.

    spark-submit --master spark://HOST:7077 batch/historical/submit.py \
        --repo feature_repo --entity-df rows.parquet --feature-service NAME --out out.parquet

Takes the `featureline historical` options (the engine is always spark; the master is
spark-submit's). See deploy/spark/README.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from featureline.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["historical", "--engine", "spark", *args])


if __name__ == "__main__":
    sys.exit(main())
