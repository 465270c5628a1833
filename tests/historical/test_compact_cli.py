"""`featureline compact`: closed date partitions become one file, same rows; today's stays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from featureline.cli import main
from featureline.offline import TS_TYPE, read_table, write_partitioned

DEMO_REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def _events(day: dt.date, n: int, start: int) -> pa.Table:
    ts = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    return pa.table(
        {
            "txn_id": [f"t{start + i}" for i in range(n)],
            "user_id": pa.array(range(n), pa.int64()),
            "amount": pa.array([float(i) for i in range(n)]),
            "event_timestamp": pa.array([ts] * n, TS_TYPE),
        }
    )


def test_compact_merges_closed_days_and_leaves_today(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    offline = tmp_path / "offline"
    monkeypatch.setenv("FEATURELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEATURELINE_OFFLINE_DIR", str(offline))
    raw = offline / "raw" / "transactions"
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    for i in range(3):
        write_partitioned(_events(yesterday, 5, 10 * i), raw, ts_column="event_timestamp")
        write_partitioned(_events(today, 5, 100 + 10 * i), raw, ts_column="event_timestamp")
    before = read_table(raw).sort_by("txn_id")
    assert main(["compact", "--repo", str(DEMO_REPO)]) == 0
    assert "1 partition(s), 3 -> 1 files, 15 rows" in capsys.readouterr().out
    assert len(list((raw / f"date={yesterday}").glob("*.parquet"))) == 1
    assert len(list((raw / f"date={today}").glob("*.parquet"))) == 3
    assert read_table(raw).sort_by("txn_id").equals(before)
