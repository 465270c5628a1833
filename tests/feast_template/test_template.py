"""Feast's `feast init` template, unmodified, through every Featureline data step,
each compared with Feast itself on the same data (issue 12's acceptance test)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis
from template_env import (
    BIN,
    FEAST_DB,
    OURS_DB,
    Repos,
    Served,
    copy_repo,
    feast_env,
    featureline,
    set_online_store,
    spawn_feast_serve,
    spawn_featureline_serve,
    start_featureline_serve,
    wait_http,
)

from featureline.online.value_proto import decode_value

pytestmark = pytest.mark.slow

# The template's own requests (test_workflow.py), verbatim.
HISTORICAL_REFS = [
    "driver_hourly_stats:conv_rate",
    "driver_hourly_stats:acc_rate",
    "driver_hourly_stats:avg_daily_trips",
    "transformed_conv_rate:conv_rate_plus_val1",
    "transformed_conv_rate:conv_rate_plus_val2",
]
ONLINE_REFS = [
    "driver_hourly_stats:acc_rate",
    "driver_hourly_stats:driver_metadata",
    "driver_hourly_stats:driver_config",
    "driver_hourly_stats:driver_profile",
    "transformed_conv_rate:conv_rate_plus_val1",
    "transformed_conv_rate:conv_rate_plus_val2",
]
ONLINE_ENTITIES = {"driver_id": [1001, 1002], "val_to_add": [1000, 1001], "val_to_add_2": [2000, 2002]}
MATERIALIZE_START = "2021-01-01T00:00:00"


def _entity_df(for_batch_scoring: bool) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(
        {
            "driver_id": [1001, 1002, 1003],
            "event_timestamp": [
                datetime(2021, 4, 12, 10, 59, 42),
                datetime(2021, 4, 12, 8, 12, 10),
                datetime(2021, 4, 12, 16, 40, 26),
            ],
            "label_driver_reported_satisfaction": [1, 5, 3],
            "val_to_add": [1, 2, 3],
            "val_to_add_2": [10, 20, 30],
        }
    )
    if for_batch_scoring:
        frame["event_timestamp"] = pd.to_datetime("now", utc=True)
    return frame


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def applied(repos: Repos, home: Path) -> Repos:
    # Both at once (separate repos, registries and Redis dbs): each CLI spends ~8 s
    # importing feast, on a core of its own.
    feast = subprocess.Popen([str(BIN / "feast"), "apply"], cwd=repos.feast, env=feast_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out = _ok(featureline(repos.ours, "apply", home=home))
        stdout, stderr = feast.communicate(timeout=300)
    finally:
        if feast.poll() is None:
            feast.kill()
            feast.wait()
    _ok(subprocess.CompletedProcess(feast.args, feast.returncode, stdout, stderr))
    # The repo's own registry (data/registry.db, Feast's default file registry) is used.
    assert (repos.ours / "data" / "registry.db").is_file(), out
    return repos


@pytest.fixture(scope="module")
def feast_store(applied: Repos) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(applied.feast))


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain values, keyed by column, sorted by key and time: NaN is None,
    timestamps are UTC instants, numpy scalars are Python ones."""
    out = []
    for record in frame.to_dict(orient="records"):
        row = {}
        for key, value in record.items():
            if isinstance(value, pd.Timestamp):
                value = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
            elif isinstance(value, float) and math.isnan(value) or value is pd.NA:
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            row[key] = value
        out.append(row)
    return sorted(out, key=lambda r: (r["driver_id"], r["event_timestamp"]))


@pytest.mark.parametrize("for_batch_scoring", [False, True], ids=["training", "batch-scoring"])
def test_historical_equals_feast(applied: Repos, feast_store: Any, home: Path, tmp_path: Path,
                                 for_batch_scoring: bool) -> None:  # fmt: skip
    entity_df = _entity_df(for_batch_scoring)
    expected = feast_store.get_historical_features(entity_df=entity_df, features=HISTORICAL_REFS).to_df()
    path = tmp_path / "entities.parquet"
    entity_df.to_parquet(path)
    out = tmp_path / "training.parquet"
    _ok(featureline(applied.ours, "historical", "--entity-df", str(path), "--features",
                    ",".join(HISTORICAL_REFS), "--out", str(out), home=home))  # fmt: skip
    ours = pd.read_parquet(out)
    assert sorted(ours.columns) == sorted(expected.columns), f"{list(ours.columns)} != {expected.columns}"
    assert ours["event_timestamp"].dt.tz is not None, "naive entity timestamps come back UTC-aware"
    assert _rows(ours) == _rows(expected)


@pytest.fixture(scope="module")
def materialized(applied: Repos, feast_store: Any, home: Path) -> Repos:
    client = redis.Redis(port=applied.redis_port)
    for db in (FEAST_DB, OURS_DB):
        client.execute_command("SELECT", db)
        client.flushdb()
    end = datetime.now(UTC).replace(microsecond=0)
    start = datetime.fromisoformat(MATERIALIZE_START).replace(tzinfo=UTC)
    feast_store.materialize(start_date=start, end_date=end)
    _ok(featureline(applied.ours, "materialize", "--start", MATERIALIZE_START, "--end",
                    end.strftime("%Y-%m-%dT%H:%M:%S"), home=home))  # fmt: skip
    return applied


def _hashes(port: int, db: int) -> dict[bytes, dict[bytes, bytes]]:
    """Every entity hash (Feast's fields: ours add `_fl_*` bookkeeping, and a run mark)."""
    client = redis.Redis(port=port, db=db)
    out = {}
    for key in client.scan_iter(count=1000):
        if client.type(key) != b"hash":
            continue
        fields = client.hgetall(key)
        out[key] = {k: v for k, v in fields.items() if not k.startswith(b"_fl_")}
    return out


def test_materialize_writes_what_feast_writes(materialized: Repos) -> None:
    feast_hashes = _hashes(materialized.redis_port, FEAST_DB)
    ours = _hashes(materialized.redis_port, OURS_DB)
    assert feast_hashes, "feast materialize wrote nothing"
    assert ours.keys() == feast_hashes.keys()
    for key, fields in feast_hashes.items():
        assert ours[key].keys() == fields.keys()
        for field, value in fields.items():
            # Feast's protobuf writes a map's entries in a per-process hash order (two
            # `feast materialize` runs differ too): those compare by decoded value.
            if ours[key][field] != value:
                assert decode_value(ours[key][field]) == decode_value(value), (key, field)


def test_feast_sdk_reads_what_we_materialized(materialized: Repos, feast_store: Any) -> None:
    from feast import FeatureStore

    ours_store = FeatureStore(repo_path=str(materialized.ours))
    rows = [dict(zip(ONLINE_ENTITIES, v, strict=True)) for v in zip(*ONLINE_ENTITIES.values(), strict=True)]
    refs = ["driver_hourly_stats:conv_rate", *ONLINE_REFS]
    expected = feast_store.get_online_features(features=refs, entity_rows=rows).to_dict()
    assert ours_store.get_online_features(features=refs, entity_rows=rows).to_dict() == expected


@pytest.fixture(scope="module")
def servers(materialized: Repos, home: Path) -> Iterator[tuple[Served, Served]]:
    # Both started before either is waited for: each imports its packages (~5 s) on a
    # core of its own.
    feast = spawn_feast_serve(materialized.feast, home)
    ours = spawn_featureline_serve(materialized.ours, home)
    try:
        yield wait_http(feast, "/health"), wait_http(ours, "/health")
    finally:
        ours.stop()
        feast.stop()


@pytest.mark.parametrize(
    "request_body",
    [
        {"features": ONLINE_REFS, "entities": ONLINE_ENTITIES},
        {"feature_service": "driver_activity_v1", "entities": ONLINE_ENTITIES},
        {"feature_service": "driver_activity_v3", "entities": ONLINE_ENTITIES},
    ],
    ids=["plain-refs", "driver_activity_v1", "driver_activity_v3"],
)
def test_serve_answers_as_feast_serve(servers: tuple[Served, Served], request_body: dict[str, Any]) -> None:
    feast, ours = servers
    expected = httpx.post(f"{feast.url}/get-online-features", json=request_body, timeout=30)
    assert expected.status_code == 200, expected.text
    got = httpx.post(f"{ours.url}/get-online-features", json=request_body, timeout=30)
    assert got.status_code == 200, got.text
    # `feast serve` lists the features in a set's order, which changes from one process
    # to the next (string hashing is randomized): ours keeps the request's order, and
    # each feature's values, statuses and timestamps must equal Feast's.
    ours_json, feast_json = got.json(), expected.json()
    feast_by_name = dict(zip(feast_json["metadata"]["feature_names"], feast_json["results"], strict=True))
    ours_by_name = dict(zip(ours_json["metadata"]["feature_names"], ours_json["results"], strict=True))
    assert ours_by_name.keys() == feast_by_name.keys()
    for name, result in feast_by_name.items():
        assert ours_by_name[name] == result, name
    assert ours_json.keys() == feast_json.keys()


def test_template_workflow_runs_unchanged_against_featureline_serve(
    template: Path, materialized: Repos, home: Path, tmp_path: Path
) -> None:
    ours = start_featureline_serve(materialized.ours, home)
    try:
        remote = copy_repo(template, tmp_path / "remote_side")
        set_online_store(remote, {"type": "remote", "path": ours.url})
        done = subprocess.run([sys.executable, "test_workflow.py"], cwd=remote, env=feast_env(),
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        ours.stop()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    # The pushed row (conv_rate 1.0 for driver 1001) is read back through featureline serve.
    tail = done.stdout.split("updated values from a stream push")[-1]
    assert "conv_rate  :  [1.0," in tail, done.stdout[-4000:]
