"""Every Feast value type, with nulls, through materialize, REST, gRPC and the SDK,
against Feast 0.67 itself on the same data and the same Redis (tests/types_repo.py).

- materialize: `featureline materialize` writes the bytes `FeatureStore.materialize`
  writes (Map/Struct entries compared as entries: upb writes them in a per-process
  hash order, so two Feast runs differ there too);
- REST: the JSON `feast serve` answers (feast.feature_server_utils.convert_response_to_dict
  of Feast's response), gRPC: Feast's response messages, SDK: Feast's to_dict();
  the only differences are the documented ones (shared/anchors.md): a stored null is
  NULL_VALUE (Feast: PRESENT), and Feast's NaT timestamp is a null.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import redis
from serve_process import ServerProcess, start_server
from types_repo import (
    DRIVERS,
    DTYPES,
    FEATURES,
    NULL_DRIVER,
    PROJECT,
    REFS,
    T0,
    VIEW,
    feast_store,
    plain,
    source_by_driver,
    write_repo,
)

from featureline.batch.materialize import materialize
from featureline.cli.devstack import free_ports
from featureline.online.feast_format import feature_field, ts_field
from featureline.online.value_proto import decode_plain
from featureline.repo import load_repo
from featureline.serving_api.client import FeatureClient
from featureline.settings import Settings
from featureline.specs import RepoSpec

START, END = T0 - timedelta(days=30), T0 + timedelta(days=1)
MISSING = 99
ASKED = [*DRIVERS, MISSING]
NAT = -9223372036854775808  # Feast's stored null timestamp, as its REST answers it


@dataclasses.dataclass
class Typed:
    settings: Settings
    spec: RepoSpec
    store: Any
    ours: dict[bytes, dict[bytes, bytes]]
    feast: dict[bytes, dict[bytes, bytes]]
    server: ServerProcess


def _dump(client: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    return {k: client.hgetall(k) for k in client.scan_iter() if client.type(k) == b"hash"}


@pytest.fixture(scope="module")
def typed(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Typed]:
    """Ours materialized and dumped, then Feast's (left in Redis: what is served)."""
    root = tmp_path_factory.mktemp("types")
    write_repo(root / "repo", stack.redis_addr)
    settings = dataclasses.replace(stack, repo=root / "repo", home=root / "home")
    spec = load_repo(settings)
    client = redis.Redis.from_url(stack.redis_url)
    client.flushdb()
    report = materialize(settings, START, END, views=[VIEW], workers=1)
    assert report.ok, report
    ours = _dump(client)
    client.flushdb()
    store = feast_store(settings.repo)
    store.materialize(START, END, feature_views=[VIEW])
    feast = _dump(client)
    server = start_server(settings)
    try:
        yield Typed(settings, spec, store, ours, feast, server)
    finally:
        server.stop()
        client.flushdb()
        client.close()


def test_entity_type_inferred_and_every_type_read(typed: Typed) -> None:
    assert typed.spec.entities["driver"].dtype == "int64"  # no value_type: from the Parquet
    view = typed.spec.view(VIEW)
    assert view.join_keys[0].dtype == "int64"
    assert {f.name: f.dtype for f in view.features} == DTYPES


def test_materialize_writes_feasts_bytes(typed: Typed) -> None:
    assert len(typed.feast) == len(DRIVERS)
    assert set(typed.feast) <= set(typed.ours)
    differ, map_types = [], set()
    for key, fields in typed.feast.items():
        ours = typed.ours[key]
        assert ours[ts_field(VIEW)] == fields[ts_field(VIEW)]
        driver = int.from_bytes(key[-len(PROJECT) - 8 : -len(PROJECT)], "little")
        for name in FEATURES:
            field = feature_field(VIEW, name)
            if DTYPES[name] in ("map", "struct"):  # entries equal, order is upb's hash order
                assert decode_plain(ours[field]) == decode_plain(fields[field]), name
                if driver != NULL_DRIVER:
                    map_types.add((_entry_type(ours[field]), _entry_type(fields[field])))
            elif ours[field] != fields[field]:
                differ.append((name, driver, decode_plain(ours[field]), decode_plain(fields[field])))
    # Feast's one defect here: an int64 column with a null goes through float64 (pandas),
    # so 2**62 + k loses its low bits; ours keeps the exact value.
    exact = source_by_driver()[2]["i64"]
    assert differ == [("i64", 2, exact, int(float(exact)))]
    # And its file offline store reads a struct column with a null row through pandas:
    # integer fields come back double (32 -> 32.0). Ours keep the source's type; the
    # values are equal (above). Without a null row the bytes are Feast's (test_value_proto).
    assert map_types == {(int, float)}


def _entry_type(raw: bytes) -> type:
    """The Python type of the integer-valued entry (`seats` / `age`) of a stored map."""
    value = decode_plain(raw)
    return type(value["seats"] if "seats" in value else value["age"])


def _feast_response(typed: Typed) -> Any:
    rows = [{"driver_id": d} for d in ASKED]
    return typed.store.get_online_features(features=REFS, entity_rows=rows)


def _by_name(payload: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    return dict(zip(payload["metadata"]["feature_names"], payload["results"], strict=True))


def _stored_null(feast_value: Any, dtype: str) -> bool:
    return feast_value is None or (dtype == "unix_timestamp" and feast_value == NAT)


def _ours_rest(typed: Typed) -> dict[str, dict[str, list[Any]]]:
    body = {"features": REFS, "entities": {"driver_id": ASKED}}
    response = httpx.post(f"{typed.server.url}/get-online-features", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return _by_name(response.json())


def _assert_rest_matches(ours: dict[str, Any], feast: dict[str, Any]) -> None:
    assert list(ours) == ["driver_id", *FEATURES] and set(feast) == set(ours)
    assert ours["driver_id"]["values"] == feast["driver_id"]["values"] == ASKED
    for name in FEATURES:
        mine, theirs = ours[name], feast[name]
        assert mine["event_timestamps"] == theirs["event_timestamps"], name
        for i, driver in enumerate(ASKED):
            got = (mine["values"][i], mine["statuses"][i])
            if driver == MISSING:  # Feast: null and PRESENT (shared/anchors.md)
                assert got == (None, "NOT_FOUND") and theirs["values"][i] is None
            elif driver == NULL_DRIVER:
                assert _stored_null(theirs["values"][i], DTYPES[name]), name
                assert got == (None, "NULL_VALUE") and theirs["statuses"][i] == "PRESENT"
            else:
                assert got == (theirs["values"][i], theirs["statuses"][i]) == (got[0], "PRESENT"), name
    assert ours["j"]["values"][0] == feast["j"]["values"][0]  # Json: the stored text
    assert isinstance(ours["m"]["values"][0], dict) and isinstance(ours["b_list"]["values"][0][1], str)


def test_rest_answers_as_feast_serve(typed: Typed) -> None:
    """Against the function `feast serve` answers with (feast_server_utils)."""
    from feast.feature_server_utils import convert_response_to_dict

    feast = _by_name(json.loads(json.dumps(convert_response_to_dict(_feast_response(typed).proto))))
    _assert_rest_matches(_ours_rest(typed), feast)


def test_rest_answers_as_a_feast_serve_process(typed: Typed) -> None:
    """And against a real `feast serve` on the same repo and Redis."""
    (port,) = free_ports(1)
    log = open(typed.settings.home / "feast-serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "feast"), "serve", "-h", "127.0.0.1", "-p", str(port)],
        cwd=typed.settings.repo, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        body = {"features": REFS, "entities": {"driver_id": ASKED}}
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (typed.settings.home / "feast-serve.log").read_text()[-3000:]
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/get-online-features", json=body, timeout=10)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "feast serve did not answer in 90 s"
                time.sleep(0.5)
        assert response.status_code == 200, response.text
        _assert_rest_matches(_ours_rest(typed), _by_name(response.json()))
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_grpc_answers_feasts_messages(typed: Typed) -> None:
    from feast.protos.feast.serving import ServingService_pb2 as feast_pb
    from feast.protos.feast.serving import ServingService_pb2_grpc as feast_grpc
    from feast.protos.feast.types import Value_pb2

    request = feast_pb.GetOnlineFeaturesRequest(
        features=feast_pb.FeatureList(val=REFS),
        entities={"driver_id": Value_pb2.RepeatedValue(val=[Value_pb2.Value(int64_val=d) for d in ASKED])},
    )
    with grpc.insecure_channel(typed.server.target) as channel:
        ours = feast_grpc.ServingServiceStub(channel).GetOnlineFeatures(request, timeout=5)
    feast = _feast_response(typed).proto
    feast_cols = dict(zip(feast.metadata.feature_names.val, feast.results, strict=True))
    ours_cols = dict(zip(ours.metadata.feature_names.val, ours.results, strict=True))
    for name in FEATURES:
        mine, theirs = ours_cols[name], feast_cols[name]
        assert list(mine.event_timestamps) == list(theirs.event_timestamps), name
        for i, driver in enumerate(ASKED):
            if driver in (MISSING, NULL_DRIVER):
                assert mine.values[i].WhichOneof("val") is None, name
            else:
                assert mine.values[i] == theirs.values[i], name  # proto equality: maps as maps
                assert mine.values[i].WhichOneof("val") is not None


def test_sdk_decodes_as_feasts_to_dict(typed: Typed) -> None:
    feast = _feast_response(typed).to_dict()
    with FeatureClient(typed.server.target, timeout_s=10) as client:
        answer = client.get_online_features({"driver_id": ASKED}, features=REFS)
    ours = answer.to_dict()
    assert set(ours) == set(feast)
    for name in FEATURES:
        for i, driver in enumerate(ASKED):
            if driver in (MISSING, NULL_DRIVER):
                assert ours[name][i] is None
            else:
                assert plain(ours[name][i]) == plain(feast[name][i]), (name, driver)
    first = ours["j"][0], ours["m"][0], ours["ts"][0], ours["st"][0]
    assert isinstance(first[0], dict) and isinstance(first[1], dict) and first[2].tzinfo is not None
    assert first[3] == source_by_driver()[1]["st"]
    statuses = answer.statuses["m"]
    assert statuses == ["PRESENT", "PRESENT", "PRESENT", "NULL_VALUE", "NOT_FOUND"]


def test_tensor_refuses_a_non_numeric_feature_by_name(typed: Typed) -> None:
    url = f"{typed.server.url}/get-online-tensor"
    refs = [f"{VIEW}:i64", f"{VIEW}:m", f"{VIEW}:f32_list"]
    response = httpx.post(url, json={"features": refs, "entities": {"driver_id": [1]}}, timeout=10)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "'m' (map)" in detail and "'f32_list' (float32_list)" in detail and "'i64'" not in detail
    numeric = [f"{VIEW}:{n}" for n in ("i32", "i64", "f32", "f64", "flag", "ts")]
    body = {"features": numeric, "entities": {"driver_id": [1, NULL_DRIVER]}}
    response = httpx.post(url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    from featureline.serving_api.proto import pb

    tensor = pb.Tensor.FromString(response.content)
    values = np.frombuffer(tensor.values, dtype="<f4").reshape(2, len(numeric))
    present = np.frombuffer(tensor.present, dtype=np.uint8).reshape(2, len(numeric))
    assert present[0].tolist() == [1] * 6 and present[1].tolist() == [0] * 6  # Feast's NaT: absent
    row = source_by_driver()[1]
    expected = [row["i32"], row["i64"], row["f32"], row["f64"], row["flag"], row["ts"].timestamp()]
    assert values[0].tolist() == np.array(expected, dtype=np.float32).tolist()
    # A feature service keeps its non-numeric features out of the matrix, by name.
    body = {"feature_service": "every_type_service", "entities": {"driver_id": [1]}}
    response = httpx.post(url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    tensor = pb.Tensor.FromString(response.content)
    assert list(tensor.column_names) == ["i32", "i64", "f32", "f64", "flag", "ts"]
    assert len(tensor.omitted_features) == len(FEATURES) - 6


def test_grpc_tensor_refusal_is_invalid_argument(typed: Typed) -> None:
    from featureline.errors import BadInputError

    with (
        FeatureClient(typed.server.target, timeout_s=10) as client,
        pytest.raises(BadInputError, match="'s' \\(string\\)"),
    ):
        client.get_tensor(None, {"driver_id": [1]}, features=[f"{VIEW}:s"])


def test_project_keys_are_ours(typed: Typed) -> None:
    assert all(key.endswith(PROJECT.encode()) for key in typed.feast)


def test_consistency_compares_every_type_by_value(typed: Typed) -> None:
    """Our materialized values (Feast's have its int64 rounding, above) against
    historical retrieval at the same t: every type agrees by value, nulls included."""
    from featureline.cli.consistency.run import check_consistency

    client = redis.Redis.from_url(typed.settings.redis_url)
    try:
        client.flushdb()
        assert materialize(typed.settings, START, END, views=[VIEW], workers=1).ok
        report = check_consistency(typed.settings, sample=10, refs=REFS, repo=typed.spec)
    finally:
        client.flushdb()
        typed.store.materialize(START, END, feature_views=[VIEW])  # Feast's again
        client.close()
    assert report.entities == {"driver_id": len(DRIVERS)}
    bad = {f.feature: f.examples for f in report.features if not f.ok}
    # Arrays compare element by element with the NaN rule: driver 2's f64_list holds a
    # NaN on both sides, which agrees (a list's == never would).
    assert not bad, bad
    assert {f.feature for f in report.features} >= {f"{VIEW}:f64_list"}
