"""`featureline train`: train the fraud model from a FeatureService's historical features.

argparse only at import time: torch and the retrieval engine load inside `run`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from featureline.errors import BadInputError
from featureline.settings import Settings

DEFAULT_SERVICE = "fraud_training_v1"


def default_model_path(settings: Settings, service: str) -> Path:
    return settings.home / "models" / f"{service}.pt"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The labels file is the entity frame of a point-in-time retrieval: every row's "
        "features are taken as of its event_timestamp. The saved model carries the "
        "service's definitions fingerprint; `featureline worker` refuses it once they change."
    )
    parser.add_argument(
        "--feature-service", default=DEFAULT_SERVICE, help=f"features to train on (default {DEFAULT_SERVICE})"
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="labels Parquet (default: <offline dir>/labels/fraud_labels.parquet)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="model file (default: <home>/models/<service>.pt)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set (default 20)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.epochs < 1:
        raise BadInputError(f"--epochs must be >= 1, got {args.epochs}")
    # torch (seconds to import), pyarrow and the retrieval engine: not for `--help`.
    from featureline.cli.training import train
    from featureline.serving_api.workers.train import TrainConfig

    labels = args.labels or settings.resolved_offline_dir / "labels" / "fraud_labels.parquet"
    out = args.out or default_model_path(settings, args.feature_service)
    config = TrainConfig(service=args.feature_service, epochs=args.epochs, device=args.device, seed=args.seed)
    result = train(settings, labels, out, config)
    meta = result.meta
    print(
        f"trained on {meta.training['train_rows']:,} rows ({meta.training['positives']:,} fraud "
        f"in all), validated on {meta.training['validation_rows']:,}: "
        f"AUC {_fmt(meta.training['validation_auc'])} in {result.seconds:.1f} s"
    )
    print(f"model {out} for feature service {meta.service} (definitions {meta.fingerprint})")
    print(json.dumps({"model": str(out), "fingerprint": meta.fingerprint, **meta.training}))
    return 0


def _fmt(value: float | None) -> str:
    return "n/a (one class only)" if value is None else f"{value:.3f}"
