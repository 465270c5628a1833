"""The stats tests' offline store: eight days of a user_profile view in Parquet, the
eighth with credit limits shifted on purpose, and the repo as plain specs (no Feast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featureline.specs import (
    AggregationSpec,
    FieldSpec,
    FileSourceSpec,
    ProjectionSpec,
    RepoSpec,
    ServiceSpec,
    ViewSpec,
)

DAY_S = 86_400
T0_S = 1_709_251_200  # 2024-03-01 00:00 UTC
ROWS_PER_DAY = 3_000
SHIFTED_DAY = 7  # 2024-03-08: credit limits x1.5


def _day(day: int, rng: np.random.Generator) -> pa.Table:
    users = np.arange(ROWS_PER_DAY) + day * ROWS_PER_DAY
    limit = rng.lognormal(7, 0.5, ROWS_PER_DAY) * (1.5 if day == SHIFTED_DAY else 1.0)
    stamps = pa.array((T0_S + day * DAY_S + rng.integers(0, DAY_S, ROWS_PER_DAY)) * 1_000_000)
    stamps = stamps.cast(pa.timestamp("us", "UTC"))
    return pa.table({
        "user_id": users,
        "account_age_days": rng.integers(0, 3_000, ROWS_PER_DAY),
        "home_country": pa.array(rng.choice(["FR", "DE", "ES"], ROWS_PER_DAY).tolist()),
        "credit_limit": pa.array(limit, mask=rng.random(ROWS_PER_DAY) < 0.02),
        "event_timestamp": stamps,
        "created": stamps,
    })  # fmt: skip


def stats_repo(offline: Path) -> RepoSpec:
    key = (FieldSpec("user_id", "int64"),)
    feats = (FieldSpec("account_age_days", "int64"), FieldSpec("home_country", "string"),
             FieldSpec("credit_limit", "float64"))  # fmt: skip
    source = FileSourceSpec("profiles", str(offline / "user_profile"), "event_timestamp", "created")
    profile = ViewSpec("user_profile", "batch", ("user",), key, feats, 0, "event_timestamp",
                       "created", batch_source=source)  # fmt: skip
    agg = AggregationSpec("amount", "sum", 3600, 3600, "sum_amount_1h")
    stats = ViewSpec(
        "user_txn_stats", "stream", ("user",), key, (FieldSpec("sum_amount_1h", "float64"),), 0,
        "event_timestamp", aggregations=(agg,), input_fields=(FieldSpec("amount", "float64"),),
        batch_source=source,
    )  # fmt: skip
    service = ServiceSpec(
        "fraud_training_v1",
        (ProjectionSpec("user_profile", "user_profile", ("account_age_days", "credit_limit")),),
    )
    return RepoSpec("p", {}, {"user_profile": profile, "user_txn_stats": stats}, {},
                    {"fraud_training_v1": service})  # fmt: skip


def write_days(offline: Path, seed: int = 11) -> list[pa.Table]:
    """The eight days under <offline>/user_profile/date=..., as the stream writes them."""
    rng = np.random.default_rng(seed)
    days = [_day(d, rng) for d in range(8)]
    for d, table in enumerate(days):
        part = offline / "user_profile" / f"date=2024-03-0{d + 1}"
        part.mkdir(parents=True)
        pq.write_table(table, part / "p.parquet")
    return days
