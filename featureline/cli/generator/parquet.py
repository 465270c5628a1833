"""Parquet output: raw events (the `transactions_raw` batch source) and batch sources.

Layout (feature_repo/sources.py): `<offline>/raw/transactions/date=YYYY-MM-DD/part-*.parquet`,
`<offline>/user_profile/`, `<offline>/labels/fraud_labels.parquet`. The offline layout
module (featureline/offline.py) is owned elsewhere; `write_raw_events` is kept small
and dependency-free so it can move there or be called from there.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featureline.cli.generator.config import GeneratorConfig
from featureline.cli.generator.model import COUNTRIES, TS_TYPE, population

RAW_SCHEMA = pa.schema(
    [
        ("txn_id", pa.string()),
        ("user_id", pa.int64()),
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("country", pa.string()),
        ("event_timestamp", TS_TYPE),
        ("created", TS_TYPE),  # ingestion time
        ("kafka_partition", pa.int32()),  # -1: not read from Kafka
        ("kafka_offset", pa.int64()),
    ]
)
RAW_SUBDIR = Path("raw") / "transactions"
_DAY_US = 86_400_000_000


def raw_events_table(events: pa.Table) -> pa.Table:
    """`events` in RAW_SCHEMA; kafka_partition/kafka_offset default to -1."""
    n = events.num_rows
    columns = []
    for field in RAW_SCHEMA:
        if field.name in events.column_names:
            columns.append(events[field.name].cast(field.type))
        elif field.name in ("kafka_partition", "kafka_offset"):
            columns.append(pa.array(np.full(n, -1), type=field.type))
        else:
            raise ValueError(f"raw events need column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA)


def write_raw_events(events: pa.Table, root: Path, part_name: str = "part-00000") -> list[Path]:
    """Write events under root/date=YYYY-MM-DD/<part_name>.parquet, one file per UTC date
    of event_timestamp (a late event lands in the day it happened, not the day it
    arrived). Rows keep their order. A file of the same name is replaced, so
    re-running the same generation is idempotent. Returns the files written."""
    table = raw_events_table(events)
    day = table["event_timestamp"].cast(pa.int64()).to_numpy() // _DAY_US
    order = np.argsort(day, kind="stable")
    day_sorted = day[order]
    table = table.take(pa.array(order))
    bounds = np.flatnonzero(np.diff(day_sorted)) + 1
    written: list[Path] = []
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(day_sorted)], strict=True):
        if stop <= start:
            continue
        date = np.datetime64(int(day_sorted[start]), "D")
        path = root / f"date={date}" / f"{part_name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(int(start), int(stop - start)), path)
        written.append(path)
    return written


def user_profile_table(config: GeneratorConfig) -> pa.Table:
    """One row per user. The snapshot is stamped one day before the first event, so a
    point-in-time join finds it for every generated transaction."""
    pop = population(config)
    n = len(pop.user_ids)
    stamp = config.start - timedelta(days=1)
    stamps = pa.array([stamp] * n, type=TS_TYPE)
    return pa.table(
        {
            "user_id": pa.array(pop.user_ids, type=pa.int64()),
            "account_age_days": pa.array(pop.account_age_days, type=pa.int64()),
            "home_country": pa.array([COUNTRIES[i] for i in pop.home], type=pa.string()),
            "credit_limit": pa.array(pop.credit_limit, type=pa.float64()),
            "event_timestamp": stamps,
            "created": stamps,
        }
    )


def labels_table(events: pa.Table) -> pa.Table:
    columns = ["txn_id", "user_id", "merchant_id", "amount", "country", "event_timestamp"]
    labels = events.select(columns)
    return labels.append_column("is_fraud", events["is_fraud"].cast(pa.int64()))


def write_batch_sources(config: GeneratorConfig, events: pa.Table, offline_dir: Path) -> dict[str, Path]:
    """user_profile and fraud labels for the demo repo; returns name -> file."""
    profile = offline_dir / "user_profile" / "user_profile.parquet"
    labels = offline_dir / "labels" / "fraud_labels.parquet"
    for path in (profile, labels):
        path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(user_profile_table(config), profile)
    pq.write_table(labels_table(events), labels)
    return {"user_profile": profile, "labels": labels}


def raw_part_name(config: GeneratorConfig) -> str:
    """Stable per (seed, start): the same generation overwrites its own files only."""
    return f"part-gen-s{config.seed}-{config.start:%Y%m%dT%H%M%S}"
