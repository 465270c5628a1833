"""`featureline bench worker`: scored vectors/s and request-to-score latency of one
inference worker process, features fetched from the serving API's tensor call.

One run, self-contained (Redis, broker and `featureline serve` on loopback, synthetic
online features for --users / --merchants entities):

- ours: the worker's scoring pipeline (dynamic batcher, GetOnlineTensor with
  --inflight fetches in flight, the model, JSON score records) driven closed-loop at
  each batch size, on each device: vectors/s, and p50/p99 latency from a request
  entering the worker to its score existing;
- Feast: the same model fed by Feast's `get_online_features` on the same Redis and
  entities (what a worker built on Feast's SDK does), at the same batch sizes;
- Kafka end to end: `featureline worker`'s own loop, Kafka in and Kafka out.

Prints a table per part and one JSON line (`{"bench": "worker", ...}`) to stdout.
argparse only at import time (`featureline bench --help` imports this package): torch,
grpc, redis and feast load inside `run`.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.worker.options import BenchOptions, configure
from featureline.settings import Settings

__all__ = ["configure", "run"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here, not above: steps imports torch (~2 s), which `--help` must not pay.
    from benchmarks.worker.steps import run_all

    summary = run_all(BenchOptions.from_args(args), settings)
    print(json.dumps(summary, sort_keys=True))
    return 0
