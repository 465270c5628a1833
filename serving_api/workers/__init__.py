"""Training and inference workers that take their feature layout from the definitions.

    from featureline.serving_api.workers import TrainConfig, run_worker, WorkerConfig

- `feature_layout(repo, service)`: the model's columns (the service's numeric features
  in order, full names) and the values the definitions declare for missing ones;
- `service_fingerprint(repo, service)`: the definitions hash a model is tied to;
- `fit_and_save(repo, table, layout, labels, out, TrainConfig(...))`: a training table
  (historical retrieval's output) -> model file; `featureline.cli.training.train` runs
  the retrieval first (it composes the batch part, which this package does not import);
- `run_worker(settings, WorkerConfig(...))`: Kafka -> batches -> tensor call -> model
  -> Kafka; refuses a model trained on other definitions (ModelMismatchError, exit 2);
- `DynamicBatcher`, `ScoringPipeline`: the batching and scoring core, source-agnostic;
- `FraudMLP`, `Scorer`, `load_model`, `save_model`: the model and its file.

Names load on first use: importing this package costs no torch, grpc or kafka import
(`featureline --help` and `featureline train --help` stay fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DynamicBatcher": "featureline.serving_api.workers.batcher",
    "Batch": "featureline.serving_api.workers.batcher",
    "feature_layout": "featureline.serving_api.workers.layout",
    "FeatureLayout": "featureline.serving_api.workers.layout",
    "service_fingerprint": "featureline.serving_api.workers.fingerprint",
    "service_definition": "featureline.serving_api.workers.fingerprint",
    "FraudMLP": "featureline.serving_api.workers.model",
    "ModelMeta": "featureline.serving_api.workers.model",
    "Scorer": "featureline.serving_api.workers.model",
    "load_model": "featureline.serving_api.workers.model",
    "save_model": "featureline.serving_api.workers.model",
    "TrainConfig": "featureline.serving_api.workers.train",
    "TrainResult": "featureline.serving_api.workers.train",
    "fit_and_save": "featureline.serving_api.workers.train",
    "ScoringPipeline": "featureline.serving_api.workers.pipeline",
    "PipelineConfig": "featureline.serving_api.workers.pipeline",
    "ScoringRequest": "featureline.serving_api.workers.messages",
    "WorkerConfig": "featureline.serving_api.workers.worker",
    "ModelMismatchError": "featureline.serving_api.workers.worker",
    "run_worker": "featureline.serving_api.workers.worker",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featureline.serving_api.workers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
