"""The data of `featureline bench materialize`: a Feast repo with one 5-feature view
over one generated Parquet file (numpy, seeded)."""

from __future__ import annotations

from pathlib import Path

VIEW = "bench_profile"

_STORE_YAML = """project: bench_materialize
provider: local
registry: {registry}
online_store:
  type: redis
  connection_string: 127.0.0.1:{port}
offline_store:
  type: file
entity_key_serialization_version: 3
"""
_DEFS = """from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
source = FileSource(name="bench_source", path={path!r}, timestamp_field="event_timestamp",
                    created_timestamp_column="created")
bench_profile = FeatureView(
    name="bench_profile", entities=[user], ttl=timedelta(days=3650), source=source,
    schema=[Field(name="f_amount", dtype=Float64), Field(name="f_score", dtype=Float64),
            Field(name="f_count", dtype=Int64), Field(name="f_age", dtype=Int64),
            Field(name="f_country", dtype=String)],
)
"""


def write_repo(workdir: Path, rows: int, entities: int, redis_port: int) -> Path:
    """A Feast repo with one 5-feature view over one Parquet file of `rows` rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    data = workdir / "source.parquet"
    users = np.concatenate([np.arange(entities), rng.integers(0, entities, max(rows - entities, 0))])
    start_us = 1_767_225_600_000_000  # 2026-01-01
    ts = start_us + rng.integers(0, 30 * 86_400 * 10**6, len(users))
    stamps = pa.array(ts).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "user_id": users,
            "f_amount": rng.lognormal(3.5, 1.2, len(users)).round(2),
            "f_score": rng.random(len(users)),
            "f_count": rng.integers(0, 10_000, len(users)),
            "f_age": rng.integers(0, 5_000, len(users)),
            "f_country": pa.array(rng.choice(["US", "FR", "DE", "GB", "JP"], len(users))),
            "event_timestamp": stamps,
            "created": stamps,
        }
    )
    pq.write_table(table, data)
    repo = workdir / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        _STORE_YAML.format(registry=workdir / "registry.db", port=redis_port)
    )
    (repo / "defs.py").write_text(_DEFS.format(path=str(data)))
    return repo
