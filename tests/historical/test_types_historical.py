"""Historical retrieval of every Feast value type, with nulls, on both engines, against
Feast 0.67's get_historical_features on the same repo and data (tests/types_repo.py);
naive entity timestamps are UTC and come back UTC-aware, as Feast returns them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from types_repo import FEATURES, REFS, T0, feast_store, plain, write_repo

from featureline.batch.historical import get_historical_features
from featureline.repo import load_repo
from featureline.settings import Settings
from featureline.specs import RepoSpec

# (driver, naive entity time): after every row, before driver 1's newest row, a driver
# whose row is all nulls, and one with no row at all.
ENTITY_ROWS = [
    (1, T0 + timedelta(hours=5)),
    (1, T0 - timedelta(days=1)),
    (2, T0 + timedelta(hours=5)),
    (3, T0 + timedelta(days=3)),
    (4, T0 + timedelta(hours=5)),
    (99, T0 + timedelta(hours=5)),
    (2, T0 - timedelta(days=5)),  # before its only row
]


@dataclasses.dataclass
class Hist:
    spec: RepoSpec
    entity_df: pd.DataFrame
    feast: pd.DataFrame


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hist]:
    root = tmp_path_factory.mktemp("types-hist")
    write_repo(root / "repo", "127.0.0.1:1")  # Feast's online store is never opened here
    settings = dataclasses.replace(Settings.from_env(), repo=root / "repo", home=root / "home")
    saved = dict(os.environ)  # load_repo exports this repo's settings; later tests must not see them
    spec = load_repo(settings)
    entity_df = pd.DataFrame(
        {
            "driver_id": [d for d, _ in ENTITY_ROWS],
            "event_timestamp": pd.to_datetime([t.replace(tzinfo=None) for _, t in ENTITY_ROWS]),
            "row": range(len(ENTITY_ROWS)),
        }
    )
    assert entity_df["event_timestamp"].dt.tz is None
    feast = feast_store(settings.repo).get_historical_features(entity_df=entity_df, features=REFS).to_df()
    yield Hist(spec, entity_df, feast.sort_values("row").reset_index(drop=True))
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_every_type_as_feast_returns_it(hist: Hist, engine: str, request: pytest.FixtureRequest) -> None:
    if engine == "spark":
        request.getfixturevalue("spark")  # the session's shared Spark
    table = get_historical_features(hist.entity_df, REFS, repo=hist.spec, engine=engine)  # type: ignore[arg-type]
    ours = table.to_pandas()
    assert list(ours.columns) == ["driver_id", "event_timestamp", "row", *FEATURES]
    assert ours["row"].tolist() == list(range(len(ENTITY_ROWS)))  # every row, in order
    assert str(ours["event_timestamp"].dt.tz) == "UTC"  # naive in, UTC-aware out, as Feast
    # Feast drops the row of a key with no row before its time (shared/anchors.md); ours
    # keeps it, with nulls.
    assert hist.feast["row"].tolist() == [0, 1, 2, 3, 4, 5]
    assert all(_missing(plain(v)) is None for v in ours.loc[6, list(FEATURES)])
    ours = ours.loc[:5]
    assert ours["event_timestamp"].tolist() == hist.feast["event_timestamp"].tolist()
    differ = {}
    for name in FEATURES:
        mine = [_missing(plain(v)) for v in ours[name]]
        theirs = [_missing(plain(v)) for v in hist.feast[name]]
        if mine != theirs:
            differ[name] = (mine, theirs)
    assert not differ, differ


def _missing(value: Any) -> Any:
    """pandas gives NaN or None (or NaT) for a missing value, by column type: one null."""
    if value is None or value == "NaN" or value is pd.NaT:
        return None
    return value
