"""Event-time last-write-wins shared with Feast's own writers, on one real Redis: a
Feast push of a newer value survives a later `featureline materialize` of an older
window, and a newer value of ours survives Feast writing (push, write_to_online_store,
materialize) an older one. Feast skips a row whose event time is <= the `_ts` it finds
(RedisOnlineStore.online_write_batch); ours compares against that same `_ts`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from featureline.batch.materialize import materialize
from featureline.push import push
from featureline.repo import load_repo
from featureline.settings import Settings
from featureline.specs import RepoSpec

DAY = datetime(2026, 3, 1, tzinfo=UTC)
OFFLINE_AT = DAY + timedelta(hours=10)  # the offline rows' event time
DEFS = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
source = FileSource(name="stats_source", path="data/stats.parquet",
                    timestamp_field="event_timestamp", created_timestamp_column="created")
stats_push = PushSource(name="stats_push", batch_source=source)
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=3650), source=source,
                    schema=[Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64)])
stats_fresh = FeatureView(name="stats_fresh", entities=[driver], ttl=timedelta(days=3650),
                          source=stats_push,
                          schema=[Field(name="conv_rate", dtype=Float32),
                                  Field(name="trips", dtype=Int64)])
"""
STORE_YAML = """project: push_lww
provider: local
registry: data/registry.db
online_store:
  type: redis
  connection_string: ${FEATURELINE_REDIS_ADDR}
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def frame(drivers: list[int], at: datetime, conv: float) -> pd.DataFrame:
    return pd.DataFrame({
        "driver_id": drivers, "conv_rate": [conv] * len(drivers), "trips": [7] * len(drivers),
        "event_timestamp": [at] * len(drivers), "created": [at] * len(drivers),
    })  # fmt: skip


@dataclasses.dataclass
class Repo:
    settings: Settings
    spec: RepoSpec
    fs: Any


@pytest.fixture(scope="module")
def repo(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("push-lww")
    path = root / "repo"
    (path / "data").mkdir(parents=True)
    (path / "feature_store.yaml").write_text(STORE_YAML)
    (path / "defs.py").write_text(DEFS)
    offline = frame([1, 2, 3], OFFLINE_AT, 0.1)
    offline["conv_rate"] = offline["conv_rate"].astype("float32")
    offline.to_parquet(path / "data" / "stats.parquet")
    settings = dataclasses.replace(stack, repo=path, home=root / "home")
    spec = load_repo(settings)  # exports FEATURELINE_* for feature_store.yaml
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(path))
    from featureline.repo import in_repo_dir, parse_feast_repo

    assert parse_feast_repo(Path(path)).views["stats_fresh"].push_source == "stats_push"
    with in_repo_dir(path):
        import defs  # type: ignore[import-not-found]

        fs.apply([defs.driver, defs.source, defs.stats_push, defs.stats, defs.stats_fresh])
    yield Repo(settings, spec, fs)


def _conv(repo: Repo, drivers: list[int]) -> list[float | None]:
    got = repo.fs.get_online_features(
        features=["stats_fresh:conv_rate"], entity_rows=[{"driver_id": d} for d in drivers]
    ).to_dict()
    return [None if v is None else round(v, 3) for v in got["conv_rate"]]


def test_spec_records_the_push_source(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    from featureline.cli import main

    assert main(["specs", "--repo", str(repo.settings.repo)]) == 0
    assert "view stats_fresh [driver_id:int64] ttl=315360000s push source stats_push" in (
        capsys.readouterr().out
    )
    fresh = repo.spec.view("stats_fresh")
    assert fresh.push_source == "stats_push" and repo.spec.view("stats").push_source == ""
    assert fresh.batch_source is not None and fresh.batch_source.path.endswith("data/stats.parquet")
    assert [v.name for v in repo.spec.views_of_push_source("stats_push")] == ["stats_fresh"]


def test_feast_push_survives_our_materialize_of_an_older_window(
    repo: Repo, redis_client: redis.Redis
) -> None:
    repo.fs.push("stats_push", frame([1], DAY + timedelta(hours=17, minutes=53), 0.5))
    assert _conv(repo, [1, 2]) == [0.5, None]
    report = materialize(repo.settings, DAY, DAY + timedelta(days=1), views=["stats_fresh"])
    assert report.ok, report
    assert report.results[0].entities == 3 and report.results[0].written == 2  # driver 1 kept
    assert _conv(repo, [1, 2, 3]) == [0.5, 0.1, 0.1]


def test_our_newer_value_survives_feasts_older_writes(repo: Repo, redis_client: redis.Redis) -> None:
    newer = DAY + timedelta(hours=18)
    result = push(repo.spec, redis_client, "stats_push", _columns(frame([1, 2], newer, 0.9)))
    assert result.online_written == 2
    # Feast's own writers skip rows older than the `_ts` we stored.
    repo.fs.write_to_online_store("stats_fresh", frame([1], DAY + timedelta(hours=12), 0.2))
    repo.fs.push("stats_push", frame([2], DAY + timedelta(hours=17), 0.3))
    repo.fs.materialize(DAY, DAY + timedelta(days=1), ["stats_fresh"])  # offline rows: 10:00
    assert _conv(repo, [1, 2, 3]) == [0.9, 0.9, 0.1]
    # A Feast row newer than ours wins, and our older materialize then leaves it.
    repo.fs.push("stats_push", frame([1], DAY + timedelta(hours=19), 0.7))
    assert materialize(repo.settings, DAY, DAY + timedelta(days=1), views=["stats_fresh"]).ok
    assert _conv(repo, [1, 2]) == [0.7, 0.9]


def _columns(df: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as the JSON body carries it (timestamps as ISO strings)."""
    out = {}
    for name in df.columns:
        col = df[name]
        out[name] = [t.isoformat() for t in col] if name in ("event_timestamp", "created") else col.tolist()
    return out
