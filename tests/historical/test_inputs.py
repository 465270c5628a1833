"""Entity frames in every accepted form, and bad input: clear errors naming the thing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hist_data import generate

from featureline.batch.historical import get_historical_features
from featureline.errors import BadInputError
from featureline.specs import FieldSpec

FEATURES = ["profile:score", "pair:pair_amount", "txn_stats:sum_10m"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate(tmp_path_factory.mktemp("offline"), seed=5, n=60)


def test_pandas_and_csv_frames_give_the_arrow_frame_result(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    want = get_historical_features(data.entity, FEATURES, repo=data.repo)
    from_pandas = get_historical_features(data.entity.to_pandas(), FEATURES, repo=data.repo)
    assert from_pandas.select(FEATURES_OUT).equals(want.select(FEATURES_OUT))
    # CSV: times written with their offsets; mixed with naive (UTC) ones below.
    csv_path = tmp_path / "entity.csv"
    pcsv.write_csv(data.entity, csv_path)
    from_csv = get_historical_features(csv_path, FEATURES, repo=data.repo)
    assert from_csv.select(FEATURES_OUT).equals(want.select(FEATURES_OUT))
    frame = want.to_pandas()
    assert list(frame.columns)[-3:] == FEATURES_OUT and len(frame) == want.num_rows


FEATURES_OUT = ["score", "pair_amount", "sum_10m"]


def test_mixed_zone_strings_and_python_datetimes_are_instants(data) -> None:  # type: ignore[no-untyped-def]
    base = datetime(2024, 3, 1, 1, 30, tzinfo=UTC)
    zones = [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-3, minutes=-30))]
    stamps = [base.astimezone(z) for z in zones]
    users = [1000, 1001, 1002]
    as_utc = pa.table({"user_id": users, "merchant_id": ["m1"] * 3, "event_timestamp": [base] * 3})
    want = get_historical_features(as_utc, FEATURES, repo=data.repo).select(FEATURES_OUT)
    as_objects = pd.DataFrame({"user_id": users, "merchant_id": ["m1"] * 3, "event_timestamp": stamps})
    as_objects["event_timestamp"] = as_objects["event_timestamp"].astype(object)
    assert get_historical_features(as_objects, FEATURES, repo=data.repo).select(FEATURES_OUT).equals(want)
    texts = ["2024-03-01 01:30:00", stamps[1].isoformat(), stamps[2].isoformat()]  # naive = UTC
    as_text = pa.table({"user_id": users, "merchant_id": ["m1"] * 3, "event_timestamp": texts})
    assert get_historical_features(as_text, FEATURES, repo=data.repo).select(FEATURES_OUT).equals(want)


def _frame(**columns: object) -> pa.Table:
    base = {
        "user_id": pa.array([1, 2], pa.int64()),
        "merchant_id": ["m1", "m2"],
        "event_timestamp": pa.array([datetime(2024, 3, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("us", "UTC")),
    }
    base.update(columns)  # type: ignore[arg-type]
    return pa.table({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    ("frame", "features", "needle"),
    [
        (_frame(event_timestamp=None), FEATURES, "'event_timestamp'"),
        (_frame(event_timestamp=pa.array([None, None], pa.timestamp("us"))), FEATURES, "null"),
        (_frame(event_timestamp=["2024-03-01", "yesterday"]), FEATURES, "'yesterday'"),
        (_frame(merchant_id=None), FEATURES, "'merchant_id'"),
        (_frame(user_id=pa.array([1.5, 2.0])), FEATURES, "'user_id' has type double"),
        (_frame(merchant_id=pa.array([1, 2])), FEATURES, "'merchant_id' has type int64"),
        (_frame(score=[1.0, 2.0]), FEATURES, "'score'"),
        (_frame(), ["profile:nope"], "'nope'"),
        (_frame(), ["nope:score"], "'nope'"),
        (_frame(), ["profile"], "view:feature"),
        (_frame(), [], "no features"),
        (_frame().slice(0, 0), FEATURES, "empty"),
    ],
)
def test_bad_input_names_the_column_or_feature(
    data, frame: pa.Table, features: list[str], needle: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInputError) as info:
        get_historical_features(frame, features, repo=data.repo)
    assert needle in str(info.value)


def test_source_problems_name_the_view_and_column(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    profile = data.repo.views["profile"]
    missing_column = dataclasses.replace(profile, features=(*profile.features, FieldSpec("ghost", "int64")))
    repo = dataclasses.replace(data.repo, views={**data.repo.views, "profile": missing_column})
    with pytest.raises(BadInputError, match="'profile'.*'ghost'"):
        get_historical_features(_frame(), ["profile:ghost"], repo=repo)
    assert profile.batch_source is not None
    gone = dataclasses.replace(profile.batch_source, path=str(tmp_path / "nowhere"))
    repo = dataclasses.replace(
        data.repo, views={**data.repo.views, "profile": dataclasses.replace(profile, batch_source=gone)}
    )
    with pytest.raises(BadInputError, match="'profile'.*does not exist"):
        get_historical_features(_frame(), ["profile:score"], repo=repo)
    with pytest.raises(BadInputError, match="engine"):
        get_historical_features(_frame(), FEATURES, repo=data.repo, engine="pandas")  # type: ignore[arg-type]


def test_an_empty_source_directory_gives_nulls_and_empty_windows(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    views = {}
    for name in ("profile", "txn_stats"):
        view = data.repo.views[name]
        assert view.batch_source is not None
        (tmp_path / name).mkdir()
        views[name] = dataclasses.replace(
            view, batch_source=dataclasses.replace(view.batch_source, path=str(tmp_path / name))
        )
    repo = dataclasses.replace(data.repo, views={**data.repo.views, **views})
    got = get_historical_features(
        _frame(),
        ["profile:score", "txn_stats:count_10m", "txn_stats:sum_10m", "txn_stats:mean_10m"],
        repo=repo,
    )
    assert got.column("score").to_pylist() == [None, None]
    assert got.column("count_10m").to_pylist() == [0, 0]
    assert got.column("sum_10m").to_pylist() == [0.0, 0.0]
    assert got.column("mean_10m").to_pylist() == [None, None]
