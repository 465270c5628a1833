"""The worker benchmark's options: argparse (`configure`, cheap: `--help` imports it)
and their checked values (`BenchOptions`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from featureline.errors import BadInputError

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


@dataclass(frozen=True)
class BenchOptions:
    devices: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seconds: float
    users: int
    merchants: int
    serve_workers: int
    inflight: int
    service: str
    model: Path | None
    kafka_requests: int
    feast: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchOptions:
        quick = bool(args.quick)
        sizes = _ints(args.batch_sizes or (QUICK_BATCHES if quick else DEFAULT_BATCHES), "--batch-sizes")
        options = cls(
            devices=_devices(args.devices),
            batch_sizes=sizes,
            seconds=args.seconds if args.seconds is not None else (1.5 if quick else 5.0),
            users=args.users if args.users is not None else (5_000 if quick else 100_000),
            merchants=args.merchants if args.merchants is not None else (500 if quick else 5_000),
            serve_workers=args.serve_workers,
            inflight=args.inflight,
            service=args.feature_service,
            model=Path(args.model) if args.model else None,
            kafka_requests=(
                args.kafka_requests if args.kafka_requests is not None else (5_000 if quick else 50_000)
            ),
            feast=not args.no_feast,
        )
        if options.seconds <= 0 or options.inflight < 1 or options.serve_workers < 1:
            raise BadInputError("--seconds must be > 0, --inflight and --serve-workers >= 1")
        if min(options.users, options.merchants) < 1 or options.kafka_requests < 0:
            raise BadInputError("--users and --merchants must be >= 1, --kafka-requests >= 0")
        return options


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInputError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise BadInputError(f"{flag} {text!r}: sizes must be >= 1")
    return values


def _devices(text: str) -> tuple[str, ...]:
    # Imported here, not above: torch costs ~2 s and `--help` imports this module; a
    # run parses its options first, then loads torch anyway.
    import torch

    from featureline.serving_api.workers.train import check_device

    if text == "auto":
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    for device in devices:
        check_device(device)
    return devices
