"""The backfill on a Spark standalone cluster (master + one worker, loopback), as an
operator would run it: the same rows as the local[2] run. Sorted last among the batch
tests: switching masters stops the shared local session."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from batch_events import make_events, write_raw
from spark_cluster import start_standalone

from batch.backfill import backfill
from featureline.offline import read_table
from featureline.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
START, END = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 3, tzinfo=UTC)
VIEWS = ["user_txn_stats"]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from batch.spark import get_spark, stop_spark

    cluster = start_standalone(tmp_path_factory.mktemp("spark-standalone"))
    try:
        # One worker of 1 core / 1 GiB: executors must fit in it.
        get_spark(cluster.master_url, conf={"spark.executor.memory": "512m", "spark.cores.max": "1"})
        yield cluster.master_url
    finally:
        stop_spark()  # the next get_spark() starts a local session again
        cluster.stop()


def _rows(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    offline = settings.resolved_offline_dir
    out = {}
    for name in ("user_txn_stats", "_tiles/user_txn_stats"):
        rows = read_table(offline / name).to_pylist()
        out[name] = sorted(rows, key=lambda r: sorted((k, repr(v)) for k, v in r.items()))
    return out


def test_backfill_on_standalone_cluster(
    demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    home = tmp_path_factory.mktemp("standalone-data")
    settings = dataclasses.replace(demo_settings, home=home, offline_dir=str(home / "offline"))
    write_raw(make_events(800, span_s=2 * 86_400, seed=5), settings.resolved_offline_dir)
    local = backfill(settings, START, END, views=VIEWS, master="local[2]")
    assert local.ok, local
    expected = _rows(settings)
    master = request.getfixturevalue("standalone")
    report = backfill(settings, START, END, views=VIEWS, master=master)
    assert report.ok, report
    from batch.spark import get_spark

    assert get_spark(master).sparkContext.master == master
    assert _rows(settings) == expected
    assert len(expected["user_txn_stats"]) == 800
