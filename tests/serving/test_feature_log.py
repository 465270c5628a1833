"""Feature logging in `featureline serve` (serving_api.feature_log) and `featureline
consistency --logged`, end to end on the session Redis: a small Feast repo whose feature
services have a logging_config (FileLoggingDestination), its offline rows materialized,
served over REST and gRPC (and the tensor call), logged, read back with pyarrow and
against Feast's own logging schema, and recomputed offline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from serve_process import ServerProcess, start_server
from serving_data import feature_store_yaml

from featureline.settings import Settings
from featureline.specs import RepoSpec

_DEFS = """
from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
src = FileSource(name="profiles_src", path="data/profiles.parquet", timestamp_field="event_timestamp")
profile = FeatureView(
    name="profile", entities=[user], ttl=timedelta(days=2), source=src,
    schema=[Field(name="age", dtype=Int64), Field(name="score", dtype=Float64),
            Field(name="country", dtype=String)],
)
req = RequestSource(name="req", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(sources=[profile, req], schema=[Field(name="per_score", dtype=Float64)],
                        mode="python")
def ratio(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"per_score": [a / s if a is not None and s else None
                          for a, s in zip(inputs["amount"], inputs["score"])]}


scoring = FeatureService(
    name="scoring", features=[profile, ratio],
    logging_config=LoggingConfig(
        destination=FileLoggingDestination(path="logs/scoring", partition_by=["__log_date"]),
        sample_rate=1.0,
    ),
)
sampled = FeatureService(
    name="sampled", features=[profile[["age"]]],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path="logs/sampled"),
                                 sample_rate=0.01),
)
unlogged = FeatureService(name="unlogged", features=[profile])
"""

_YAML = feature_store_yaml("flog_test")
USERS = 40


@dataclass
class Logged:
    settings: Settings
    repo: RepoSpec
    server: ServerProcess


def _write_profiles(path: Path, now: datetime) -> None:
    """Two rows per user (an old one and the latest), so point in time matters; user 7
    has only an old row past the ttl (served OUTSIDE_MAX_AGE, null offline)."""
    rows: dict[str, list[Any]] = {"user_id": [], "age": [], "score": [], "country": [], "event_timestamp": []}
    for user in range(1, USERS + 1):
        ages = (
            [(now - timedelta(days=3), 1)]
            if user == 7
            else [(now - timedelta(hours=30), 2), (now - timedelta(hours=1), 3)]
        )
        for ts, version in ages:
            rows["user_id"].append(user)
            rows["age"].append(20 + user + version)
            rows["score"].append(user / 8 + version)
            rows["country"].append(["DE", "FR", "NL"][(user + version) % 3])
            rows["event_timestamp"].append(ts)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)


@pytest.fixture(scope="module")
def logged(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    from featureline.batch.materialize import materialize
    from featureline.repo import load_repo

    home = tmp_path_factory.mktemp("flog-home")
    repo_dir = home / "repo"
    repo_dir.mkdir()
    (repo_dir / "feature_store.yaml").write_text(_YAML)
    (repo_dir / "defs.py").write_text(_DEFS)
    now = datetime.now(UTC)
    _write_profiles(repo_dir / "data" / "profiles.parquet", now)
    settings = dataclasses.replace(stack, home=home, repo=repo_dir, offline_dir=str(home / "offline"))
    materialize(settings, now - timedelta(days=5), now)
    server = start_server(settings, "--feature-log-flush-s", "0.3")
    try:
        yield Logged(settings, load_repo(settings), server)
    finally:
        server.stop()


def _rest(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(server.url + path, json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()) if path == "/get-online-features" else {}


def _read(path: Path) -> pa.Table:
    """A plain pyarrow read (Hive partitions; "__log_date=" directories are not hidden)."""
    return ds.dataset(path, format="parquet", partitioning="hive", ignore_prefixes=["."]).to_table()


def _log_rows(path: Path, want: int, timeout_s: float = 10.0) -> pa.Table:
    """The rows logged at `path` once there are at least `want` (the writer flushes every
    0.3 s here)."""
    deadline = time.monotonic() + timeout_s
    while True:
        table = _read(path) if path.exists() else None
        if table is not None and table.num_rows >= want or time.monotonic() > deadline:
            return table if table is not None else pa.table({})
        time.sleep(0.1)


def test_served_traffic_is_logged_in_feasts_layout(logged: Logged) -> None:
    from featureline.serving_api.client import FeatureClient

    server = logged.server
    users, amounts = [3, 7, 999], [10.0, 5.0, None]  # 7: past the ttl; 999: not found
    body = {"feature_service": "scoring", "entities": {"user_id": users, "amount": amounts}}
    rest = _rest(server, "/get-online-features", body)
    with FeatureClient(server.target) as client:
        grpc = client.get_online_features({"user_id": [4], "amount": [2.5]}, feature_service="scoring")
        client.get_tensor("scoring", {"user_id": [5, 6], "amount": [1.0, 2.0]})
    _rest(
        server,
        "/get-online-tensor",
        {"feature_service": "scoring", "entities": {"user_id": [8], "amount": [1.0]}},
    )
    _rest(server, "/get-online-features", {"feature_service": "unlogged", "entities": {"user_id": [9]}})
    table = _log_rows(logged.settings.repo / "logs" / "scoring", 7)
    assert table.num_rows == 7  # 3 + 1 + 2 + 1; the unlogged service's row is not there
    rows = sorted(table.to_pylist(), key=lambda r: (r["__log_timestamp"], r["user_id"]))
    by_user = {r["user_id"]: r for r in rows}
    # REST: values and statuses as served (Feast's FieldStatus numbers)
    names = rest["metadata"]["feature_names"]
    for i, user in enumerate(users):
        row = by_user[user]
        for j, name in enumerate(names[1:], start=1):
            served = rest["results"][j]
            column = f"profile__{name}" if name != "per_score" else "ratio__per_score"
            assert row[column] == served["values"][i], (user, name)
            status = {"PRESENT": 1, "NULL_VALUE": 2, "NOT_FOUND": 3, "OUTSIDE_MAX_AGE": 4}[
                served["statuses"][i]
            ]
            assert row[f"{column}__status"] == status, (user, name)
    assert by_user[3]["amount"] == 10.0 and by_user[999]["profile__age__status"] == 3
    assert by_user[7]["profile__age__status"] == 4 and by_user[7]["profile__age"] is None
    assert (
        by_user[3]["profile__age__timestamp"] is not None and by_user[999]["profile__age__timestamp"] is None
    )
    # gRPC: the value served
    assert by_user[4]["profile__age"] == grpc.to_dict()["age"][0] == 20 + 4 + 3
    assert {by_user[u]["__request_id"] for u in users} == {by_user[3]["__request_id"]}  # one request
    assert len({r["__request_id"] for r in rows}) == 4
    logged_at = by_user[3]["__log_timestamp"]
    assert abs((datetime.now(UTC) - logged_at).total_seconds()) < 60
    assert str(by_user[3]["__log_date"]) == logged_at.date().isoformat()


def test_log_files_have_feasts_logging_schema(logged: Logged) -> None:
    """Feast's own FeatureServiceLoggingSource.get_schema (from the applied registry)
    is the files' schema: the file columns, plus the Hive partition column."""
    from feast import FeatureStore
    from feast.feature_logging import FeatureServiceLoggingSource

    from featureline.cli.commands.apply import apply_repo

    _rest(logged.server, "/get-online-features",
          {"feature_service": "scoring", "entities": {"user_id": [1], "amount": [1.0]}})  # fmt: skip
    base = logged.settings.repo / "logs" / "scoring"
    assert _log_rows(base, 1).num_rows >= 1
    apply_repo(logged.settings)
    store = FeatureStore(repo_path=str(logged.settings.repo))
    feast_schema = FeatureServiceLoggingSource(store.get_feature_service("scoring"), "flog_test").get_schema(
        store.registry
    )

    def stored(field: pa.Field) -> pa.Field:
        if field.type == pa.timestamp("s", tz="UTC"):
            return field.with_type(pa.timestamp("ms", tz="UTC"))
        return field

    files = sorted(base.rglob("*.parquet"))
    assert files and all(f.parent.name.startswith("__log_date=") for f in files)
    for f in files:
        file_schema = pq.read_schema(f).remove_metadata()
        # Parquet has no second unit: Feast's timestamp[s] is stored as ms (by Feast too).
        want = pa.schema([stored(x) for x in feast_schema if x.name != "__log_date"])
        assert file_schema == want, f"{file_schema}\n---\n{want}"
    from featureline.serving_api.feature_log_layout import LogLayout
    from featureline.serving_api.feature_log_write import log_schema, read_log

    layout = LogLayout.of(logged.repo, "scoring")
    assert log_schema(layout) == feast_schema
    assert read_log(logged.repo.service("scoring").logging, layout).to_table().schema == feast_schema  # type: ignore[arg-type]


def test_sampling_logs_about_the_sample_rate(logged: Logged) -> None:
    """`sampled` logs 1% of its requests: 2,000 requests, 20 expected; 4-45 bounds it
    at a chance of a false failure below 1e-4 (binomial)."""
    body = json.dumps({"feature_service": "sampled", "entities": {"user_id": [1]}})
    with httpx.Client(base_url=logged.server.url, timeout=5) as http:
        for _ in range(2000):
            assert http.post("/get-online-features", content=body).status_code == 200
    time.sleep(1.0)  # two flushes
    n = _log_rows(logged.settings.repo / "logs" / "sampled", 1, timeout_s=2).num_rows
    assert 4 <= n <= 45, n


def test_a_full_queue_drops_and_counts(logged: Logged) -> None:
    """A one-row queue that is never written: every request after the first is served
    as fast as ever, its row dropped and counted in /metrics."""
    server = start_server(logged.settings, "--feature-log-queue-rows", "1", "--feature-log-flush-s", "600",
                          "--feature-log-flush-rows", "1000", "--feature-log-sample-rate", "1")  # fmt: skip
    try:
        body = json.dumps({"feature_service": "sampled", "entities": {"user_id": [1]}})
        with httpx.Client(base_url=server.url, timeout=5) as http:
            times = []
            for _ in range(200):
                began = time.perf_counter()
                assert http.post("/get-online-features", content=body).status_code == 200
                times.append(time.perf_counter() - began)
            time.sleep(1.2)  # the metrics' flush interval
            text = http.get("/metrics").text
    finally:
        server.stop()
    assert 'featureline_serving_feature_log_dropped_total{service="sampled"} 199.0' in text
    assert 'featureline_serving_feature_log_dropped_total{service="scoring"} 0.0' in text
    assert sorted(times)[len(times) // 2] < 0.05  # median; nothing waits on the log


def test_offer_never_blocks_on_a_full_queue() -> None:
    """The request path's cost with a full queue: a lock, a compare, a count (no wait)."""
    from featureline.serving_api.feature_log import FeatureLogger, LogSettings, ServiceLog
    from featureline.serving_api.feature_log_layout import LogLayout
    from featureline.serving_api.frame import FeatureFrame
    from featureline.specs import LoggingSpec

    layout = LogLayout("s", (), frozenset(), (), ())
    target = ServiceLog(layout, LoggingSpec("/nonexistent"), 1.0, queue_rows=1)
    logger = FeatureLogger({"s": target}, LogSettings(1, 10, 600.0))
    frame = FeatureFrame(1, 0)

    async def offers() -> float:  # in an event loop, as in a worker (metrics batch there)
        logger.offer("s", frame, {})
        began = time.perf_counter()
        for _ in range(20_000):
            logger.offer("s", frame, {})
        return (time.perf_counter() - began) / 20_000

    per_call = asyncio.run(offers())
    assert target.rows == 1 and len(target.take()) == 1
    assert per_call < 50e-6, per_call  # ~2 us measured; 50 us is far from any wait


def test_consistency_logged_is_exact_then_sees_a_skew(logged: Logged, tmp_path: Path) -> None:
    """Served, logged, recomputed: 0 mismatches; then a value written by hand into Redis
    (the shared LWW writer) is served, logged and reported with its entity and feature."""
    import redis
    from serving_data import now_us, write_latest

    from featureline.cli.consistency.logged import check_logged

    since = datetime.now(UTC)
    for user in range(1, 11):
        entities = {"user_id": [user, user + 20], "amount": [2.0, None]}
        _rest(logged.server, "/get-online-features", {"feature_service": "scoring", "entities": entities})
    _log_rows(logged.settings.repo / "logs" / "scoring", 20)
    time.sleep(0.8)
    report = check_logged(logged.settings, "scoring", since=since, repo=logged.repo)
    assert report.sample == 20 and report.ok, [f.to_dict() for f in report.features if not f.ok]
    assert {f.feature for f in report.features} == {
        "profile:age",
        "profile:score",
        "profile:country",
        "ratio:per_score",
    }
    assert all(f.compared == 20 for f in report.features)

    client = redis.Redis.from_url(logged.settings.redis_url)
    skewed = {"user_id": 5, "event_us": now_us(), "age": 99, "score": 5 / 8 + 3, "country": "NL"}
    write_latest(client, logged.repo, "profile", [skewed])
    client.close()
    skew_since = datetime.now(UTC)
    _rest(logged.server, "/get-online-features",
          {"feature_service": "scoring", "entities": {"user_id": [5, 6], "amount": [1.0, 1.0]}})  # fmt: skip
    time.sleep(0.8)
    report = check_logged(logged.settings, "scoring", since=skew_since, repo=logged.repo)
    assert not report.ok and report.sample == 2
    age = next(f for f in report.features if f.feature == "profile:age")
    assert (
        age.mismatches == 1 and age.examples[0]["online"] == 99 and age.examples[0]["offline"] == 20 + 5 + 3
    )
    assert age.examples[0]["key"]["user_id"] == 5
    assert [f.feature for f in report.features if not f.ok] == ["profile:age"]  # score, country: same


def test_consistency_logged_command_writes_its_report(logged: Logged, tmp_path: Path) -> None:
    import subprocess
    import sys

    from serve_process import child_env

    done = subprocess.run(
        [sys.executable, "-m", "featureline.cli", "consistency", "--repo", str(logged.settings.repo),
         "--logged", "--service", "scoring", "--since", "2000-01-01", "--out", str(tmp_path)],
        env=child_env(logged.settings, FEATURELINE_HOME=str(logged.settings.home)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "feature service scoring:" in done.stdout, done.stdout + done.stderr
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr
    path = next(tmp_path.glob("consistency-logged-scoring-*.json"))
    data = json.loads(path.read_text())
    assert data["mode"] == "logged" and data["service"] == "scoring" and data["rows_compared"] > 0
    assert {f["feature"] for f in data["features"]} >= {"profile:age"}
    # The web UI reads it as any consistency report and charts it (a bar per feature).
    from featureline.ui.reports import features_svg, read_report

    shown = read_report(path)
    assert not shown.error and {f.feature for f in shown.features} == {f["feature"] for f in data["features"]}
    chart = features_svg(shown)
    assert chart.startswith("<svg") and all(f["feature"] in chart for f in data["features"])
