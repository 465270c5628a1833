"""Benchmark data for `featureline bench historical`, generated with numpy in seconds.

One feature view `user_stats` (key user_id, 5 features: 3 float64, 2 int64, ttl 7 days,
created-timestamp column) over a date-partitioned offline store written by
`featureline.offline`, an entity frame with a unique `req_id`, and a small Feast repo
(file offline store, SQLite registry) so Feast's own get_historical_features runs on
the very same files.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featureline.offline import write_partitioned

VIEW = "user_stats"
FEATURES = tuple(f"{VIEW}:f{i}" for i in range(5))
# 2024-01-01T00:00:00Z in microseconds; the source spans 30 days, requests the last 29.
T0_US = 1_704_067_200_000_000
DAY_US = 86_400_000_000
SPAN_DAYS = 30

_DEFINITIONS = """\
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
source = FileSource(
    name="user_stats_source",
    path="{path}",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=7),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="f0", dtype=Float64),
        Field(name="f1", dtype=Float64),
        Field(name="f2", dtype=Float64),
        Field(name="f3", dtype=Int64),
        Field(name="f4", dtype=Int64),
    ],
    source=source,
)
"""


@dataclass(frozen=True)
class BenchData:
    root: Path
    repo: Path  # the Feast repo (feature_store.yaml + definitions)
    entity: Path  # entity frame, Parquet
    entity_rows: int
    feature_rows: int
    keys: int


def generate(root: Path, entity_rows: int, feature_rows: int, keys: int, seed: int = 0) -> BenchData:
    """Write the source, the entity frame and the Feast repo under `root` (idempotent:
    an existing dataset of the same sizes is reused)."""
    marker = root / f"done-{entity_rows}-{feature_rows}-{keys}-{seed}"
    data = BenchData(root, root / "repo", root / "entity.parquet", entity_rows, feature_rows, keys)
    if marker.exists():
        return data
    rng = np.random.default_rng(seed)
    offline = root / "offline"
    _write_source(rng, offline / VIEW, feature_rows, keys)
    # Every key of the request exists in the source (keys < feature rows), so Feast's
    # dropping of unknown keys (anchors.md) does not shrink its output here.
    entity = pa.table(
        {
            "user_id": rng.integers(0, min(keys, feature_rows), entity_rows, dtype=np.int64),
            "event_timestamp": pa.array(
                T0_US + DAY_US + rng.integers(0, (SPAN_DAYS - 1) * DAY_US, entity_rows),
                pa.timestamp("us", "UTC"),
            ),
            "req_id": np.arange(entity_rows, dtype=np.int64),
        }
    )
    pq.write_table(entity, data.entity)
    _write_repo(data.repo, root, offline / VIEW)
    marker.touch()
    return data


def _write_source(rng: np.random.Generator, base: Path, rows: int, keys: int) -> None:
    chunk = 2_000_000  # bounds the generator's memory at ~150 MB whatever the size
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        event = T0_US + rng.integers(0, SPAN_DAYS * DAY_US, n)
        table = pa.table(
            {
                "user_id": rng.integers(0, keys, n, dtype=np.int64),
                "event_timestamp": pa.array(event, pa.timestamp("us", "UTC")),
                "created": pa.array(event + rng.integers(0, 60_000_000, n), pa.timestamp("us", "UTC")),
                "f0": rng.random(n),
                "f1": rng.normal(100.0, 30.0, n),
                "f2": np.round(rng.gamma(2.0, 50.0, n), 2),
                "f3": rng.integers(0, 1000, n, dtype=np.int64),
                "f4": rng.integers(0, 2**40, n, dtype=np.int64),
            }
        )
        write_partitioned(table, base, ts_column="event_timestamp", writer=f"bench{start // chunk}")


def _write_repo(repo: Path, root: Path, source: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(f"""\
        project: bench_historical
        provider: local
        registry:
          registry_type: sql
          path: sqlite:///{root / "registry.db"}
        online_store:
          type: sqlite
          path: {root / "online.db"}
        offline_store:
          type: file
        entity_key_serialization_version: 3
        """)
    )
    (repo / "definitions.py").write_text(_DEFINITIONS.replace("{path}", str(source)))
