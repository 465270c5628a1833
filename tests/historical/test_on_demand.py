"""On-demand features in historical retrieval: the demo repo's transaction_context.

The udf runs through featureline.odfv (the runner serving uses) over source features
retrieved point-in-time; the test recomputes the same values by hand from a plain
retrieval of those sources and the entity frame's request columns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from featureline.batch.historical import get_historical_features
from featureline.cli.generator.config import make_config
from featureline.cli.generator.parquet import RAW_SUBDIR, write_batch_sources, write_raw_events
from featureline.cli.generator.table import generate_events
from featureline.errors import BadInputError
from featureline.repo import load_repo
from featureline.settings import Settings

DEMO_REPO = Path(__file__).resolve().parents[2] / "feature_repo"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("odfv")
    settings = dataclasses.replace(
        Settings(), repo=DEMO_REPO, home=root / "home", offline_dir=str(root / "offline")
    )
    config = make_config(seed=3, events=3000, hours=24, users=60, merchants=25)
    events = generate_events(config)
    write_raw_events(events, root / "offline" / RAW_SUBDIR)
    paths = write_batch_sources(config, events, root / "offline")
    return settings, paths["labels"]


def test_on_demand_features_equal_the_udf_over_point_in_time_sources(demo: tuple[Settings, Path]) -> None:
    settings, labels = demo
    repo = load_repo(settings)
    entity_df = pq.read_table(labels).slice(0, 400)
    refs = ["user_profile:home_country", "transaction_context:amount_to_mean_24h",
            "transaction_context:is_foreign"]  # fmt: skip
    got = get_historical_features(entity_df, refs, repo=repo)
    # As Feast's get_historical_features, the on-demand view's source features come too.
    extras = [f for _, feats in repo.on_demand_views["transaction_context"].sources for f in feats]
    extras = [f for f in dict.fromkeys(extras) if f != "home_country"]
    assert "mean_amount_24h" in extras
    assert got.column_names == [
        *entity_df.column_names,
        "home_country",
        *extras,
        "amount_to_mean_24h",
        "is_foreign",
    ]
    sources = get_historical_features(
        entity_df, ["user_txn_stats:mean_amount_24h", "user_profile:home_country"], repo=repo
    ).to_pylist()
    expected_ratio = [
        r["amount"] / r["mean_amount_24h"] if r["amount"] is not None and r["mean_amount_24h"] else None
        for r in sources
    ]
    expected_foreign = [
        int(r["country"] is not None and r["home_country"] is not None and r["country"] != r["home_country"])
        for r in sources
    ]
    assert got["amount_to_mean_24h"].to_pylist() == expected_ratio
    assert got["is_foreign"].to_pylist() == expected_foreign
    assert any(v is not None for v in expected_ratio) and 0 < sum(expected_foreign) < len(expected_foreign)
    full = get_historical_features(entity_df, refs, repo=repo, full_feature_names=True)
    assert full.column_names[-2:] == [
        "transaction_context__amount_to_mean_24h",
        "transaction_context__is_foreign",
    ]


def test_a_missing_request_column_is_named(demo: tuple[Settings, Path]) -> None:
    settings, labels = demo
    entity_df = pq.read_table(labels).slice(0, 10).drop_columns(["country"])
    with pytest.raises(BadInputError, match="needs request column.*country"):
        get_historical_features(entity_df, ["transaction_context:is_foreign"], repo=load_repo(settings))
