"""Training from a feature service through historical retrieval, on generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featureline.cli import main
from featureline.serving_api.workers.fingerprint import service_fingerprint
from featureline.serving_api.workers.layout import FeatureLayout
from featureline.serving_api.workers.model import load_model
from featureline.serving_api.workers.train import TrainResult, training_set
from featureline.settings import Settings
from featureline.specs import RepoSpec

SERVICE = "fraud_training_v1"


def test_a_trained_model_carries_the_services_columns_and_fingerprint(
    trained: TrainResult, workers_repo: RepoSpec, layout: FeatureLayout, training_data: Path
) -> None:
    meta = trained.meta
    assert meta.service == SERVICE
    assert meta.fingerprint == service_fingerprint(workers_repo, SERVICE)
    assert meta.columns == layout.names
    labels = pq.read_table(training_data)
    assert meta.training["rows"] == labels.num_rows
    assert meta.training["positives"] == int(np.sum(labels["is_fraud"].to_numpy()))
    _, loaded = load_model(trained.path)
    assert loaded == meta


def test_the_model_learns_the_generators_fraud_patterns(trained: TrainResult) -> None:
    # The generator's fraud follows patterns the windowed features see (bursts, amounts
    # far above the user's usual); a model that learned nothing scores ~0.5.
    assert trained.meta.training["validation_auc"] > 0.75


def test_training_arrays_mark_nulls_and_non_finite_values_missing(layout: FeatureLayout) -> None:
    n = 4
    columns: dict[str, pa.Array] = {name: pa.array([1.0, 2.0, 3.0, 4.0]) for name in layout.names}
    first = layout.names[0]
    columns[first] = pa.array([1.0, None, float("nan"), float("inf")])
    columns["is_fraud"] = pa.array([0, 1, 0, 1], pa.int64())
    columns["event_timestamp"] = pa.array([1, 2, 3, 4], pa.timestamp("s", "UTC"))
    data = training_set(pa.table(columns), layout)
    assert data.values.shape == (n, len(layout.names))
    assert data.present[:, 0].tolist() == [1, 0, 0, 0]
    assert data.values[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert data.present[:, 1:].all()
    assert data.labels.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert data.ts_us.tolist() == [1_000_000, 2_000_000, 3_000_000, 4_000_000]


def test_train_refuses_a_missing_labels_file_with_exit_code_2(
    workers_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for key, value in workers_settings.env_vars().items():
        monkeypatch.setenv(key, value)
    code = main(["train", "--feature-service", SERVICE, "--labels", str(tmp_path / "none.parquet")])
    assert code == 2
    assert "labels file" in capsys.readouterr().err


def test_the_training_sets_statistics_lie_beside_the_model(
    trained: TrainResult, workers_repo: RepoSpec, training_data: Path
) -> None:
    # The reference of `featureline drift --reference fraud.pt` (featureline.stats).
    from featureline.specs import resolve_features
    from featureline.stats.table import StatsSet, model_stats_path

    stats = StatsSet.from_json(model_stats_path(trained.path).read_text())
    assert stats.source["service"] == SERVICE and stats.source["model"] == str(trained.path)
    assert stats.source["fingerprint"] == trained.meta.fingerprint
    wanted = {(f.view, f.feature) for f in resolve_features(workers_repo, service=SERVICE)}
    assert set(stats.by_key()) == wanted
    rows = pq.read_table(training_data).num_rows
    for feature in stats.features:
        total = feature.total()
        assert total is not None and total.count == rows, feature.key
