"""The Spark backfill on real Spark: feature rows and tiles equal the naive oracle's
(tests/oracle/naive.py) on events with tile edges, ties, nulls, late and redelivered
events; merchant_risk equals a naive oracle; re-runs replace partitions instead of
duplicating rows."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_events import ORIGIN_US, make_events, write_raw
from oracle.naive import Event, same, to_us, window_value
from tile_figures import oracle_tiles, same_figures, stored_tiles

from featureline.batch.backfill import backfill
from featureline.offline import read_table
from featureline.repo import load_repo
from featureline.semantics import US
from featureline.settings import Settings
from featureline.specs import RepoSpec

pytestmark = pytest.mark.spark
DAY_US = 86_400 * US
START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 4, tzinfo=UTC)


@dataclasses.dataclass
class Backfilled:
    settings: Settings
    repo: RepoSpec
    events: pa.Table
    labels: pa.Table

    @property
    def offline(self) -> Path:
        return self.settings.resolved_offline_dir


def _us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _labels(events: pa.Table) -> pa.Table:
    ids = events["txn_id"].to_pylist()
    fraud = [int(int(i[1:]) % 9 == 0) for i in ids]
    return pa.table({"txn_id": ids, "is_fraud": pa.array(fraud, pa.int64())})


@pytest.fixture(scope="module")
def backfilled(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Backfilled:
    home = tmp_path_factory.mktemp("backfill")
    settings = dataclasses.replace(demo_settings, home=home, offline_dir=str(home / "offline"))
    events = make_events(1000, span_s=3 * 86_400, seed=11)
    write_raw(events, settings.resolved_offline_dir)
    labels = _labels(events)
    (settings.resolved_offline_dir / "labels").mkdir(parents=True)
    pq.write_table(labels, settings.resolved_offline_dir / "labels" / "fraud_labels.parquet")
    report = backfill(settings, START, END)
    assert report.ok, report
    assert {r.view for r in report.results} == {
        "merchant_risk", "merchant_txn_stats", "user_last_txn", "user_txn_stats",
    }  # fmt: skip
    return Backfilled(settings, load_repo(settings), events, labels)


def _sorted_rows(table: pa.Table, keys: list[str]) -> list[dict[str, Any]]:
    rows = table.drop_columns([c for c in ("date",) if c in table.column_names]).to_pylist()
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def _unique_events(b: Backfilled) -> list[dict[str, Any]]:
    """One event per Kafka identity: a redelivered copy (stored again, created 1 s later)
    is the same event (semantics.md 3); the first stored copy is kept."""
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for r in sorted(b.events.to_pylist(), key=lambda r: r["created"]):
        ident = (r["kafka_partition"], r["kafka_offset"])
        seen.setdefault(ident, {**r, "_ts_us": to_us(r["event_timestamp"])})
    return list(seen.values())


def _oracle_rows(b: Backfilled, view_name: str) -> dict[tuple[int, int], dict[str, Any]]:
    """Each event's offline row by the naive oracle: a plain view's row is the event's
    values; an aggregating view's row holds every aggregation at t = the event's time."""
    view = b.repo.view(view_name)
    events = _unique_events(b)
    key = view.join_key_names[0]
    oracle_events = [Event((e[key],), e["_ts_us"], e["created"], e) for e in events]
    out = {}
    for e in events:
        row = {key: e[key], "event_timestamp": e["_ts_us"]}
        for agg in view.aggregations:
            row[agg.name] = window_value(oracle_events, (e[key],), e["_ts_us"], agg.column, agg.function,
                                         agg.window_s, agg.slide_s)  # fmt: skip
        if not view.is_aggregating:
            row.update({f: e[f] for f in view.feature_names})
        out[(e["kafka_partition"], e["kafka_offset"])] = row
    return out


@pytest.mark.parametrize("view_name", ["user_txn_stats", "merchant_txn_stats", "user_last_txn"])
def test_spark_rows_equal_the_oracle(backfilled: Backfilled, view_name: str) -> None:
    want = _oracle_rows(backfilled, view_name)
    got = read_table(backfilled.offline / view_name).to_pylist()
    assert len(got) == len(want) == 1000  # one row per event: the 20 redeliveries dropped
    checked = 0
    for g in got:
        w = want[(g["kafka_partition"], g["kafka_offset"])]
        for name, value in w.items():
            have = to_us(g[name]) if name == "event_timestamp" else g[name]
            assert same(have, value), (view_name, g["kafka_partition"], g["kafka_offset"], name, have, value)
            checked += 1
    assert checked >= 1000 * 3


def test_spark_tiles_equal_the_oracle(backfilled: Backfilled) -> None:
    view = backfilled.repo.view("user_txn_stats")
    got = stored_tiles(view, read_table(backfilled.offline / "_tiles" / "user_txn_stats"))
    want = oracle_tiles(view, _unique_events(backfilled))
    assert got.keys() == want.keys()
    for ident, figures in want.items():
        assert same_figures(got[ident], figures), (ident, got[ident], figures)


def test_merchant_risk_matches_naive_oracle(backfilled: Backfilled) -> None:
    fraud = dict(zip(*backfilled.labels.to_pydict().values(), strict=True))
    unique = {(r["kafka_partition"], r["kafka_offset"]): r for r in backfilled.events.to_pylist()}
    want = []
    for day in range(1, 4):  # midnights in (START, END]: 03-02, 03-03, 03-04
        t_us = ORIGIN_US + day * DAY_US
        per_merchant: dict[str, list[int]] = {}
        for r in unique.values():
            ts = _us(r["event_timestamp"])
            if t_us - 30 * DAY_US <= ts < t_us:
                per_merchant.setdefault(r["merchant_id"], []).append(fraud[r["txn_id"]])
        for merchant, flags in per_merchant.items():
            want.append((merchant, t_us, sum(flags) / len(flags), len(flags)))
    got = [
        (r["merchant_id"], _us(r["event_timestamp"]), r["chargeback_rate_30d"],
         r["txn_count_30d"])
        for r in read_table(backfilled.offline / "merchant_risk").to_pylist()
    ]  # fmt: skip
    assert sorted(got) == sorted(want)
    assert len(want) == 3 * 8


def _snapshot(offline: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, keys in (
        ("user_txn_stats", ["kafka_partition", "kafka_offset"]),
        ("_tiles/user_txn_stats", ["tile_s", "user_id", "tile_start_s", "kafka_partition"]),
        ("merchant_risk", ["merchant_id", "event_timestamp"]),
    ):
        out[name] = _sorted_rows(read_table(offline / name), keys)
    return out


def test_rerun_replaces_partitions_without_duplicates(backfilled: Backfilled) -> None:
    before = _snapshot(backfilled.offline)
    report = backfill(backfilled.settings, START, END, views=["user_txn_stats", "merchant_risk"])
    assert report.ok, report
    after = _snapshot(backfilled.offline)
    assert after == before  # same rows, each once
    identities = [(r["kafka_partition"], r["kafka_offset"]) for r in after["user_txn_stats"]]
    assert len(identities) == len(set(identities))


def test_rerun_drops_rows_of_removed_events(backfilled: Backfilled, tmp_path: Path) -> None:
    """A day whose raw events are gone ends up empty after a re-run, not stale."""
    raw_day = backfilled.offline / "raw" / "transactions" / "date=2024-03-03"
    saved = tmp_path / "saved"
    shutil.move(raw_day, saved)
    try:
        report = backfill(backfilled.settings, START, END, views=["user_last_txn"])
        assert report.ok, report
        days = {r["date"] for r in read_table(backfilled.offline / "user_last_txn").to_pylist()}
        assert days == {"2024-03-01", "2024-03-02"}
    finally:
        shutil.move(saved, raw_day)
