"""Featureline's benchmarks: each measures a part against Feast in the same run.

Not part of the installed package (pyproject packages only `featureline*`): they run
from a source checkout, through `featureline bench NAME`, which imports
`benchmarks.NAME` from the checkout and calls its `configure(parser)` (argparse only,
cheap: `--help` imports it) and `run(args, settings) -> int`.

One package per benchmark, above everything else (it may import any part of
`featureline`; nothing in `featureline` imports it):

    serve/        `featureline serve` vs `feast serve` (REST, gRPC, tensor, soak)
    serve_path/   the read path's CPU per request, in process (no sockets, no Feast)
    loadgen/      the HTTP/1.1 and gRPC load generator `serve` drives both servers with
    stream/       the stream job's throughput and freshness vs Feast's push
    historical/   point-in-time retrieval (local and Spark) vs get_historical_features
    materialize/  offline -> Redis vs `feast materialize`
    worker/       the inference worker's scored vectors/s (synthetic online features)

A new benchmark: a package here with `configure` and `run`, and one line in the table
of `featureline/cli/commands/bench.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

# The checkout root: `python -m benchmarks.…` children need it importable.
ROOT = Path(__file__).resolve().parent.parent


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, plus `extra`, with the checkout root first on
    PYTHONPATH, so a child started as `python -m benchmarks.…` finds this package
    whatever its working directory."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **(extra or {}), "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
