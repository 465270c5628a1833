"""`featureline stats` and `featureline drift` end to end on a real Parquet offline store
(a repo given as a specs file: no Feast import): per-day statistics land under
<offline>/_stats, a day whose credit limits were shifted on purpose drifts against a
pinned week and against a model's training-set statistics (written by the train hook),
an unshifted day does not, and the metrics file says so. Logged vectors in Feast's
layout count values not served (status != PRESENT) as nulls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families
from stats_data import SHIFTED_DAY, stats_repo, write_days

from featureline.cli.main import main
from featureline.specs import (
    RepoSpec,
)
from featureline.stats.table import StatsSet


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, RepoSpec, list[pa.Table]]:
    offline = tmp_path / "offline"
    days = write_days(offline)
    repo = stats_repo(offline)
    specs = tmp_path / "specs.json"
    specs.write_text(repo.to_json())
    monkeypatch.setenv("FEATURELINE_SPECS_FILE", str(specs))
    monkeypatch.setenv("FEATURELINE_REPO", str(tmp_path / "no-repo"))
    monkeypatch.setenv("FEATURELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEATURELINE_OFFLINE_DIR", str(offline))
    return offline, repo, days


def _metrics(prom: Path) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("feature", "")): s.value
        for family in text_string_to_metric_families(prom.read_text())
        for s in family.samples
    }


def test_stats_writes_one_file_per_view_and_day(offline: tuple[Path, RepoSpec, list[pa.Table]],
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    root, _, days = offline
    assert main(["stats", "--start", "2024-03-01", "--end", "2024-03-09"]) == 0
    out = capsys.readouterr().out
    assert "user_profile:credit_limit" in out and "skipped user_txn_stats: aggregates" in out
    files = sorted((root / "_stats" / "views" / "user_profile").glob("*.json"))
    assert [f.stem for f in files] == [f"2024-03-0{d}" for d in range(1, 9)]
    third = (
        StatsSet.from_json(files[2].read_text()).by_key()[("user_profile", "credit_limit")].days["2024-03-03"]
    )
    limits = days[2]["credit_limit"]
    assert (third.count, third.nulls) == (len(limits), limits.null_count)
    assert third.mean == pytest.approx(float(np.mean(limits.drop_null().to_numpy())), rel=1e-12)


def test_a_shifted_day_drifts_against_a_pinned_week(offline: tuple[Path, RepoSpec, list[pa.Table]]) -> None:
    root, _, _ = offline
    week = ["--reference-start", "2024-03-01", "--reference-end", "2024-03-07"]
    assert main(["drift", *week, "--start", "2024-03-07", "--end", "2024-03-08", "--fail-on-drift"]) == 0
    assert main(["drift", *week, "--start", "2024-03-08", "--end", "2024-03-09", "--fail-on-drift"]) == 1
    report = json.loads((root / "_stats" / "drift" / "range-2024-03-01-2024-03-07.json").read_text())
    by_feature = {f["feature"]: f for f in report["features"]}
    assert by_feature["credit_limit"]["drifted"] and by_feature["credit_limit"]["psi"] > 0.2
    assert not by_feature["account_age_days"]["drifted"] and not by_feature["home_country"]["drifted"]
    assert report["thresholds"] == {"psi": 0.2, "p_value": 0.01}
    metrics = _metrics(root / "_stats" / "drift" / "range-2024-03-01-2024-03-07.prom")
    assert metrics[("featureline_feature_drift", "credit_limit")] == 1.0
    assert metrics[("featureline_feature_drift", "home_country")] == 0.0
    assert metrics[("featureline_feature_drift_psi", "credit_limit")] > 0.2


def test_a_model_reference_from_the_train_hook(offline: tuple[Path, RepoSpec, list[pa.Table]], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from featureline.serving_api.workers.train import save_training_stats

    _, repo, days = offline
    week = pa.concat_tables(days[:7])
    training = pa.table({
        "user_id": week["user_id"],
        "user_profile__account_age_days": week["account_age_days"],
        "user_profile__credit_limit": week["credit_limit"],
        "event_timestamp": week["event_timestamp"],
        "is_fraud": pa.array(np.zeros(week.num_rows, np.int64)),
    })  # fmt: skip
    model = tmp_path / "models" / "fraud_training_v1.pt"
    sidecar = save_training_stats(repo, training, "fraud_training_v1", tmp_path / "labels.parquet", model)
    assert sidecar == model.with_suffix(".stats.json") and sidecar.is_file()
    code = main(["drift", "--reference", str(model), "--start", "2024-03-08", "--end", "2024-03-09"])
    assert code == 0  # drift is reported, not an error, without --fail-on-drift
    out = capsys.readouterr().out
    assert "1 of 2 features drifted" in out
    report = json.loads((offline[0] / "_stats" / "drift" / "fraud_training_v1.json").read_text())
    assert report["reference"]["service"] == "fraud_training_v1"
    assert [f["feature"] for f in report["features"] if f["drifted"]] == ["credit_limit"]


def test_a_model_without_statistics_is_a_clean_error(offline: object, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["drift", "--reference", str(tmp_path / "old.pt")]) == 2
    assert "has no training-set statistics beside it" in capsys.readouterr().err
    assert main(["drift", "--reference", str(tmp_path / "old.pt"), "--reference-start", "2024-03-01"]) == 2
    assert main(["stats", "--start", "2024-03-09", "--end", "2024-03-01"]) == 2
    assert "is not after" in capsys.readouterr().err


def test_logged_vectors_count_unserved_values_as_nulls(offline: tuple[Path, RepoSpec, list[pa.Table]],
                                                       tmp_path: Path) -> None:  # fmt: skip
    root, _, days = offline
    day = days[SHIFTED_DAY]
    n = day.num_rows
    status = np.where(np.arange(n) % 10 == 0, 3, 1).astype(np.int32)  # every 10th NOT_FOUND
    limits = pa.array(np.where(status == 1, day["credit_limit"].fill_null(0.0).to_numpy(), np.nan))
    logged = pa.table({
        "user_id": day["user_id"],
        "user_profile__credit_limit": pa.array(limits.to_numpy(), mask=status != 1),
        "user_profile__credit_limit__timestamp": day["event_timestamp"],
        "user_profile__credit_limit__status": pa.array(status),
        "user_profile__account_age_days": day["account_age_days"],  # no status column: all counted
        "__log_timestamp": day["event_timestamp"],
        "__request_id": pa.array([str(i) for i in range(n)]),
    })  # fmt: skip
    folder = tmp_path / "logs" / "__log_date=2024-03-08"
    folder.mkdir(parents=True)
    pq.write_table(logged, folder / "a.parquet")
    assert main(["stats", "--logged", str(tmp_path / "logs"), "--feature-service", "fraud_training_v1"]) == 0
    stats = StatsSet.from_json((root / "_stats" / "logged" / "fraud_training_v1.json").read_text())
    limit = stats.by_key()[("user_profile", "credit_limit")].days["2024-03-08"]
    assert (limit.count, limit.nulls) == (n, int((status != 1).sum()))
    assert stats.by_key()[("user_profile", "account_age_days")].days["2024-03-08"].nulls == 0
