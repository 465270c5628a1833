"""`featureline apply` registers the repo in Feast's SQL registry, readable by Feast itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from featureline.cli import main
from featureline.settings import Settings

REPO = Path(__file__).resolve().parents[1] / "feature_repo"


def test_apply_registers_every_object_for_feast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    for name in ("FEATURELINE_REGISTRY_URL", "FEATURELINE_REPO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FEATURELINE_HOME", str(home))
    monkeypatch.setenv("FEATURELINE_OFFLINE_DIR", str(tmp_path / "offline"))
    assert main(["apply", "--repo", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert "feature service fraud_model_v1" in out
    assert (home / "registry.db").is_file()

    from feast import FeatureStore

    settings = dataclasses.replace(Settings.from_env(), repo=REPO)
    settings.export_env()
    store = FeatureStore(repo_path=str(REPO))
    assert {v.name for v in store.list_feature_views()} >= {"user_profile", "merchant_risk"}
    assert {v.name for v in store.list_stream_feature_views()} == {
        "user_txn_stats", "merchant_txn_stats", "user_last_txn",
    }  # fmt: skip
    assert {s.name for s in store.list_feature_services()} == {"fraud_model_v1", "fraud_training_v1"}
    assert [o.name for o in store.list_on_demand_feature_views()] == ["transaction_context"]
    # Applying again is idempotent.
    assert main(["apply", "--repo", str(REPO)]) == 0


def test_apply_of_a_broken_repo_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text("project: p\nprovider: local\n")
    (repo / "defs.py").write_text("from feast import Entity\nuser = Entity(name='user', join_keys=1)\n")
    monkeypatch.setenv("FEATURELINE_HOME", str(tmp_path / "home"))
    assert main(["apply", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
