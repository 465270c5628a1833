"""The REST API against the real server and Redis: aggregations from tiles, the tensor
call, limits, errors (never a stack trace), health, metrics, OpenAPI."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import redis
from oracle.naive import US, aggregate, window_start_us
from serve_process import ServerProcess
from serving_data import now_us, write_latest, write_tiles

from featureline.serving_api.proto import pb
from featureline.settings import Settings
from featureline.specs import RepoSpec

USERS = list(range(1, 21))
MINUTE_US = 60 * US


def _events(user: int, t_us: int) -> list[tuple[int, dict[str, Any]]]:
    rng = random.Random(user)
    return [
        (
            t_us - rng.randrange(30 * US, 25 * 3600 * US),
            {"amount": round(rng.uniform(1, 300), 2), "merchant_id": f"m{rng.randrange(6)}"},
        )
        for _ in range(rng.randrange(0, 40))
    ]


@pytest.fixture(scope="module")
def data(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[dict[int, list]]:
    """Profiles and transaction tiles of USERS; returns each user's events."""
    client = redis.Redis.from_url(serving_settings.redis_url)
    client.flushdb()
    t = now_us()
    rows = [
        {"user_id": u, "age": 30 + u, "country": "DE", "limit_eur": 50.0 * u, "score": 0.5,
         "level": 1, "vip": False, "event_us": t - MINUTE_US}
        for u in USERS
    ]  # fmt: skip
    write_latest(client, serving_spec, "profile", rows)
    events = {u: _events(u, t) for u in USERS}
    for user, evs in events.items():
        write_tiles(client, serving_spec, "txn_stats", [user], evs, partition=user % 2)
    yield events
    client.close()


def post(server: ServerProcess, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=10, **kw)


def _expected(repo: RepoSpec, events: list[tuple[int, dict[str, Any]]], t_us: int) -> dict:
    out = {}
    for agg in repo.view("txn_stats").aggregations:
        start = window_start_us(t_us, agg.window_s, agg.slide_s)
        out[agg.name] = aggregate([v[agg.column] for ts, v in events if start <= ts <= t_us],
                                  agg.function)  # fmt: skip
    return out


def test_aggregations_equal_the_reference_at_request_time(
    server: ServerProcess, serving_spec: RepoSpec, data: dict[int, list]
) -> None:
    refs = [f"txn_stats:{f}" for f in serving_spec.view("txn_stats").feature_names]
    before = now_us()
    response = post(server, "/get-online-features", {"features": refs, "entities": {"user_id": USERS}})
    after = now_us()
    assert response.status_code == 200, response.text
    results = response.json()["results"][1:]
    for i, user in enumerate(USERS):
        served = {ref.split(":")[1]: col["values"][i] for ref, col in zip(refs, results, strict=True)}
        # The server's t lies between before and after; a tile boundary may fall between.
        candidates = [_expected(serving_spec, data[user], t) for t in (before, after)]
        assert served in candidates, (user, served, candidates)
    assert any(v != 0 for v in results[0]["values"]), "no user has events: the test is empty"


def test_tensor_call_protobuf_and_arrow(server: ServerProcess, data: dict[int, list]) -> None:
    body = {"feature_service": "model_svc", "entities": {"user_id": USERS + [999], "amount": [10.0] * 21},
            "fill_value": -1}  # fmt: skip
    response = post(server, "/get-online-tensor", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    tensor = pb.Tensor.FromString(response.content)
    values = np.frombuffer(tensor.values, dtype="<f4").reshape(tensor.rows, tensor.cols)
    present = np.frombuffer(tensor.present, dtype=np.uint8).reshape(tensor.rows, tensor.cols)
    names = list(tensor.column_names)
    assert names[:7] == ["count_amount_1h", "sum_amount_1h", "mean_amount_1h", "min_amount_1h",
                         "max_amount_1h", "sum_amount_10m", "merchants_24h"]  # fmt: skip
    assert list(tensor.omitted_features) == ["country"]  # strings are not in the matrix
    age = names.index("age")
    assert values[:20, age].tolist() == [30.0 + u for u in USERS]
    assert (values[20, age], present[20, age]) == (-1.0, 0)  # user 999: not found
    described = post(server, "/describe-features", {"feature_service": "model_svc"}).json()
    assert [c["name"] for c in described["columns"] if c["in_tensor"]] == names
    arrow = post(
        server, "/get-online-tensor", body, headers={"accept": "application/vnd.apache.arrow.stream"}
    )
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == names
    assert table.column("age").to_pylist() == [30.0 + u for u in USERS] + [None]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"features": ["profile:nope"], "entities": {"user_id": [1]}}, 404, "no feature 'nope'"),
        ({"features": ["nope:age"], "entities": {"user_id": [1]}}, 404, "unknown feature view"),
        ({"feature_service": "nope", "entities": {"user_id": [1]}}, 404, "unknown feature service"),
        ({"features": ["profile"], "entities": {"user_id": [1]}}, 400, "view:feature"),
        ({"features": ["profile:age"], "entities": {"merchant_id": ["m"]}}, 400, "missing join key"),
        ({"features": ["profile:age"], "entities": {"user_id": ["x"]}}, 400, "'user_id', row 0"),
        ({"features": ["profile:age"], "entities": {"user_id": [1, None]}}, 400, "row 1"),
        ({"features": ["profile:age"], "entities": {"user_id": 1}}, 400, "must be a list"),
        ({"features": "profile:age", "entities": {"user_id": [1]}}, 400, "'features' must be"),
        ({"entities": {"user_id": [1]}}, 400, "give 'features'"),
        ({"features": ["ratio:amount_over_limit"], "entities": {"user_id": [1]}}, 400, "amount"),
        ({"features": ["profile:age"], "entities": {"user_id": list(range(1001))}}, 400,
         "limit is 1000"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_status_and_a_message(
    server: ServerProcess, body: Any, status: int, message: str
) -> None:
    response = post(server, "/get-online-features", body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert "Traceback" not in response.text


def test_body_limit_and_malformed_json(server: ServerProcess) -> None:
    big = {"features": ["profile:age"], "entities": {"user_id": list(range(50_000))}}
    response = post(server, "/get-online-features", big)
    assert response.status_code == 413
    assert "limit of 200000 bytes" in response.json()["detail"]
    bad = httpx.post(f"{server.url}/get-online-features", content=b"{not json", timeout=5)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["detail"]


def test_health_metrics_and_docs(server: ServerProcess, data: dict[int, list]) -> None:
    health = httpx.get(f"{server.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "SERVING"
    post(server, "/get-online-features", {"features": ["profile:age"], "entities": {"user_id": [1]}})
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert 'featureline_serving_request_seconds_bucket{batch="1",endpoint="/get-online-features"' in text
    assert 'featureline_serving_staleness_seconds_count{view="profile"}' in text
    assert "featureline_serving_redis_errors" in text
    spec = httpx.get(f"{server.url}/openapi.json", timeout=5).json()
    assert {"/get-online-features", "/get-online-tensor", "/health"} <= set(spec["paths"])
    assert httpx.get(f"{server.url}/docs", timeout=5).status_code == 200
