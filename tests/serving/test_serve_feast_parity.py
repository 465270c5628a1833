"""Parity with Feast 0.67 on one Redis and on a Redis Cluster (Feast's `redis_type:
redis_cluster`; every test runs on both): values Feast wrote are served as Feast serves
them, values we wrote Feast reads, and the REST/gRPC/tensor shapes are Feast's. The only
differences are Feast's defects (shared/anchors.md): past the view's ttl we answer
null + OUTSIDE_MAX_AGE, a missing entity is NOT_FOUND, a stored null is NULL_VALUE."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from cluster_repo import flush_all, keys_per_primary, raw_client
from oracle.naive import Event, same, window_value
from serve_process import ServerProcess
from serving_data import FEAST_OBJECTS, now_us, write_latest, write_tiles

from featureline.settings import Settings
from featureline.specs import RepoSpec

HOUR_US = 3600 * 1_000_000
FRESH = list(range(1, 9))  # written by Feast, within the 2-day ttl
STALE = [9, 10]  # written by Feast, 3 days old: past the ttl
OURS = [100, 101, 102]  # written by featureline's LWW writer
TIES = [200, 201]  # two rows at one event time: the larger created time wins, in either write order
NULL_WINS = 202  # the newest row has a null age: served null, no fall-back to the older age
EVENTS: dict[int, list[tuple[int, dict[str, Any]]]] = {}  # user -> transactions written as tiles
MISSING = [999]
REFS = ["profile:age", "profile:country", "profile:limit_eur", "profile:score", "profile:level",
        "profile:vip", "pair:n_txn", "ratio:amount_over_limit"]  # fmt: skip


def _profile_row(user: int, event_us: int) -> dict[str, Any]:
    return {
        "user_id": user,
        "age": None if user == 3 else 20 + user,
        "country": ["DE", "FR", "NL"][user % 3],
        "limit_eur": 100.0 + user / 7,
        "score": float(user) / 4,
        "level": -user,
        "vip": user % 2 == 0,
        "event_us": event_us,
    }


@dataclass
class Side:
    """One online store under test: the repo's settings and specs, and `featureline
    serve` on it."""

    settings: Settings
    spec: RepoSpec
    server: ServerProcess


@pytest.fixture(scope="module", params=["redis", "redis_cluster"])
def side(request: pytest.FixtureRequest) -> Side:
    """One Redis (the session stack's) or the session Redis Cluster: the cluster's repo
    differs only in its feature_store.yaml (serving_data.cluster_repo_files). Costs the
    cluster's start (~2 s, shared by the session), one more `featureline serve` and
    Feast's apply and writes on the cluster."""
    prefix = "cluster_" if request.param == "redis_cluster" else ""
    return Side(
        *(request.getfixturevalue(prefix + name) for name in ("serving_settings", "serving_spec", "server"))
    )


@pytest.fixture(scope="module")
def store(side: Side) -> Iterator[Any]:
    """Feast's FeatureStore on the side's online store, with Feast's and our rows written
    (ours through the online-store seam, as the product writes them)."""
    settings, serving_spec = side.settings, side.spec
    settings.export_env()
    from feast import FeatureStore

    from featureline.config import online_store
    from featureline.online_store import open_store

    client = raw_client(online_store(settings))
    flush_all(client)
    ours = open_store(online_store(settings))
    spec = importlib.util.spec_from_file_location("serving_defs", settings.repo / "defs.py")
    assert spec is not None and spec.loader is not None
    defs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(defs)
    fs = FeatureStore(repo_path=str(settings.repo))
    fs.apply([getattr(defs, name) for name in FEAST_OBJECTS])
    now = now_us()
    rows = [_profile_row(u, now - HOUR_US * u) for u in FRESH]
    rows += [_profile_row(u, now - 72 * HOUR_US) for u in STALE]
    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = pd.to_datetime(frame.pop("event_us"), unit="us", utc=True)
    frame["created"] = frame["event_timestamp"]
    frame["age"] = frame["age"].astype("Int64")
    fs.write_to_online_store("profile", frame)
    pairs = pd.DataFrame({"user_id": [1, 2], "merchant_id": ["m1", "m2"], "n_txn": [5, 7]}).assign(
        event_timestamp=pd.Timestamp("2020-01-01", tz="UTC"), created=pd.Timestamp.now("UTC")
    )
    fs.write_to_online_store("pair", pairs)  # ttl 0: never too old
    write_latest(ours, serving_spec, "profile", [_profile_row(u, now - HOUR_US) for u in OURS])
    for user, order in zip(TIES, (1, -1), strict=True):
        rows = [{**_profile_row(user, now - HOUR_US), "created_us": now - 50, "age": 1},
                {**_profile_row(user, now - HOUR_US), "created_us": now - 40, "age": 2}]  # fmt: skip
        for row in rows[::order]:
            write_latest(ours, serving_spec, "profile", [row])
    for user in FRESH:
        EVENTS[user] = _txn_events(user, now)
        write_tiles(client, serving_spec, "txn_stats", [user], EVENTS[user], partition=user % 2)
    write_latest(ours, serving_spec, "profile", [{**_profile_row(NULL_WINS, now - 2 * HOUR_US), "age": 5}])
    write_latest(ours, serving_spec, "profile", [{**_profile_row(NULL_WINS, now - HOUR_US), "age": None}])
    assert all(n > 0 for n in keys_per_primary(client))  # on a cluster: on every primary
    yield fs
    ours.close()
    client.close()


def _txn_events(user: int, now: int) -> list[tuple[int, dict[str, Any]]]:
    """A user's transactions over 25 h, some exactly on 1-minute tile edges, a null amount."""
    rng = random.Random(user)
    edge = now - now % (60 * 1_000_000)
    times = [now - rng.randrange(25 * HOUR_US) for _ in range(30)] + [edge - 600 * 1_000_000, edge, now]
    return [(t, {"amount": rng.choice([None, 0.1, round(rng.uniform(1, 300), 2)]),
                 "merchant_id": f"m{rng.randrange(4)}"}) for t in times]  # fmt: skip


def _entities(users: list[int]) -> dict[str, list[Any]]:
    return {
        "user_id": users,
        "merchant_id": ["m1" if u % 2 else "m2" for u in users],
        "amount": [12.5 * u for u in users],
    }


def _rows(entities: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(entities, values, strict=True)) for values in zip(*entities.values(), strict=True)]


def _ours(server: ServerProcess, users: list[int], refs: list[str]) -> dict[str, Any]:
    body = {"features": refs, "entities": _entities(users)}
    response = httpx.post(f"{server.url}/get-online-features", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _by_name(payload: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    names = payload["metadata"]["feature_names"]
    return dict(zip(names, payload["results"], strict=True))


def test_values_equal_feasts_except_ttl_and_missing(store: Any, side: Side) -> None:
    users = FRESH + STALE + OURS + MISSING
    ours = _by_name(_ours(side.server, users, REFS))
    feast = store.get_online_features(features=REFS, entity_rows=_rows(_entities(users))).to_dict()
    assert set(ours) == set(feast) == {"user_id", "merchant_id", *(r.split(":")[1] for r in REFS)}
    for name, column in ours.items():
        for i, user in enumerate(users):
            value, status = column["values"][i], column["statuses"][i]
            if user in MISSING and name not in ("user_id", "merchant_id"):
                assert value is None and feast[name][i] is None
                # semantics.md 1: no row is NOT_FOUND; the on-demand view's output is
                # computed (null, from its missing input), so it is a null value.
                want = "NULL_VALUE" if name == "amount_over_limit" else "NOT_FOUND"
                assert status == want, (name, status)
            elif user in STALE and name.split("__")[-1] in ("age", "country", "limit_eur",
                                                            "score", "level", "vip"):  # fmt: skip
                assert (value, status) == (None, "OUTSIDE_MAX_AGE")
                assert feast[name][i] is not None  # Feast serves it regardless of ttl
            elif user in STALE and name == "amount_over_limit":
                assert (value, status) == (None, "NULL_VALUE")  # its input is past ttl
            else:
                assert value == feast[name][i], (name, user)
                if value is not None:
                    assert status == "PRESENT"
                elif name == "n_txn":  # no (user, merchant) row
                    assert status == "NOT_FOUND"
                else:  # user 3's age is a stored null
                    assert (name, user, status) == ("age", 3, "NULL_VALUE")


def test_rest_json_is_feasts_json_for_present_values(store: Any, side: Side) -> None:
    from feast.feature_server_utils import convert_response_to_dict

    users = [u for u in FRESH if u != 3]  # present, in ttl, no stored null
    refs = REFS[:6] + ["ratio:amount_over_limit"]
    ours = _ours(side.server, users, refs)
    feast_json = convert_response_to_dict(
        store.get_online_features(features=refs, entity_rows=_rows(_entities(users))).proto
    )
    assert sorted(ours) == sorted(feast_json) == ["metadata", "results"]
    assert sorted(ours["metadata"]["feature_names"]) == sorted(feast_json["metadata"]["feature_names"])
    assert _by_name(ours) == _by_name(feast_json)  # values, statuses, timestamp strings
    # Ours keeps the request's column order (Feast's varies between processes).
    assert ours["metadata"]["feature_names"] == ["user_id", "merchant_id"] + [r.split(":")[1] for r in refs]


def test_feast_reads_what_we_wrote(store: Any) -> None:
    refs = REFS[:6]
    users = OURS + TIES + [NULL_WINS]
    feast = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users])
    got = feast.to_dict()
    for i, user in enumerate(users):
        row = _profile_row(user, 0)
        row["age"] = {200: 2, 201: 2, NULL_WINS: None}.get(user, row["age"])
        for ref in refs:
            name = ref.split(":")[1]
            assert got[name][i] == row[name], (name, user)


def test_ties_and_null_winners_served_by_rest_and_grpc(store: Any, side: Side) -> None:
    from featureline.serving_api.client import FeatureClient

    users = TIES + [NULL_WINS]
    rest = _by_name(_ours(side.server, users, ["profile:age", "profile:country"]))
    with FeatureClient(side.server.target) as client:
        grpc_got = client.get_online_features({"user_id": users}, features=["profile:age", "profile:country"])
    for values, statuses in ((rest["age"]["values"], rest["age"]["statuses"]),
                             (grpc_got.values["age"], grpc_got.statuses["age"])):  # fmt: skip
        assert values == [2, 2, None]
        assert statuses == ["PRESENT", "PRESENT", "NULL_VALUE"]
    countries = [_profile_row(u, 0)["country"] for u in users]
    assert rest["country"]["values"] == grpc_got.values["country"] == countries


def test_feast_grpc_client_is_served(store: Any, side: Side) -> None:
    from feast.protos.feast.serving import ServingService_pb2 as feast_pb
    from feast.protos.feast.serving import ServingService_pb2_grpc as feast_grpc
    from feast.protos.feast.types import Value_pb2

    request = feast_pb.GetOnlineFeaturesRequest(
        features=feast_pb.FeatureList(val=["profile:limit_eur", "profile:country"]),
        entities={"user_id": Value_pb2.RepeatedValue(val=[Value_pb2.Value(int64_val=1),
                                                          Value_pb2.Value(int64_val=999)])},
    )  # fmt: skip
    with grpc.insecure_channel(side.server.target) as channel:
        response = feast_grpc.ServingServiceStub(channel).GetOnlineFeatures(request, timeout=5)
    assert list(response.metadata.feature_names.val) == ["user_id", "limit_eur", "country"]
    limit = response.results[1]
    assert limit.values[0].double_val == _profile_row(1, 0)["limit_eur"]
    assert [feast_pb.FieldStatus.Name(s) for s in limit.statuses] == ["PRESENT", "NOT_FOUND"]


def test_aggregating_view_served_equals_the_oracle(store: Any, side: Side) -> None:
    """The aggregating view (which Feast 0.67 cannot serve from tiles) through REST and
    gRPC: every aggregation equals the naive oracle at the serving time; an entity with
    no events has the empty-window values (count 0, sum 0.0, the rest null)."""
    from featureline.serving_api.client import FeatureClient

    view = side.spec.view("txn_stats")
    refs = [f"txn_stats:{a.name}" for a in view.aggregations]
    users = FRESH + MISSING
    for via in ("rest", "grpc"):
        before = now_us()
        if via == "rest":
            got = {
                n: (c["values"], c["statuses"]) for n, c in _by_name(_ours(side.server, users, refs)).items()
            }
        else:
            with FeatureClient(side.server.target) as client:
                answer = client.get_online_features({"user_id": users}, features=refs)
            got = {n: (answer.values[n], answer.statuses[n]) for n in answer.feature_names}
        after = now_us()
        for i, user in enumerate(users):
            events = [Event((user,), t, None, v) for t, v in EVENTS.get(user, [])]
            row = {a.name: got[a.name][0][i] for a in view.aggregations}
            wants = [
                {a.name: window_value(events, (user,), t, a.column, a.function, a.window_s, a.slide_s)
                 for a in view.aggregations}
                for t in (before, after)
            ]  # fmt: skip
            assert any(all(same(row[n], w[n]) for n in w) for w in wants), (via, user, row, wants)
            for a in view.aggregations:
                value, status = row[a.name], got[a.name][1][i]
                # semantics.md 2: an empty window has values (0, 0.0) or nulls, never NOT_FOUND
                want = "PRESENT" if value is not None else "NULL_VALUE"
                assert status == want, (via, user, a.name, status)


def test_tensor_rest_and_grpc_hold_feasts_values(store: Any, side: Side) -> None:
    """The tensor call (REST protobuf and the SDK's gRPC) of model_svc: the profile
    columns are Feast's values as float32, a missing entity is masked with the fill."""
    from featureline.serving_api.client import FeatureClient
    from featureline.serving_api.proto import pb

    users = [u for u in FRESH if u != 3] + MISSING  # user 3's age is a stored null
    entities = {"user_id": users, "amount": [10.0] * len(users)}
    body = {"feature_service": "model_svc", "entities": entities, "fill_value": -1}
    response = httpx.post(f"{side.server.url}/get-online-tensor", json=body, timeout=10)
    assert response.status_code == 200, response.text
    message = pb.Tensor.FromString(response.content)
    rest_values = np.frombuffer(message.values, dtype="<f4").reshape(message.rows, message.cols)
    with FeatureClient(side.server.target) as client:
        grpc_tensor = client.get_tensor(
            "model_svc", {k: np.array(v) for k, v in entities.items()}, fill_value=-1
        )
    assert list(message.column_names) == grpc_tensor.columns
    numeric = ["age", "limit_eur", "score", "level", "vip"]
    feast = store.get_online_features(features=[f"profile:{n}" for n in numeric],
                                      entity_rows=[{"user_id": u} for u in users]).to_dict()  # fmt: skip
    for name in numeric:
        col = grpc_tensor.columns.index(name)
        want = [np.float32(v) if v is not None else np.float32(-1) for v in feast[name]]
        assert rest_values[:, col].tolist() == grpc_tensor.values[:, col].tolist() == want, name
        assert grpc_tensor.mask[:, col].tolist() == [v is not None for v in feast[name]], name
    assert feast["age"][-1] is None  # the missing entity: Feast has no row either
