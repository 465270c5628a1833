"""FileSources on an object store (s3:// with Feast's `s3_endpoint_override`), read
through pyarrow's filesystems: historical retrieval and materialize give exactly what
the same data gives from a local path. The store is a real S3 server (moto's) on
loopback."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import redis

from featureline.cli import main
from featureline.cli.devstack import free_ports
from featureline.object_store import Location
from featureline.offline import TS_TYPE
from featureline.settings import Settings

BUCKET = "features"
US = 1_000_000
T0_US = 1_714_521_600 * US  # 2024-05-01T00:00:00Z
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

DEFS = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
source = FileSource(name="stats", path={path!r}, timestamp_field="event_timestamp",
                    created_timestamp_column="created", s3_endpoint_override={endpoint!r})
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=2), source=source,
                    schema=[Field(name="rate", dtype=Float64), Field(name="trips", dtype=Int64),
                            Field(name="city", dtype=String)])
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stats() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 3_000
    drivers = rng.integers(0, 200, n)
    event = T0_US + rng.integers(0, 3 * 86_400, n) * US
    event[:50] = event[50:100]  # ties on event time, broken by created time
    return pa.table({
        "driver_id": pa.array(drivers, pa.int64()),
        "rate": pa.array(rng.random(n)),
        "trips": pa.array(rng.integers(0, 1000, n), pa.int64()),
        "city": pa.array(rng.choice(["Paris", "Lyon", "Nice"], n)),
        "event_timestamp": pa.array(event).cast(TS_TYPE),
        "created": pa.array(event + rng.integers(0, 10, n) * US).cast(TS_TYPE),
    })  # fmt: skip


def _repo(root: Path, path: str, endpoint: str, settings: Settings) -> Settings:
    root.mkdir(parents=True)
    (root / "feature_store.yaml").write_text(
        "project: objstore\nprovider: local\nregistry: data/registry.db\n"
        f"online_store:\n  type: redis\n  connection_string: 127.0.0.1:{settings.redis_port}\n"
        "entity_key_serialization_version: 3\n"
    )
    (root / "defs.py").write_text(DEFS.format(path=path, endpoint=endpoint))
    return dataclasses.replace(settings, repo=root, home=root / ".home")


@dataclasses.dataclass
class Repos:
    local: Settings
    remote: Settings


@pytest.fixture(scope="module")
def repos(s3_endpoint: str, stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Repos:
    root = tmp_path_factory.mktemp("objstore")
    table = _stats()
    local_file = root / "stats.parquet"
    pq.write_table(table, local_file)
    fs = pafs.S3FileSystem(endpoint_override=s3_endpoint.split("://")[1], scheme="http",
                           allow_bucket_creation=True)  # fmt: skip
    fs.create_dir(BUCKET)
    pq.write_table(table, f"{BUCKET}/stats/part-0.parquet", filesystem=fs)
    return Repos(
        local=_repo(root / "local", str(local_file), "", stack),
        remote=_repo(root / "remote", f"s3://{BUCKET}/stats", s3_endpoint, stack),
    )


def _run(settings: Settings, *args: str) -> int:
    # Restored after: a FEATURELINE_REDIS_PORT left in os.environ would override the
    # yaml of every later test's repo (a cluster's node list among them).
    with mock.patch.dict(os.environ, settings.env_vars()):
        return main([*args, "--repo", str(settings.repo)])


def test_location_reads_s3(repos: Repos, s3_endpoint: str) -> None:
    remote = Location(f"s3://{BUCKET}/stats", s3_endpoint)
    assert remote.exists() and remote.is_dir()
    assert not Location(f"s3://{BUCKET}/nothing-here", s3_endpoint).exists()
    assert remote.dataset().to_table().sort_by("rate") == _stats().sort_by("rate")


def test_historical_from_s3_equals_local(repos: Repos, tmp_path: Path) -> None:
    entities = pa.table({
        "driver_id": pa.array(list(range(0, 220, 3)), pa.int64()),
        "event_timestamp": pa.array([T0_US + (i % 5) * 86_400 * US for i in range(0, 220, 3)]).cast(TS_TYPE),
    })  # fmt: skip
    entity_path = tmp_path / "entities.parquet"
    pq.write_table(entities, entity_path)
    outputs = {}
    for name, settings in (("local", repos.local), ("remote", repos.remote)):
        out = tmp_path / f"{name}.parquet"
        args = ("historical", "--entity-df", str(entity_path), "--features",
                "stats:rate,stats:trips,stats:city", "--out", str(out))  # fmt: skip
        assert _run(settings, *args) == 0
        outputs[name] = pq.read_table(out)
    assert outputs["remote"].num_rows == entities.num_rows
    assert outputs["remote"].column("rate").null_count < entities.num_rows  # values were found
    assert outputs["remote"] == outputs["local"]


def _hashes(port: int) -> dict[bytes, object]:
    """Every key: a hash's fields (the entity rows), a string's value (the run's mark)."""
    client = redis.Redis(port=port)
    return {
        key: client.hgetall(key) if client.type(key) == b"hash" else client.get(key)
        for key in client.scan_iter(count=1000)
    }


def test_materialize_from_s3_equals_local(repos: Repos) -> None:
    client = redis.Redis(port=repos.local.redis_port)
    window = ("--start", "2024-04-30T00:00:00", "--end", "2024-05-05T00:00:00")
    snapshots = []
    for settings in (repos.local, repos.remote):
        client.flushdb()
        assert _run(settings, "materialize", *window) == 0
        snapshots.append(_hashes(settings.redis_port))
    assert sum(isinstance(v, dict) for v in snapshots[0].values()) == 200
    assert snapshots[1] == snapshots[0]


def test_unreachable_store_is_a_clear_error(repos: Repos, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:  # fmt: skip
    (port,) = free_ports(1)
    dead = _repo(tmp_path / "dead", f"s3://{BUCKET}/stats", f"http://127.0.0.1:{port}", repos.local)
    code = _run(dead, "materialize", "--start", "2024-04-30T00:00:00", "--end", "2024-05-05T00:00:00")
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert code != 0
    assert f"cannot read s3://{BUCKET}/stats" in text and "Traceback" not in text, text
