"""Train the fraud model from a FeatureService through historical retrieval.

Training composes two parts: the batch part's point-in-time retrieval builds the
training table, the serving part's workers fit the model the worker later scores with
(serving_api.workers.train). Neither part imports the other; this module, in the tools
layer above both, joins them. `featureline train` (cli/commands/train.py) runs it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from featureline.batch.historical import get_historical_features
from featureline.repo import load_repo
from featureline.serving_api.workers.train import (
    TIMESTAMP_COLUMN,
    TrainConfig,
    TrainResult,
    check_device,
    fit_and_save,
    read_labels,
    training_layout,
)
from featureline.settings import Settings
from featureline.specs import RepoSpec


def retrieve(settings: Settings, repo: RepoSpec, service: str, labels: pa.Table) -> pa.Table:
    """Point-in-time features for every labelled row, through historical retrieval
    (the local DuckDB engine: a training set of the demo's size takes ~1 s)."""
    table: pa.Table = get_historical_features(
        labels,
        feature_service=service,
        repo=repo,
        settings=settings,
        full_feature_names=True,
        timestamp_column=TIMESTAMP_COLUMN,
    )
    return table


def train(settings: Settings, labels_path: Path, out: Path, config: TrainConfig) -> TrainResult:
    """Labels -> historical features -> trained model saved at `out` with its fingerprint."""
    check_device(config.device)
    started = time.perf_counter()
    repo = load_repo(settings)
    layout = training_layout(repo, config.service)
    table = retrieve(settings, repo, config.service, read_labels(labels_path))
    meta = fit_and_save(repo, table, layout, labels_path, out, config)
    return TrainResult(out, meta, time.perf_counter() - started)
