"""The model's properties on every device this machine has: CPU always, CUDA when a
GPU is present (the GPU machine runs this file too; see BENCHMARKS.md, Workers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featureline.serving_api.workers.model import FraudMLP, Scorer, fit_normalization
from featureline.serving_api.workers.train import TrainConfig, TrainingSet, _fit, roc_auc

# CUDA is a recorded skip where no GPU is present, not a case left out of the run.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(),
            reason="no CUDA device here: the GPU machine runs this file (BENCHMARKS.md, Workers)",
        ),
    ),
]
COLS = 6
DEFAULTS: list[float | None] = [0.0, 0.0, None, None, None, None]


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(3, 2, size=(rows, COLS)) * rng.choice([-1, 1], (rows, COLS))
    present = (rng.random((rows, COLS)) > 0.2).astype(np.uint8)
    return values.astype(np.float32), present


@pytest.mark.parametrize("device", DEVICES)
def test_scores_do_not_depend_on_how_rows_are_batched(device: str) -> None:
    torch.manual_seed(3)
    fit_values, fit_present = _data(500, seed=1)
    scorer = Scorer(FraudMLP(fit_normalization(fit_values, fit_present, DEFAULTS)).eval(), device)
    values, present = _data(1000, seed=5)
    batched = scorer.score(values, present)
    one_by_one = np.concatenate([scorer.score(values[i : i + 1], present[i : i + 1]) for i in range(200)])
    assert np.array_equal(one_by_one, batched[:200])
    for size in (3, 63, 65, 257, 1000):
        parts = [scorer.score(values[i : i + size], present[i : i + size]) for i in range(0, 1000, size)]
        assert np.array_equal(np.concatenate(parts), batched), size


@pytest.mark.parametrize("device", DEVICES)
def test_training_learns_on_the_device(device: str) -> None:
    values, present = _data(4000, seed=9)
    # Fraud when column 2 is present and positive: a pattern an MLP must find through
    # the presence mask.
    labels = ((values[:, 2] > 0) & (present[:, 2] == 1)).astype(np.float32)
    data = TrainingSet(values, present, labels, np.arange(4000, dtype=np.int64))
    torch.manual_seed(7)
    model = FraudMLP(fit_normalization(values[:3000], present[:3000], DEFAULTS)).to(device)
    losses = _fit(model, data, np.arange(3000), TrainConfig(epochs=8, device=device))
    assert losses[-1] < losses[0]
    scores = Scorer(model, device).score(values[3000:], present[3000:])
    auc = roc_auc(labels[3000:], scores)
    assert auc is not None and auc > 0.95, auc
