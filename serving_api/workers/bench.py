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
argparse only at import time: torch, grpc, redis and feast load inside `run`.
"""

from __future__ import annotations

import argparse
import os

from featureline.settings import Settings

DEFAULT_BATCHES = "1,16,128,1024,4096"
QUICK_BATCHES = "1,64,1024"
GOAL_VECTORS_PER_S = 100_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        default="auto",
        help="cpu, cuda or both, comma-separated (default auto: cpu, and cuda if present)",
    )
    parser.add_argument("--batch-sizes", default=None, help=f"batch sizes (default {DEFAULT_BATCHES})")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per point (default 5)")
    parser.add_argument("--users", type=int, default=None, help="user entities in Redis (default 100000)")
    parser.add_argument("--merchants", type=int, default=None, help="merchant entities (default 5000)")
    parser.add_argument(
        "--serve-workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="featureline serve worker processes (default: half the cores)",
    )
    parser.add_argument("--inflight", type=int, default=4, help="feature fetches in flight (default 4)")
    parser.add_argument(
        "--feature-service", default="fraud_training_v1", help="service to score (default fraud_training_v1)"
    )
    parser.add_argument("--model", default=None, help="a trained model (default: an untrained one)")
    parser.add_argument(
        "--kafka-requests",
        type=int,
        default=None,
        help="requests for the Kafka end-to-end part (default 50000, 0: skip)",
    )
    parser.add_argument("--no-feast", action="store_true", help="skip Feast's side")
    parser.add_argument("--quick", action="store_true", help="small sizes, ~1 minute")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from featureline.serving_api.workers.bench_run import BenchOptions, run_bench

    return run_bench(BenchOptions.from_args(args), settings)
