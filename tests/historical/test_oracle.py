"""Both engines against a naive oracle on randomized data full of edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hist_data import AGGS, generate
from hist_oracle import expected, mismatches

from batch.historical import get_historical_features

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
