"""`featureline apply` writes the registry the repo's feature_store.yaml names (Feast's
default file registry here), or FEATURELINE_REGISTRY_URL's when that is set, and says
which. A repo whose online store is Feast's default (sqlite) still applies and reads;
the commands that need the online store refuse it by name."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from featureline.cli import main

_DEFS = """
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
src = FileSource(name="src", path="data/stats.parquet", timestamp_field="event_timestamp")
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=1), source=src,
                    schema=[Field(name="conv_rate", dtype=Float64)])
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for key in [k for k in os.environ if k.startswith("FEATURELINE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEATURELINE_HOME", str(tmp_path / "home"))
    repo = tmp_path / "repo"
    repo.mkdir()
    # Feast's template: a file registry under data/, no online_store (sqlite by default).
    (repo / "feature_store.yaml").write_text(
        "project: reg_test\nprovider: local\nregistry: data/registry.db\n"
    )
    (repo / "defs.py").write_text(_DEFS)
    return repo


def test_apply_writes_the_yamls_file_registry(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    registry = (repo / "data" / "registry.db").resolve()
    assert f"file registry {registry}" in out
    assert registry.is_file()

    from feast import FeatureStore

    assert [v.name for v in FeatureStore(repo_path=str(repo)).list_feature_views()] == ["stats"]
    # Specs and config work on a sqlite-configured repo; materialize names what it lacks.
    assert main(["specs", "--repo", str(repo)]) == 0
    assert main(["config", "--repo", str(repo)]) == 0
    assert "online_store type 'sqlite' is not supported" in capsys.readouterr().out
    code = main(["materialize", "--repo", str(repo), "--start", "2024-01-01", "--end", "2024-01-02"])
    err = capsys.readouterr().err
    assert code == 2 and "online_store type 'sqlite'" in err and "supports: redis" in err


def test_registry_url_overrides_when_set(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "sql-registry.db"
    monkeypatch.setenv("FEATURELINE_REGISTRY_URL", f"sqlite:///{db}")
    assert main(["apply", "--repo", str(repo)]) == 0
    assert f"sql registry sqlite:///{db}" in capsys.readouterr().out
    assert not (repo / "data" / "registry.db").exists()
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("select feature_view_name from feature_views")}
    assert names == {"stats"}
