"""Feast's `key_ttl_seconds` (feature_store.yaml): every key that materialize and push
write gets that EXPIRE, as Feast's Redis store sets it; without it keys never expire."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featureline.cli import main
from featureline.offline import TS_TYPE
from featureline.settings import Settings

US = 1_000_000
T0_US = 1_714_521_600 * US  # 2024-05-01T00:00:00Z
DB = 5

DEFS = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
source = FileSource(name="stats", path="stats.parquet", timestamp_field="event_timestamp")
push = PushSource(name="stats_push", batch_source=source)
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=0), source=push,
                    schema=[Field(name="trips", dtype=Int64)])
"""


def _repo(root: Path, stack: Settings, ttl: str) -> Settings:
    root.mkdir(parents=True)
    (root / "feature_store.yaml").write_text(
        "project: keyttl\nprovider: local\nregistry: data/registry.db\nonline_store:\n  type: redis\n"
        f"  connection_string: 127.0.0.1:{stack.redis_port},db={DB}\n{ttl}"
    )
    (root / "defs.py").write_text(DEFS)
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 2, 3], pa.int64()), "trips": pa.array([5, 6, 7], pa.int64()),
        "event_timestamp": pa.array([T0_US] * 3).cast(TS_TYPE),
    }), root / "stats.parquet")  # fmt: skip
    return dataclasses.replace(stack, repo=root, home=root / ".home")


def _cli(settings: Settings, *args: str) -> int:
    with mock.patch.dict(os.environ, {"FEATURELINE_HOME": str(settings.home)}):  # restored after
        for key in [k for k in os.environ if k.startswith("FEATURELINE_REDIS")]:
            del os.environ[key]  # the yaml names the Redis (a set variable would override it)
        return main([*args, "--repo", str(settings.repo)])


@pytest.mark.parametrize("ttl", [3600, 0])
def test_materialize_and_push_set_key_ttl(stack: Settings, tmp_path: Path, ttl: int) -> None:
    client = redis.Redis(port=stack.redis_port, db=DB)
    client.flushdb()
    settings = _repo(tmp_path / "repo", stack, f"  key_ttl_seconds: {ttl}\n" if ttl else "")
    window = ("--start", "2024-04-30T00:00:00", "--end", "2024-05-02T00:00:00")
    assert _cli(settings, "materialize", *window) == 0
    rows = tmp_path / "push.json"
    rows.write_text('{"driver_id": [4], "trips": [9], "event_timestamp": ["2024-05-01T01:00:00"]}')
    assert _cli(settings, "push", "--source", "stats_push", "--file", str(rows), "--to", "online") == 0
    keys = [k for k in client.scan_iter() if client.type(k) == b"hash"]
    assert len(keys) == 4
    ttls = [client.ttl(k) for k in keys]
    if ttl:
        assert all(0 < t <= ttl for t in ttls), ttls
    else:
        assert ttls == [-1] * 4
