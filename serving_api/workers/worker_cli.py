"""`featureline worker`: score a Kafka stream of transactions with a trained model.

argparse only at import time: torch, grpc and kafka load inside `run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from featureline.errors import BadInputError
from featureline.serving_api.client_tls_flags import add_client_tls_flags, client_tls
from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Exits 2 if the model was trained on other definitions than the repo's "
        "(retrain with `featureline train`). Bad messages go to <in-topic>.dlq."
    )
    parser.add_argument("--model", type=Path, required=True, help="model file from `featureline train`")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--in-topic", default="transactions.scoring", help="requests (default transactions.scoring)"
    )
    parser.add_argument(
        "--out-topic", default="transactions.scores", help="scores (default transactions.scores)"
    )
    parser.add_argument(
        "--serving", default="", help="serving API gRPC host:port (default 127.0.0.1:$FEATURELINE_GRPC_PORT)"
    )
    parser.add_argument(
        "--group-id",
        default="featureline-worker",
        help="consumer group the input offsets are committed under (default featureline-worker); "
        "a restarted worker resumes from its group's offsets",
    )
    parser.add_argument("--max-batch", type=int, default=1024, help="rows per batch (default 1024)")
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="longest a request waits for its batch (default 5)"
    )
    parser.add_argument("--inflight", type=int, default=4, help="feature fetches in flight (default 4)")
    parser.add_argument(
        "--connections", type=int, default=2, help="TCP connections to the serving API (default 2)"
    )
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    parser.add_argument(
        "--idle-exit-s",
        type=float,
        default=None,
        help="score what was read, commit and exit once no message arrived for this many seconds "
        "(default: run until SIGTERM)",
    )
    add_client_tls_flags(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if min(args.max_batch, args.inflight, args.connections) < 1 or args.max_wait_ms < 0:
        raise BadInputError("--max-batch, --inflight and --connections must be >= 1, --max-wait-ms >= 0")
    from featureline.serving_api.workers.pipeline import PipelineConfig
    from featureline.serving_api.workers.train import check_device
    from featureline.serving_api.workers.worker import WorkerConfig, run_worker

    check_device(args.device)
    config = WorkerConfig(
        model=args.model,
        device=args.device,
        in_topic=args.in_topic,
        out_topic=args.out_topic,
        serving=args.serving,
        group_id=args.group_id,
        pipeline=PipelineConfig(args.max_batch, args.max_wait_ms / 1000, args.inflight),
        connections=args.connections,
        max_requests=args.max_requests,
        idle_exit_s=args.idle_exit_s,
        tls=client_tls(args),
    )
    print(f"worker: scoring {args.in_topic} -> {args.out_topic} on {args.device}", file=sys.stderr)
    stats = run_worker(settings, config)
    print(json.dumps(stats.summary()))
    return 0
