"""The fraud model's pure parts: missing values, batch-independent scores, file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featureline.errors import BadInputError
from featureline.serving_api.workers.model import (
    FraudMLP,
    ModelMeta,
    Scorer,
    fit_normalization,
    load_model,
    save_model,
)
from featureline.serving_api.workers.train import roc_auc

COLS = 6
# Columns 0-1 have a declared value when missing (count/sum of an empty window: 0).
DEFAULTS: list[float | None] = [0.0, 0.0, None, None, None, None]


def _data(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(3, 2, size=(rows, COLS)) * rng.choice([-1, 1], (rows, COLS))
    present = (rng.random((rows, COLS)) > 0.2).astype(np.uint8)
    return values.astype(np.float32), present


def _model(seed: int = 3) -> FraudMLP:
    torch.manual_seed(seed)
    values, present = _data(500)
    return FraudMLP(fit_normalization(values, present, DEFAULTS)).eval()


# Scores independent of batching: tests/workers/test_model_devices.py (every device).


def test_a_missing_value_is_ignored_whatever_the_tensor_holds_there() -> None:
    scorer = Scorer(_model(), "cpu")
    values, present = _data(200, seed=9)
    garbage = np.where(present.astype(bool), values, np.float32(1e30))
    assert np.array_equal(scorer.score(values, present), scorer.score(garbage, present))


def test_missing_columns_with_a_declared_value_score_as_that_value() -> None:
    scorer = Scorer(_model(), "cpu")
    values, present = _data(100, seed=11)
    present[:, 2:] = 1
    missing = present.copy()
    missing[:, 0] = 0
    as_zero = values.copy()
    as_zero[:, 0] = 0.0
    assert np.array_equal(scorer.score(values, missing), scorer.score(as_zero, present))
    # Without a declared value, "missing" is its own signal, not the mean.
    missing_free = present.copy()
    missing_free[:, 2] = 0
    assert not np.array_equal(scorer.score(values, missing_free), scorer.score(values, present))


def test_normalization_fills_declared_values_and_masks_the_rest() -> None:
    values = np.array([[1.0, 5.0], [3.0, 7.0], [100.0, 9.0]], dtype=np.float32)
    present = np.array([[1, 1], [1, 1], [0, 1]], dtype=np.uint8)
    norm = fit_normalization(values, present, [None, 2.0])
    mean = float(np.mean(np.arcsinh([1.0, 3.0])))  # row 3 of column 0 is not present
    assert norm.center[0] == pytest.approx(mean)
    assert norm.fill == (pytest.approx(mean), pytest.approx(float(np.arcsinh(2.0))))
    assert norm.masked == (True, False)


def test_a_saved_model_scores_exactly_as_before(tmp_path: Path) -> None:
    model = _model()
    values, present = _data(300)
    norm = fit_normalization(values, present, DEFAULTS)
    meta = ModelMeta("svc", "abc123", tuple(f"c{j}" for j in range(COLS)), norm, (64, 32), {"rows": 300})
    path = tmp_path / "m" / "model.pt"
    save_model(path, model, meta)
    loaded, loaded_meta = load_model(path)
    assert loaded_meta == meta
    before = Scorer(model, "cpu").score(values, present)
    assert np.array_equal(Scorer(loaded, "cpu").score(values, present), before)


def test_a_file_that_is_not_a_model_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(BadInputError, match="not a Featureline model file"):
        load_model(path)
    with pytest.raises(BadInputError, match="does not exist"):
        load_model(tmp_path / "absent.pt")


def test_roc_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.2).astype(np.float32)
    scores = np.round(rng.random(300) + labels * 0.3, 1)  # ties on purpose
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(labels, scores) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert roc_auc(np.zeros(5), np.arange(5.0)) is None
