"""Both engines against a naive oracle on randomized data full of edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hist_data import AGGS, generate
from hist_oracle import expected, mismatches

from featureline.batch.historical import get_historical_features

FEATURES = ["profile:score", "profile:tier", "profile:visits", "pair:pair_amount"] + [
    f"txn_stats:{a.name}" for a in AGGS
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_local_engine_equals_oracle(tmp_path: Path, seed: int) -> None:
    data = generate(tmp_path, seed)
    got = get_historical_features(data.entity, FEATURES, repo=data.repo)
    want = expected(data.repo, data.sources, data.entity)
    assert mismatches(got, want) == []


@pytest.mark.spark
def test_spark_engine_equals_oracle(tmp_path: Path, spark: Any) -> None:
    data = generate(tmp_path, seed=7)
    got = get_historical_features(data.entity, FEATURES, repo=data.repo, engine="spark")
    want = expected(data.repo, data.sources, data.entity)
    assert mismatches(got, want) == []
    local = get_historical_features(data.entity, FEATURES, repo=data.repo)
    assert got.equals(local)


@pytest.mark.spark
def test_nanosecond_source_timestamps_as_pandas_writes_them(tmp_path: Path, spark: Any) -> None:
    """pandas writes nanosecond timestamps; both engines read them (Spark as longs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = generate(tmp_path, seed=13, n=80)
    profile = data.sources["profile"]
    for name in ("event_timestamp", "created"):
        profile = profile.set_column(
            profile.column_names.index(name), name, profile.column(name).cast(pa.timestamp("ns", "UTC"))
        )
    for old in (tmp_path / "profile").rglob("*.parquet"):
        old.unlink()
    pq.write_table(profile, tmp_path / "profile" / "all.parquet")
    features = ["profile:score", "profile:tier", "profile:visits"]
    want = expected(data.repo, {"profile": profile}, data.entity)
    local = get_historical_features(data.entity, features, repo=data.repo)
    assert mismatches(local, want) == []
    assert get_historical_features(data.entity, features, repo=data.repo, engine="spark").equals(local)
