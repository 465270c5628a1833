"""Compaction keeps the dataset's rows and every retrieval result, and rolls forward
after an interrupted run instead of leaving rows twice."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hist_data import AGGS, generate

from featureline.batch.historical import get_historical_features
from featureline.batch.historical.compact import compact_dataset
from featureline.offline import dataset, write_partitioned

FEATURES = ["profile:score", "profile:tier"] + [f"txn_stats:{a.name}" for a in AGGS]


def _sorted_rows(base: Path) -> list[tuple[object, ...]]:
    table = dataset(base).to_table()
    return sorted(tuple(map(repr, row.values())) for row in table.to_pylist())


def test_compaction_keeps_rows_and_results(tmp_path: Path) -> None:
    data = generate(tmp_path, seed=9, n=120)
    raw = tmp_path / "raw" / "transactions"
    # More files per day, as a streaming writer leaves them.
    write_partitioned(data.sources["txn_stats"].slice(0, 50), raw, ts_column="event_timestamp", writer="late")
    write_partitioned(data.sources["profile"].slice(0, 40), tmp_path / "profile", ts_column="event_timestamp")
    before_rows = {p: _sorted_rows(tmp_path / p) for p in ("raw/transactions", "profile")}
    before = get_historical_features(data.entity, FEATURES, repo=data.repo)
    files = len(list(raw.rglob("*.parquet")))
    report = compact_dataset(raw)
    compact_dataset(tmp_path / "profile")
    assert report.files_before == files and report.files_after == report.partitions
    assert all(len(list(p.glob("*.parquet"))) == 1 for p in raw.glob("date=*"))
    assert {p: _sorted_rows(tmp_path / p) for p in before_rows} == before_rows
    assert get_historical_features(data.entity, FEATURES, repo=data.repo).equals(before)
    assert compact_dataset(raw).partitions == 0  # nothing left to do


def test_interrupted_compaction_rolls_forward(tmp_path: Path) -> None:
    base = tmp_path / "events"
    table = pa.table({"id": [1, 2, 3], "event_timestamp": pa.array([0, 1, 2], pa.timestamp("us", "UTC"))})
    write_partitioned(table.slice(0, 2), base, ts_column="event_timestamp", writer="a")
    write_partitioned(table.slice(2), base, ts_column="event_timestamp", writer="b")
    pdir = next(base.glob("date=*"))
    originals = sorted(pdir.glob("*.parquet"))
    # A run that died after writing its file, before removing the originals:
    names = json.dumps([f.name for f in originals]).encode()
    pq.write_table(
        table.replace_schema_metadata({b"featureline.compacted_from": names}), pdir / "compacted-x.parquet"
    )
    assert dataset(base).count_rows() == 6  # both, until the next run
    report = compact_dataset(base)
    assert report.rolled_forward == 2
    assert sorted(dataset(base).to_table().column("id").to_pylist()) == [1, 2, 3]
