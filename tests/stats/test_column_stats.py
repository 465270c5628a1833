"""Per-feature statistics equal a naive computation (numpy / plain Python) on plain
tables, per day and merged over days, and survive their JSON form."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from featureline.errors import BadInputError
from featureline.specs import FieldSpec, FileSourceSpec, ProjectionSpec, RepoSpec, ServiceSpec, ViewSpec
from featureline.stats.column import ColumnStats, kind_of
from featureline.stats.hll import STANDARD_ERROR
from featureline.stats.table import Column, StatsSet, full_name_columns, table_stats

DAY0 = datetime(2024, 3, 1, tzinfo=UTC)


def _table(rows: int = 30_000, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, rows)
    amount[rng.random(rows) < 0.01] = np.nan
    amount_mask = rng.random(rows) < 0.05  # 5% nulls
    count = rng.integers(0, 20, rows)
    country = rng.choice(["FR", "DE", "US", "GB", "ES"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    country_mask = rng.random(rows) < 0.02
    vip = rng.random(rows) < 0.1
    ts_us = (int(DAY0.timestamp()) + rng.integers(0, 3 * 86_400, rows)) * 1_000_000
    return pa.table(
        {
            "amount": pa.array(amount, mask=amount_mask),
            "count": pa.array(count),
            "country": pa.array(country.tolist(), mask=country_mask),
            "vip": pa.array(vip),
            "event_timestamp": pa.array(ts_us).cast(pa.timestamp("us", "UTC")),
        }
    )


def _naive_numeric(values: list[float | None]) -> dict[str, float | int | None]:
    present = [v for v in values if v is not None]
    finite = np.asarray([v for v in present if math.isfinite(v)], np.float64)
    return {
        "count": len(values),
        "nulls": len(values) - len(present),
        "non_finite": len(present) - len(finite),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def _check_numeric(stats: ColumnStats, values: list[float | None]) -> None:
    naive = _naive_numeric(values)
    s = stats.summary()
    assert (s["count"], s["nulls"], s["non_finite"]) == (naive["count"], naive["nulls"], naive["non_finite"])
    for key in ("mean", "std", "min", "max"):
        assert s[key] == pytest.approx(naive[key], rel=1e-9), key
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)])
    exact = np.quantile(finite, [0.01, 0.5, 0.99], method="lower")
    for key, want in zip(("p1", "p50", "p99"), exact, strict=True):
        assert abs(s[key] - want) <= 0.01 * abs(want) + 1e-12, key
    assert abs(s["distinct"] / len(set(finite.tolist())) - 1) < 3 * STANDARD_ERROR
    assert sum(s["histogram"]["counts"]) == len(finite)


def test_numeric_column_equals_numpy() -> None:
    table = _table()
    _check_numeric(ColumnStats.of(table["amount"]), table["amount"].to_pylist())
    _check_numeric(ColumnStats.of(table["count"]), [float(v) for v in table["count"].to_pylist()])


def test_string_and_bool_columns_equal_counters() -> None:
    table = _table()
    country = table["country"].to_pylist()
    s = ColumnStats.of(table["country"]).summary()
    counts = Counter(v for v in country if v is not None)
    assert s["kind"] == "string" and s["nulls"] == country.count(None)
    assert s["null_rate"] == pytest.approx(country.count(None) / len(country))
    assert dict(s["top"]) == dict(counts) and s["distinct"] == len(counts)
    vip = table["vip"].to_pylist()
    b = ColumnStats.of(table["vip"]).summary()
    assert b["kind"] == "bool" and dict(b["top"]) == {"true": vip.count(True), "false": vip.count(False)}
    assert b["mean"] == pytest.approx(vip.count(True) / len(vip))


def test_per_day_statistics_and_their_merge_equal_the_naive_ones() -> None:
    table = _table()
    columns = [Column(n, "v", n) for n in ("amount", "count", "country", "vip")]
    stats = {f.feature: f for f in table_stats(table, columns, "event_timestamp")}
    days = [d.strftime("%Y-%m-%d") for d in table["event_timestamp"].to_pylist()]
    assert sorted(stats["amount"].days) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    amounts = table["amount"].to_pylist()
    for day, one in stats["amount"].days.items():
        _check_numeric(one, [a for a, d in zip(amounts, days, strict=True) if d == day])
    whole = stats["amount"].total()
    assert whole is not None
    _check_numeric(whole, amounts)
    # The merge is exact: the sketches and counts of the days together equal the whole's.
    direct = ColumnStats.of(table["amount"])
    assert whole.sketch.to_dict() == direct.sketch.to_dict()
    assert np.array_equal(whole.hll.registers, direct.hll.registers)
    country_total = stats["country"].total()
    assert country_total is not None and country_total.top == ColumnStats.of(table["country"]).top


def test_json_round_trip_keeps_everything() -> None:
    table = _table(5_000)
    columns = [Column(n, "v", n) for n in ("amount", "count", "country", "vip")]
    stats = StatsSet({"kind": "test"}, table_stats(table, columns, "event_timestamp"))
    again = StatsSet.from_json(stats.to_json())
    for a, b in zip(stats.features, again.features, strict=True):
        assert a.key == b.key and sorted(a.days) == sorted(b.days)
        for day in a.days:
            assert a.days[day].summary() == b.days[day].summary()
    with pytest.raises(BadInputError, match="not a Featureline statistics file"):
        StatsSet.from_json('{"format": "other"}', "x.json")


def test_timestamps_lists_and_no_timestamp_column() -> None:
    ts = pa.array([DAY0, None, DAY0 + timedelta(hours=2)], pa.timestamp("us", "UTC"))
    s = ColumnStats.of(ts).summary()
    assert s["kind"] == "numeric" and s["min"] == DAY0.timestamp() and s["max"] == DAY0.timestamp() + 7200
    lists = ColumnStats.of(pa.array([[1, 2], None, []]))
    assert kind_of(pa.list_(pa.int64())) == "other"
    assert lists.summary() == {"kind": "other", "count": 3, "nulls": 1, "null_rate": 1 / 3}
    table = pa.table({"x": [1.0, 2.0, None]})
    (only,) = table_stats(table, [Column("x", "v", "x")], None)
    assert list(only.days) == ["all"] and only.days["all"].values == 2


def test_full_feature_names_map_through_the_service() -> None:
    src = FileSourceSpec("s", "/nowhere", "event_timestamp")
    view = ViewSpec("user", "batch", ("user",), (FieldSpec("user_id", "int64"),),
                    (FieldSpec("age", "int64"), FieldSpec("score", "float64")), 0, "event_timestamp",
                    batch_source=src)  # fmt: skip
    service = ServiceSpec("svc", (ProjectionSpec("user", "u2", ("score",)),))
    repo = RepoSpec("p", {}, {"user": view}, {}, {"svc": service})
    names = ["user_id", "user__age", "user__score", "u2__score", "user__score__status"]
    assert full_name_columns(repo, names) == [Column("user__age", "user", "age"),
                                              Column("user__score", "user", "score")]  # fmt: skip
    assert full_name_columns(repo, names, "svc") == [Column("u2__score", "user", "score")]
    with pytest.raises(BadInputError, match="no column is a feature"):
        full_name_columns(repo, ["user_id"])
