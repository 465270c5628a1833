"""Feast's write endpoints on `featureline serve` (real server, Redis and Parquet):
POST /push, /write-to-online-store, /materialize, /materialize-incremental with Feast's
bodies; Feast's own SDK with `online_store: {type: remote}` pointed at our server does
push, write_to_online_store, materialize and materialize_incremental, and reads back
what the same calls give with Feast's Redis online store; bad input is a 4xx naming
the field, with nothing written."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from serve_process import ServerProcess, start_server

from featureline.errors import NotFoundError
from featureline.settings import Settings

DAY = datetime(2026, 3, 1, tzinfo=UTC)
DEFS = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Bool, Float32, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
source = FileSource(name="stats_source", path={path!r},
                    timestamp_field="event_timestamp", created_timestamp_column="created")
stats_push = PushSource(name="stats_push", batch_source=source)
SCHEMA = [Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64),
          Field(name="city", dtype=String), Field(name="active", dtype=Bool),
          Field(name="score", dtype=Float64)]
stats = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=3650), source=source,
                    schema=SCHEMA)
stats_fresh = FeatureView(name="stats_fresh", entities=[driver], ttl=timedelta(days=3650),
                          source=stats_push, schema=SCHEMA)
OBJECTS = [driver, source, stats_push, stats, stats_fresh]
"""
STORE_YAML = """project: push_serve
provider: local
registry: data/registry.db
online_store:
{online}
offline_store:
  type: file
entity_key_serialization_version: 3
"""
REDIS_STORE = "  type: redis\n  connection_string: ${FEATURELINE_REDIS_ADDR}"
REFS = [f"stats_fresh:{f}" for f in ("conv_rate", "trips", "city", "active", "score")]


def rows(drivers: list[int], at: datetime, conv: float, trips: int = 7) -> pd.DataFrame:
    n = len(drivers)
    return pd.DataFrame({
        "driver_id": drivers, "conv_rate": [conv] * n, "trips": [trips + d for d in drivers],
        "city": [f"c{d}" for d in drivers], "active": [d % 2 == 0 for d in drivers],
        "score": [d / 3 for d in drivers], "event_timestamp": [at] * n, "created": [at] * n,
    })  # fmt: skip


def body_df(df: pd.DataFrame) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name in df.columns:
        times = name in ("event_timestamp", "created")
        out[name] = [t.isoformat() for t in df[name]] if times else df[name].tolist()
    return out


@dataclasses.dataclass
class Setup:
    settings: Settings
    server: ServerProcess
    source: Path
    original: bytes  # the batch source as written (offline pushes append to it)
    redis_store: Any  # Feast with its Redis online store
    remote_store: Any  # Feast with `type: remote` pointed at our server


def _feast_repo(path: Path, source: Path, online: str) -> Any:
    from feast import FeatureStore

    (path / "data").mkdir(parents=True)
    (path / "feature_store.yaml").write_text(STORE_YAML.format(online=online))
    (path / "defs.py").write_text(DEFS.format(path=str(source)))
    namespace: dict[str, Any] = {}
    exec(compile(DEFS.format(path=str(source)), str(path / "defs.py"), "exec"), namespace)
    store = FeatureStore(repo_path=str(path))
    store.apply(namespace["OBJECTS"])
    return store


@pytest.fixture(scope="module")
def setup(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("serve-push")
    source = root / "stats.parquet"
    offline = rows([1, 2, 3], DAY + timedelta(hours=10), 0.1)
    offline["conv_rate"] = offline["conv_rate"].astype("float32")
    offline.to_parquet(source)
    settings = dataclasses.replace(stack, repo=root / "repo", home=root / "home")
    settings.home.mkdir()
    settings.export_env()
    redis_store = _feast_repo(root / "repo", source, REDIS_STORE)
    server = start_server(settings, "--max-body-bytes", "200000")
    remote = f"  type: remote\n  path: {server.url}"
    try:
        remote_store = _feast_repo(root / "remote", source, remote)
        yield Setup(settings, server, source, source.read_bytes(), redis_store, remote_store)
    finally:
        server.stop()


def _post(setup: Setup, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{setup.server.url}{path}", json=body, timeout=120)


def _online(setup: Setup, drivers: list[int]) -> dict[str, list[Any]]:
    body = {"features": REFS, "entities": {"driver_id": drivers}}
    response = _post(setup, "/get-online-features", body)
    assert response.status_code == 200, response.text
    names = response.json()["metadata"]["feature_names"]
    return {n: r["values"] for n, r in zip(names, response.json()["results"], strict=True)}


def _conv(setup: Setup, drivers: list[int]) -> list[float | None]:
    """conv_rate (a Float32) rounded to what was pushed."""
    return [None if v is None else round(v, 4) for v in _online(setup, drivers)["conv_rate"]]


def test_push_online_then_an_older_push_changes_nothing(setup: Setup, redis_client: redis.Redis) -> None:
    newer = body_df(rows([1, 2], DAY + timedelta(hours=18), 0.5))
    response = _post(setup, "/push", {"push_source_name": "stats_push", "df": newer, "to": "online"})
    assert (response.status_code, response.content) == (200, b"")
    older = body_df(rows([1], DAY + timedelta(hours=12), 0.2, trips=100))
    assert _post(setup, "/push", {"push_source_name": "stats_push", "df": older}).status_code == 200
    got = _online(setup, [1, 2, 3])
    assert _conv(setup, [1, 2, 3]) == [0.5, 0.5, None] and got["trips"] == [8, 9, None]
    assert got["city"] == ["c1", "c2", None] and got["active"] == [False, True, None]


def test_push_offline_appends_to_the_batch_source(setup: Setup, redis_client: redis.Redis) -> None:
    before = pq.read_table(setup.source).num_rows
    df = body_df(rows([4], DAY + timedelta(hours=11), 0.4))
    body = {"push_source_name": "stats_push", "df": df, "to": "offline"}
    assert _post(setup, "/push", body).status_code == 200
    table = pq.read_table(setup.source)
    assert table.num_rows == before + 1 and 4 in table["driver_id"].to_pylist()
    assert redis_client.dbsize() == 0  # offline only
    body["to"] = "online_and_offline"
    body["df"] = body_df(rows([5], DAY + timedelta(hours=11), 0.6))
    assert _post(setup, "/push", body).status_code == 200
    assert pq.read_table(setup.source).num_rows == before + 2
    assert _conv(setup, [5]) == [0.6]
    assert not list(setup.source.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("change", "status", "named"),
    [
        (lambda b: b.update(push_source_name="nope"), 404, "'nope'"),
        (lambda b: b["df"].pop("driver_id"), 400, "'driver_id'"),
        (lambda b: b["df"].pop("event_timestamp"), 400, "'event_timestamp'"),
        (lambda b: b["df"]["trips"].__setitem__(1, "many"), 400, "'trips'"),
        (lambda b: b["df"]["conv_rate"].__setitem__(0, True), 400, "'conv_rate'"),
        (lambda b: b["df"]["event_timestamp"].__setitem__(0, "yesterday"), 400, "'event_timestamp'"),
        (lambda b: b["df"]["trips"].append(1), 400, "'df'"),
        (lambda b: b.update(to="everywhere"), 400, "'to'"),
        (lambda b: b.pop("df"), 400, "'df'"),
        (lambda b: b["df"].update(extra=[1, 2]), 400, "extra"),  # offline: not a source column
        (lambda b: b["df"].update(city=["x" * 250_000, "y"]), 413, "limit"),
    ],
)
def test_bad_push_is_refused_whole(
    setup: Setup, redis_client: redis.Redis, change: Any, status: int, named: str
) -> None:
    before = setup.source.read_bytes()
    body = {"push_source_name": "stats_push", "to": "online_and_offline",
            "df": body_df(rows([7, 8], DAY + timedelta(hours=20), 0.9))}  # fmt: skip
    change(body)
    response = _post(setup, "/push", body)
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]
    assert redis_client.dbsize() == 0 and setup.source.read_bytes() == before


def test_write_to_online_store_and_materialize_endpoints(setup: Setup, redis_client: redis.Redis) -> None:
    df = body_df(rows([9], DAY + timedelta(hours=9), 0.3))
    response = _post(setup, "/write-to-online-store", {"feature_view_name": "stats_fresh", "df": df})
    assert (response.status_code, response.json()) == (200, None)
    assert _post(setup, "/write-to-online-store", {"feature_view_name": "x", "df": df}).status_code == 404
    body = {"start_ts": DAY.isoformat(), "end_ts": (DAY + timedelta(days=1)).isoformat(),
            "feature_views": ["stats_fresh"]}  # fmt: skip
    response = _post(setup, "/materialize", body)
    assert (response.status_code, response.json()) == (200, None), response.text
    assert _conv(setup, [1, 9]) == [0.1, 0.3]  # 9 is newer online than nothing
    bad = _post(setup, "/materialize", {**body, "start_ts": body["end_ts"]})
    assert bad.status_code == 400 and "start_ts" in bad.json()["detail"]
    assert _post(setup, "/materialize", {**body, "feature_views": ["x"]}).status_code == 404
    redis_client.flushdb()
    response = _post(setup, "/materialize-incremental", {"end_ts": datetime.now(UTC).isoformat(),
                                                         "feature_views": ["stats_fresh"]})  # fmt: skip
    assert response.status_code == 200, response.text
    assert _conv(setup, [1]) == [0.1]


def _feast_workflow(store: Any) -> dict[str, list[Any]]:
    """Push, write, materialize and materialize_incremental as the Feast template's
    test_workflow does, then read back through the same store."""
    store.materialize(DAY, DAY + timedelta(days=1), ["stats_fresh"])
    store.push("stats_push", rows([1], DAY + timedelta(hours=17, minutes=53), 0.5))
    store.write_to_online_store("stats_fresh", rows([2], DAY + timedelta(hours=9), 0.9))  # older
    store.write_to_online_store("stats_fresh", rows([4], DAY + timedelta(hours=9), 0.4))
    store.materialize_incremental(datetime.now(UTC), ["stats_fresh"])
    got = store.get_online_features(features=REFS, entity_rows=[{"driver_id": d} for d in (1, 2, 3, 4, 5)])
    out = got.to_dict()
    out["conv_rate"] = [None if v is None else round(v, 4) for v in out["conv_rate"]]
    return out


def test_feast_remote_sdk_against_our_server_equals_feast_on_redis(
    setup: Setup, redis_client: redis.Redis
) -> None:
    setup.source.write_bytes(setup.original)  # as other tests' offline pushes left it
    feast_values = _feast_workflow(setup.redis_store)
    assert feast_values["conv_rate"] == [0.5, 0.1, 0.1, 0.4, None]
    redis_client.flushdb()
    ours = _feast_workflow(setup.remote_store)  # every write went through our server
    assert redis_client.dbsize() > 0
    assert ours == feast_values


def test_the_template_push_request_shape(setup: Setup, redis_client: redis.Redis) -> None:
    """The body of Feast's docs: `df` from DataFrame.to_dict(orient="list") with
    timestamps as strings, no created column, extra `transform_on_write`."""
    df = rows([6], datetime.now(UTC).replace(microsecond=0), 0.25).drop(columns=["created"])
    body = {"push_source_name": "stats_push", "df": body_df(df), "to": "online",
            "allow_registry_cache": True, "transform_on_write": True}  # fmt: skip
    assert _post(setup, "/push", body).status_code == 200
    assert _conv(setup, [6]) == [0.25]


def test_sdk_and_cli_push(setup: Setup, redis_client: redis.Redis, tmp_path: Path) -> None:
    from featureline.cli import main
    from featureline.serving_api.client import FeatureClient

    with FeatureClient(setup.server.target, rest_url=setup.server.url) as client:
        client.push("stats_push", rows([11], DAY + timedelta(hours=18), 0.5))  # pandas, through REST
        with pytest.raises(NotFoundError, match="'nope'"):
            client.push("nope", rows([11], DAY, 0.5))
    csv = tmp_path / "rows.csv"
    rows([12], DAY + timedelta(hours=18), 0.75).to_csv(csv, index=False)  # direct to Redis
    assert (
        main(["push", "--repo", str(setup.settings.repo), "--source", "stats_push", "--file", str(csv)]) == 0
    )
    records = tmp_path / "rows.json"
    records.write_text(
        rows([13], DAY + timedelta(hours=18), 0.25).to_json(orient="records", date_format="iso")
    )
    argv = ["push", "--source", "stats_push", "--file", str(records), "--url", setup.server.url]
    assert main(argv) == 0
    assert _conv(setup, [11, 12, 13]) == [0.5, 0.75, 0.25]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"driver_id": 14, "conv_rate": "high", "event_timestamp": "2026-03-01T00:00:00"}]')
    assert main([*argv[:3], "--file", str(bad)]) == 2  # conv_rate is named; nothing written
    assert _conv(setup, [14]) == [None]


def test_feast_grpc_push_and_write(setup: Setup, redis_client: redis.Redis) -> None:
    """Feast's own gRPC stub (the service of `feast serve -t grpc`) against our port."""
    import grpc
    from feast.protos.feast.serving.GrpcServer_pb2 import PushRequest, WriteToOnlineStoreRequest
    from feast.protos.feast.serving.GrpcServer_pb2_grpc import GrpcFeatureServerStub
    from feast.protos.feast.types.Value_pb2 import Value

    at = "2026-03-01T18:00:00"
    text = {"driver_id": "21", "conv_rate": "0.5", "trips": "3", "city": "x", "active": "true",
            "score": "1.5", "event_timestamp": at, "created": at}  # fmt: skip
    typed = {"driver_id": Value(int64_val=22), "conv_rate": Value(float_val=0.25),
             "trips": Value(int64_val=4), "city": Value(string_val="y"), "active": Value(bool_val=False),
             "score": Value(double_val=2.0), "event_timestamp": Value(string_val=at)}  # fmt: skip
    with grpc.insecure_channel(setup.server.target) as channel:
        stub = GrpcFeatureServerStub(channel)
        assert stub.Push(PushRequest(features=text, stream_feature_view="stats_push", to="online")).status
        assert stub.WriteToOnlineStore(
            WriteToOnlineStoreRequest(feature_view_name="stats_fresh", typed_features=typed)
        ).status
        assert _conv(setup, [21, 22]) == [0.5, 0.25]
        assert _online(setup, [21, 22])["active"] == [True, False]
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Push(PushRequest(features=text, stream_feature_view="nope"))
        assert (
            unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in unknown.value.details()
        )
        bad = {**typed, "driver_id": Value(int64_val=23), "conv_rate": Value(string_val="high")}
        with pytest.raises(grpc.RpcError) as wrong:
            stub.WriteToOnlineStore(
                WriteToOnlineStoreRequest(feature_view_name="stats_fresh", typed_features=bad)
            )
        assert (
            wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'conv_rate'" in wrong.value.details()
        )
    assert _conv(setup, [23]) == [None]


def test_feast_grpc_push_with_grpcio_serving(setup: Setup, redis_client: redis.Redis) -> None:
    import grpc
    from feast.protos.feast.serving.GrpcServer_pb2 import PushRequest
    from feast.protos.feast.serving.GrpcServer_pb2_grpc import GrpcFeatureServerStub

    at = "2026-03-01T18:00:00"
    text = {"driver_id": "31", "conv_rate": "0.75", "trips": "3", "city": "x", "active": "0",
            "score": "1", "event_timestamp": at}  # fmt: skip
    server = start_server(setup.settings, "--grpc-server", "aio")
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = GrpcFeatureServerStub(channel)
            assert stub.Push(PushRequest(features=text, stream_feature_view="stats_push")).status
    finally:
        server.stop()
    assert _conv(setup, [31]) == [0.75]


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        ("/push", b"not json", 400),
        ("/push", b"[1]", 400),
        ("/push", b'{"push_source_name": "stats_push", "df": [1, 2]}', 400),
        ("/push", b'{"push_source_name": 7, "df": {}}', 400),
        ("/push", b'{"push_source_name": "stats_push", "df": {"driver_id": [[1]]}}', 400),
        ("/write-to-online-store", b'{"feature_view_name": 3, "df": {}}', 400),
        ("/write-to-online-store", b'{"feature_view_name": "stats_fresh"}', 400),
        ("/write-to-online-store", b'{"feature_view_name": "stats", "df": {"driver_id": [1e400]}}', 400),
        ("/materialize", b"{}", 400),
        ("/materialize", b'{"start_ts": 5, "end_ts": "2026-01-01"}', 400),
        ("/materialize", b'{"start_ts": "2026-01-01", "end_ts": "later"}', 400),
        ("/materialize", b'{"disable_event_timestamp": "yes"}', 400),
        ("/materialize", b'{"disable_event_timestamp": true, "feature_views": []}', 400),
        ("/materialize", b'{"disable_event_timestamp": true, "version": "v2"}', 400),
        ("/materialize-incremental", b"{}", 400),
    ],
)
def test_malformed_write_requests_are_4xx(
    setup: Setup, redis_client: redis.Redis, path: str, content: bytes, status: int
) -> None:
    response = httpx.post(f"{setup.server.url}{path}", content=content, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert redis_client.dbsize() == 0
