"""`featureline bench NAME`: dispatch to the benchmark that lives beside the code it measures.

Each benchmark module provides `configure(parser)` and `run(args, settings) -> int`, and
prints our figures, Feast's figures from the same run, and their ratios.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from featureline.errors import BadInputError
from featureline.settings import Settings

BENCHMARKS: dict[str, tuple[str, str]] = {
    "historical": (
        "featureline.batch.bench_historical",
        "point-in-time retrieval vs Feast get_historical_features",
    ),
    "materialize": ("featureline.batch.bench_materialize", "offline -> Redis vs feast materialize"),
    "serve": ("featureline.serving_api.bench", "REST/gRPC serving vs feast serve"),
    "stream": ("featureline.streaming.bench", "end-to-end stream throughput and freshness vs Feast push"),
    "worker": ("featureline.serving_api.workers.bench", "scored vectors/s of the inference worker"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    for name, (module, help_text) in BENCHMARKS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        child.set_defaults(_bench_module=module)
        try:
            importlib.import_module(module).configure(child)
        except ModuleNotFoundError:
            child.set_defaults(_bench_missing=True)


def run(args: Any, settings: Settings) -> int:
    if getattr(args, "bench", None) is None:
        raise BadInputError(f"name a benchmark: {', '.join(BENCHMARKS)}")
    if getattr(args, "_bench_missing", False):
        raise BadInputError(f"benchmark {args.bench!r} is not built yet")
    return int(importlib.import_module(args._bench_module).run(args, settings) or 0)
