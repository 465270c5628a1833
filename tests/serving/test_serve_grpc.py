"""The gRPC API against the real server: status codes of bad input, health, reflection,
and the client SDK (sync and asyncio) with its tensor call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serve_process import ServerProcess
from serving_data import now_us, write_latest

from featureline.errors import BadInputError, NotFoundError, ServiceUnavailableError
from featureline.serving_api.client import AsyncFeatureClient, FeatureClient, ServingTimeoutError
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.settings import Settings
from featureline.specs import RepoSpec, resolve_features

USERS = [1, 2, 3]


@pytest.fixture(scope="module")
def data(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[None]:
    client = redis.Redis.from_url(serving_settings.redis_url)
    client.flushdb()
    rows = [{"user_id": u, "age": 40 + u, "country": "FR", "limit_eur": 10.0 * u, "score": 1.0,
             "level": 2, "vip": True, "event_us": now_us()} for u in USERS]  # fmt: skip
    write_latest(client, serving_spec, "profile", rows)
    yield
    client.close()


def _call(server: ServerProcess, method: str, request: bytes, timeout: float = 5) -> bytes:
    with grpc.insecure_channel(server.target) as channel:
        return channel.unary_unary(f"/{SERVICE_NAME}/{method}")(request, timeout=timeout)


def _online(features: list[str] | None, service: str | None, entities: dict) -> bytes:
    kind = {"feature_service": service} if service else {}
    if features is not None:
        kind = {"features": pb.FeatureList(val=features)}
    values = {
        k: pb.RepeatedValue(val=[pb.Value(int64_val=x) if isinstance(x, int) else
                                 pb.Value(string_val=x) for x in v])
        for k, v in entities.items()
    }  # fmt: skip
    return pb.GetOnlineFeaturesRequest(entities=values, **kind).SerializeToString()


@pytest.mark.parametrize(
    ("request_bytes", "code", "message"),
    [
        (_online(["profile:age"], None, {"merchant_id": ["m"]}), "INVALID_ARGUMENT", "missing join"),
        (_online(["profile:age"], None, {"user_id": ["x"]}), "INVALID_ARGUMENT", "row 0"),
        (_online(["bad-ref"], None, {"user_id": [1]}), "INVALID_ARGUMENT", "view:feature"),
        (pb.GetOnlineFeaturesRequest().SerializeToString(), "INVALID_ARGUMENT", "feature_service"),
        (b"\xff\xff not protobuf", "INVALID_ARGUMENT", ""),
        (_online(["profile:nope"], None, {"user_id": [1]}), "NOT_FOUND", "no feature 'nope'"),
        (_online(None, "nope", {"user_id": [1]}), "NOT_FOUND", "unknown feature service"),
        (_online(["profile:age"], None, {"user_id": list(range(1001))}), "INVALID_ARGUMENT",
         "limit is 1000"),
        (_online(["profile:age"], None, {"user_id": list(range(40_000))}), "RESOURCE_EXHAUSTED",
         ""),
    ],
    ids=["missing-key", "bad-key-type", "bad-ref", "no-features", "not-protobuf", "unknown-feature",
         "unknown-service", "entity-limit", "message-size"],
)  # fmt: skip
def test_bad_input_status_codes(server: ServerProcess, request_bytes: bytes, code: str, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(server, "GetOnlineFeatures", request_bytes)
    assert info.value.code() == getattr(grpc.StatusCode, code), info.value.details()
    assert message in (info.value.details() or "")
    assert "Traceback" not in (info.value.details() or "")


def test_health_and_reflection(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_sdk_online_features_and_errors(server: ServerProcess, data: None) -> None:
    with FeatureClient(server.target) as client:
        rows = client.get_online_features(
            {"user_id": USERS + [99]}, features=["profile:age", "profile:country"]
        )
        assert rows.to_dict() == {"user_id": USERS + [99], "age": [41, 42, 43, None],
                                  "country": ["FR"] * 3 + [None]}  # fmt: skip
        assert rows.statuses["age"] == ["PRESENT"] * 3 + ["NOT_FOUND"]
        with pytest.raises(NotFoundError, match="nope"):
            client.get_online_features({"user_id": [1]}, feature_service="nope")
        with pytest.raises(BadInputError, match="missing join key"):
            client.get_online_features({"x": [1]}, features=["profile:age"])


def test_sdk_tensor_columns_follow_the_service(
    server: ServerProcess, data: None, serving_spec: RepoSpec
) -> None:
    entities = {"user_id": np.array(USERS), "amount": np.array([5.0, 10.0, 15.0])}
    with FeatureClient(server.target) as client:
        tensor = client.get_tensor("model_svc", entities, fill_value=np.nan)
        layout = client.describe("model_svc")
    expected = [f.output_name(False) for f in resolve_features(serving_spec, service="model_svc")
                if f.dtype not in ("string", "bytes")]  # fmt: skip
    assert tensor.columns == expected == [c.name for c in layout.columns if c.in_tensor]
    assert tensor.omitted == ["country"]
    assert tensor.values.shape == (3, len(expected)) and tensor.values.dtype == np.float32
    age = tensor.columns.index("age")
    assert tensor.values[:, age].tolist() == [41.0, 42.0, 43.0]
    mean = tensor.columns.index("mean_amount_1h")
    assert not tensor.mask[:, mean].any() and np.isnan(tensor.values[:, mean]).all()
    assert tensor.served_at_us > 0


def test_async_sdk_matches_sync(server: ServerProcess, data: None) -> None:
    async def fetch() -> tuple:
        async with AsyncFeatureClient(server.target) as client:
            rows = await client.get_online_features({"user_id": USERS}, features=["profile:age"])
            tensor = await client.get_tensor(None, {"user_id": USERS}, features=["profile:age"])
            return rows, tensor

    rows, tensor = asyncio.run(fetch())
    assert rows.values["age"] == [41, 42, 43]
    assert tensor.values[:, 0].tolist() == [41.0, 42.0, 43.0] and tensor.mask.all()


def test_sdk_retries_unavailable_within_its_deadline() -> None:
    from featureline.cli.devstack import free_port

    with FeatureClient(f"127.0.0.1:{free_port()}", timeout_s=0.5, retries=3) as client:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as info:
            client.get_online_features({"user_id": [1]}, features=["profile:age"])
        assert time.monotonic() - started < 1.5
    assert "UNAVAILABLE" in str(info.value) or isinstance(info.value, ServingTimeoutError)
