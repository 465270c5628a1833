"""Randomized test data for historical retrieval, rich in the edge cases of issue 3.

Three views, written to a temporary offline store with `featureline.offline`:
- `profile` (user_id): ttl 1 h, created-timestamp tie-breaks, null values, tz-aware
  UTC timestamps, date-partitioned.
- `pair` (user_id, merchant_id compound key): ttl 0 (unbounded), no created column,
  naive timestamps (read as UTC), one plain Parquet file.
- `txn_stats` (user_id): windowed aggregations over raw events whose timestamps are
  stored in another zone (Asia/Kolkata), with null and NaN amounts.

Source rows are planted relative to the request rows: exactly at t, exactly at
t - ttl, 1 microsecond outside it, equal event times with different created times,
events exactly at a window's start and 1 microsecond before it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from oracle.naive import US, window_start_us

from featureline.offline import write_partitioned
from featureline.specs import (
    AggregationSpec,
    EntitySpec,
    FieldSpec,
    FileSourceSpec,
    RepoSpec,
    ViewSpec,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SPAN_S = 4 * 3600
PROFILE_TTL_S = 3600
AGGS = (
    AggregationSpec("amount", "count", 600, 0, "count_10m"),
    AggregationSpec("amount", "sum", 600, 0, "sum_10m"),
    AggregationSpec("amount", "mean", 600, 0, "mean_10m"),
    AggregationSpec("amount", "min", 600, 0, "min_10m"),
    AggregationSpec("amount", "max", 600, 0, "max_10m"),
    AggregationSpec("amount", "sum", 3600, 60, "sum_1h"),
    AggregationSpec("amount", "mean", 3600, 60, "mean_1h"),
    AggregationSpec("merchant_id", "count_distinct", 3600, 60, "merchants_1h"),
    AggregationSpec("merchant_id", "max", 3600, 60, "last_merchant_1h"),
    # Feast's four spellings of var/std, over both window groups (n < 2: null).
    AggregationSpec("amount", "var", 600, 0, "var_10m"),
    AggregationSpec("amount", "stddev", 600, 0, "stddev_10m"),
    AggregationSpec("amount", "variance", 3600, 60, "variance_1h"),
    AggregationSpec("amount", "std", 3600, 60, "std_1h"),
)
KOLKATA = timezone(timedelta(hours=5, minutes=30))
EDGE_USER = 1000


@dataclass
class Dataset:
    repo: RepoSpec
    entity: pa.Table
    sources: dict[str, pa.Table]  # view -> source rows as written


def _ts(us: int) -> datetime:
    return T0 + timedelta(microseconds=us)


def build_repo(offline: Path) -> RepoSpec:
    user = FieldSpec("user_id", "int64")
    merchant = FieldSpec("merchant_id", "string")
    profile = ViewSpec(
        name="profile",
        kind="batch",
        entities=("user",),
        join_keys=(user,),
        features=(
            FieldSpec("score", "float64"),
            FieldSpec("tier", "string"),
            FieldSpec("visits", "int64"),
        ),
        ttl_s=PROFILE_TTL_S,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        batch_source=FileSourceSpec("profile_src", str(offline / "profile"), "event_timestamp", "created"),
    )
    pair = ViewSpec(
        name="pair",
        kind="batch",
        entities=("user", "merchant"),
        join_keys=(user, merchant),
        features=(FieldSpec("pair_amount", "float64"),),
        ttl_s=0,
        timestamp_field="ts",
        batch_source=FileSourceSpec(
            "pair_src", str(offline / "pair.parquet"), "ts", "", {"amt": "pair_amount"}
        ),
    )
    stats = _stats_view(offline, user, merchant)
    return RepoSpec(
        project="hist_test",
        entities={
            "user": EntitySpec("user", "user_id", "int64"),
            "merchant": EntitySpec("merchant", "merchant_id", "string"),
        },
        views={v.name: v for v in (profile, pair, stats)},
        on_demand_views={},
        services={},
    )


def _stats_view(offline: Path, user: FieldSpec, merchant: FieldSpec) -> ViewSpec:
    def dtype(agg: AggregationSpec) -> str:
        if agg.function in ("count", "count_distinct"):
            return "int64"
        return "string" if agg.column == "merchant_id" else "float64"

    return ViewSpec(
        name="txn_stats",
        kind="stream",
        entities=("user",),
        join_keys=(user,),
        features=tuple(FieldSpec(a.name, dtype(a)) for a in AGGS),
        ttl_s=86400,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        batch_source=FileSourceSpec(
            "txn_raw", str(offline / "raw" / "transactions"), "event_timestamp", "created"
        ),
        aggregations=AGGS,
        input_fields=(FieldSpec("amount", "float64"), merchant),
    )


def _entity_rows(rng: random.Random, n: int, users: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(n):
        t = rng.randrange(0, SPAN_S * US)
        user = rng.randrange(users + 3) if rng.random() > 0.03 else None  # some unknown / null
        rows.append(
            {"user_id": user, "merchant_id": f"m{rng.randrange(5)}", "t_us": t, "label": rng.random()}
        )
    # Edge rows get a user of their own, so that the planted source rows decide them.
    for i, row in enumerate(rng.sample(rows, n // 3)):
        row["user_id"] = EDGE_USER + i
    rows += [dict(r) for r in rng.sample(rows, max(1, n // 10))]  # duplicated rows
    rng.shuffle(rows)  # unsorted
    return rows


def _edge_requests(req: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unique = {r["user_id"]: r for r in req if r["user_id"] is not None and r["user_id"] >= EDGE_USER}
    return [unique[u] for u in sorted(unique)]


def _profile_rows(rng: random.Random, req: list[dict[str, Any]], users: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(user: int, ts: int, created: int | None, score: float | None = 0.0) -> None:
        if score == 0.0:
            score = None if rng.random() < 0.15 else rng.uniform(-100, 100)
        rows.append(
            {
                "user_id": user,
                "ts": ts,
                "created": created,
                "score": score,
                "tier": rng.choice(["a", "b", None]),
                "visits": rng.randrange(1000),
            }
        )

    for _ in range(len(req) * 2):
        add(
            rng.randrange(users),
            rng.randrange(-PROFILE_TTL_S * US, SPAN_S * US),
            rng.randrange(0, SPAN_S * US) if rng.random() > 0.1 else None,
        )
    ttl = PROFILE_TTL_S * US
    for r in _edge_requests(req):
        user, t = r["user_id"], r["t_us"]
        case = rng.choice(["at t", "at t-ttl", "1us outside", "1us future", "tie", "null wins"])
        if case == "tie":  # equal event times: the largest created time wins, null loses
            edge = t - rng.randrange(ttl)
            for created in (rng.randrange(SPAN_S * US), None, rng.randrange(SPAN_S * US)):
                add(user, edge, created)
        elif case == "null wins":  # the newest row has a null score: null, no fall-back
            add(user, t - 20 * US, 5, score=3.25)
            add(user, t - 10 * US, 5, score=None)
        else:
            offset = {"at t": 0, "at t-ttl": ttl, "1us outside": ttl + 1, "1us future": -1}[case]
            add(user, t - offset, rng.randrange(SPAN_S * US))
    return _unique(rows, ("user_id", "ts", "created"))


def _pair_rows(rng: random.Random, req: list[dict[str, Any]], users: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(len(req) * 2):
        rows.append(
            {
                "user_id": rng.randrange(users),
                "merchant_id": f"m{rng.randrange(5)}",
                "ts": rng.randrange(-SPAN_S * US, SPAN_S * US),
                "amt": None if rng.random() < 0.1 else round(rng.uniform(0, 500), 2),
            }
        )
    for r in _edge_requests(req):  # ttl 0: a row days older still counts; other merchant not
        rows.append(
            {
                "user_id": r["user_id"],
                "merchant_id": r["merchant_id"],
                "ts": r["t_us"] - rng.choice([0, 30 * 86400 * US]),
                "amt": 1.5,
            }
        )
        rows.append({"user_id": r["user_id"], "merchant_id": "other", "ts": r["t_us"], "amt": 2.5})
    return _unique(rows, ("user_id", "merchant_id", "ts"))


def _event_rows(rng: random.Random, req: list[dict[str, Any]], users: int) -> list[dict[str, Any]]:
    rows = []

    def add(user: int, ts: int) -> None:
        amount: float | None = rng.choice(
            [
                round(rng.uniform(0, 300), 2),
                rng.uniform(-1, 1) * 10 ** rng.randrange(-8, 9),
                0.1,
                1e16,
                -1e16,
                # Close large values: a float64 variance of them cancels to garbage.
                1e9 + rng.randrange(1, 4),
                None,
                float("nan"),
            ]
        )
        rows.append(
            {
                "user_id": user,
                "ts": ts,
                "created": ts + rng.randrange(10 * US),
                "amount": amount,
                "merchant_id": rng.choice(["m1", "m2", "m3", "x", None]),
            }
        )

    for _ in range(len(req) * 4):
        add(rng.randrange(users), rng.randrange(-2 * 3600 * US, SPAN_S * US))
    epoch_t0 = int(T0.timestamp()) * US
    for r in _edge_requests(req):  # events exactly at start(t) and t count; 1 us out do not
        agg = rng.choice(AGGS)
        start = window_start_us(r["t_us"] + epoch_t0, agg.window_s, agg.slide_s) - epoch_t0
        for ts in (r["t_us"], start, start - 1, r["t_us"] + 1, rng.randrange(start, r["t_us"] + 1)):
            add(r["user_id"], ts)
    return rows


def _unique(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(tuple(row[k] for k in key), row)
    return list(seen.values())


def generate(offline: Path, seed: int, n: int = 300, users: int = 25) -> Dataset:
    rng = random.Random(seed)
    repo = build_repo(offline)
    req = _entity_rows(rng, n, users)
    # Mixed zones: request times in several zones (one column of Python datetimes).
    zones = [UTC, timezone(timedelta(hours=-5)), KOLKATA]
    entity = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in req], pa.int64()),
            "merchant_id": [r["merchant_id"] for r in req],
            "event_timestamp": pa.array(
                [_ts(r["t_us"]).astimezone(rng.choice(zones)) for r in req],
                pa.timestamp("us", tz="America/New_York"),
            ),
            "label": [r["label"] for r in req],
        }
    )
    profile = _profile_rows(rng, req, users)
    profile_table = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in profile], pa.int64()),
            "event_timestamp": pa.array([_ts(r["ts"]) for r in profile], pa.timestamp("us", tz="UTC")),
            "created": pa.array(
                [None if r["created"] is None else _ts(r["created"]) for r in profile],
                pa.timestamp("us", tz="UTC"),
            ),
            "score": [r["score"] for r in profile],
            "tier": [r["tier"] for r in profile],
            "visits": pa.array([r["visits"] for r in profile], pa.int64()),
        }
    )
    write_partitioned(profile_table, offline / "profile", ts_column="event_timestamp")
    pair = _pair_rows(rng, req, users)
    pair_table = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in pair], pa.int64()),
            "merchant_id": [r["merchant_id"] for r in pair],
            "ts": pa.array([_ts(r["ts"]).replace(tzinfo=None) for r in pair], pa.timestamp("us")),
            "amt": pa.array([r["amt"] for r in pair], pa.float64()),
        }
    )
    pq.write_table(pair_table, offline / "pair.parquet")
    events = _event_rows(rng, req, users)
    event_table = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in events], pa.int64()),
            "event_timestamp": pa.array(
                [_ts(r["ts"]) for r in events], pa.timestamp("us", tz="Asia/Kolkata")
            ),
            "created": pa.array([_ts(r["created"]) for r in events], pa.timestamp("us", tz="UTC")),
            "amount": pa.array([r["amount"] for r in events], pa.float64()),
            "merchant_id": [r["merchant_id"] for r in events],
        }
    )
    write_partitioned(event_table, offline / "raw" / "transactions", ts_column="event_timestamp")
    return Dataset(repo, entity, {"profile": profile_table, "pair": pair_table, "txn_stats": event_table})
