"""The backfill on a Spark standalone cluster (master + one worker, loopback), as an
operator would run it: the same rows as local[2] (and as the pure computations, which
test_batch_windows pins to the naive oracle). Sorted last among the batch tests:
switching masters stops the shared local session."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from batch_events import make_events, write_raw
from spark_cluster import StandaloneCluster

from featureline.batch.backfill import EventColumns, backfill, read_raw_events, tile_states, window_values
from featureline.batch.backfill.events import datetime_to_us
from featureline.offline import read_table
from featureline.repo import load_repo
from featureline.semantics import US
from featureline.settings import Settings
from featureline.specs import RepoSpec

pytestmark = [pytest.mark.spark, pytest.mark.slow]
START, END = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 3, tzinfo=UTC)
VIEWS = ["user_txn_stats"]


@pytest.fixture(scope="module")
def standalone(spark_standalone: StandaloneCluster) -> Iterator[str]:
    from featureline.batch.spark import get_spark, stop_spark

    try:
        # One worker of 1 core / 1 GiB: executors must fit in it.
        get_spark(spark_standalone.master_url, conf={"spark.executor.memory": "512m", "spark.cores.max": "1"})
        yield spark_standalone.master_url
    finally:
        stop_spark()  # ends the application (the worker is free) and the next get_spark() starts local


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{k: v for k, v in r.items() if k != "date"} for r in rows]
    return sorted(rows, key=lambda r: sorted((k, repr(v)) for k, v in r.items()))


def _expected(settings: Settings, repo: RepoSpec) -> dict[str, list[dict[str, Any]]]:
    """What local[2] produces: the pure computations (pinned to the naive oracle)."""
    view = repo.view("user_txn_stats")
    start, end = datetime_to_us(START), datetime_to_us(END)
    raw = settings.resolved_offline_dir / "raw" / "transactions"
    events = read_raw_events(raw, EventColumns.of(view), start - 2 * 86_400 * US, end + 3600 * US)
    tiles = pa.concat_tables([tile_states(events, view, s) for s in view.tile_sizes_s()])
    starts = tiles["tile_start_s"].to_numpy()
    tiles = tiles.filter(pa.array((starts >= start // US) & (starts < end // US)))
    return {
        "user_txn_stats": _sorted(window_values(events, view, start, end).to_pylist()),
        "_tiles/user_txn_stats": _sorted(tiles.to_pylist()),
    }


def test_backfill_on_standalone_cluster(
    demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    home = tmp_path_factory.mktemp("standalone-data")
    settings = dataclasses.replace(demo_settings, home=home, offline_dir=str(home / "offline"))
    write_raw(make_events(800, span_s=2 * 86_400, seed=5), settings.resolved_offline_dir)
    expected = _expected(settings, load_repo(settings))
    master = request.getfixturevalue("standalone")
    report = backfill(settings, START, END, views=VIEWS, master=master)
    assert report.ok, report
    from featureline.batch.spark import get_spark

    assert get_spark(master).sparkContext.master == master
    offline = settings.resolved_offline_dir
    got = {name: _sorted(read_table(offline / name).to_pylist()) for name in expected}
    assert got == expected
    assert len(expected["user_txn_stats"]) == 800
