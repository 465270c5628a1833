"""A production online store, named only by the repo's feature_store.yaml: a password,
an ACL user, db 3 and TLS (with a CA made here). `featureline materialize`, then
`featureline serve` (REST and gRPC, near cache on: its invalidation connection logs in
too) answer from that Redis; a wrong password, an unknown user or a wrong CA stop
materialize, serve and consistency at start-up with one line, never a traceback.

TLS: see secure_redis_helpers (a proxy in front of a redis-server built without TLS).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from secure_redis_helpers import ALICE, PASSWORD, SecureRedis, running_secure_redis
from serve_process import start_server

from featureline.cli import main
from featureline.cli.devstack import free_port
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.settings import Settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DRIVERS = [1001, 1002, 1003]

_DEFS = """
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
# A path relative to the repo, as in Feast's template: resolved against the repo dir.
stats_src = FileSource(name="stats_src", path="data/stats.parquet", timestamp_field="event_timestamp")
stats = FeatureView(
    name="stats", entities=[driver], ttl=timedelta(days=3650), source=stats_src,
    schema=[Field(name="conv_rate", dtype=Float64), Field(name="trips", dtype=Int64)],
)
svc = FeatureService(name="svc", features=[stats])
"""

_YAML = """project: secure_redis
provider: local
registry: data/registry.db
online_store:
  type: redis
  connection_string: "{conn}"
offline_store:
  type: file
entity_key_serialization_version: 3
"""


@pytest.fixture(autouse=True)
def _only_the_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repo's yaml alone says where Redis is: no FEATURELINE_* left in the
    environment by other tests' exports (a set FEATURELINE_REDIS_PORT would override)."""
    for key in [k for k in os.environ if k.startswith("FEATURELINE_")]:
        monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    with running_secure_redis(tmp_path_factory.mktemp("secure-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def secure_repo(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The repo and its offline data; the yaml is written per case."""
    root = tmp_path_factory.mktemp("secure-repo")
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "defs.py").write_text(_DEFS)
    stamp = pa.array([int(T0.timestamp()) * 1_000_000] * len(DRIVERS)).cast(pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table({"driver_id": DRIVERS, "conv_rate": [0.25 * (i + 1) for i in range(len(DRIVERS))],
                  "trips": [10 * d for d in DRIVERS], "event_timestamp": stamp}),
        repo / "data" / "stats.parquet",
    )  # fmt: skip
    home = root / "home"
    home.mkdir()
    return Settings(repo=repo, home=home)


def _write_yaml(settings: Settings, conn: str) -> None:
    (settings.repo / "feature_store.yaml").write_text(_YAML.format(conn=conn))


def _cases(r: SecureRedis) -> dict[str, str]:
    user, secret = ALICE
    return {
        "password_db3": f"127.0.0.1:{r.port},password={PASSWORD},db=3",
        "acl_user_db3": f"127.0.0.1:{r.port},username={user},password={secret},db=3",
        "tls_db3": f"127.0.0.1:{r.tls_port},password={PASSWORD},db=3,ssl=true,ssl_ca_certs={r.ca}",
    }


def _materialize(settings: Settings) -> int:
    os.environ["FEATURELINE_HOME"] = str(settings.home)
    return main(["materialize", "--repo", str(settings.repo), "--start", "2024-01-01", "--end", "2025-01-01"])


def _rest(port: int) -> dict[str, list]:
    body = {"features": ["stats:conv_rate", "stats:trips"], "entities": {"driver_id": DRIVERS}}
    response = httpx.post(f"http://127.0.0.1:{port}/get-online-features", json=body, timeout=10)
    assert response.status_code == 200, response.text
    names = response.json()["metadata"]["feature_names"]
    return {name: col["values"] for name, col in zip(names, response.json()["results"], strict=True)}


def _grpc(port: int) -> list[list[float]]:
    request = pb.GetOnlineFeaturesRequest(
        features=pb.FeatureList(val=["stats:conv_rate"]),
        entities={"driver_id": pb.RepeatedValue(val=[pb.Value(int64_val=d) for d in DRIVERS])},
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/{SERVICE_NAME}/GetOnlineFeatures")
        raw = call(request.SerializeToString(), timeout=10)
    reply = pb.GetOnlineFeaturesResponse.FromString(raw)
    return [[v.double_val for v in col.values] for col in reply.results]


@pytest.mark.parametrize("case", ["password_db3", "acl_user_db3", "tls_db3"])
def test_materialize_then_serve_from_the_yamls_redis(
    secure_redis: SecureRedis, secure_repo: Settings, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin3, admin0 = secure_redis.admin(3), secure_redis.admin(0)
    admin3.flushall()
    _write_yaml(secure_repo, _cases(secure_redis)[case])
    assert _materialize(secure_repo) == 0, capsys.readouterr().err
    assert admin3.dbsize() == len(DRIVERS) + 1  # three entities and the incremental mark
    assert admin0.dbsize() == 0  # nothing in the db the old defaults pointed at
    server = start_server(secure_repo, "--near-cache-keys", "100")
    try:
        served = _rest(server.http_port)
        assert served["conv_rate"] == [0.25, 0.5, 0.75]
        assert served["trips"] == [10 * d for d in DRIVERS]
        assert _grpc(server.grpc_port)[1] == [0.25, 0.5, 0.75]
        assert "db 3" in server.log_text()
        # A near-cache hit, then a write: the invalidation connection (logged in, on
        # TLS) must drop the cached value.
        assert _rest(server.http_port)["conv_rate"] == [0.25, 0.5, 0.75]
        admin3.flushdb()
        deadline = time.monotonic() + 5
        while _rest(server.http_port)["conv_rate"] != [None, None, None]:
            assert time.monotonic() < deadline, "the near cache kept a value Redis no longer has"
            time.sleep(0.05)
    finally:
        server.stop()


def _bad_cases(r: SecureRedis) -> dict[str, tuple[str, str]]:
    return {
        "wrong_password": (f"127.0.0.1:{r.port},password=nope,db=3", "refused the login (password)"),
        "unknown_user": (
            f"127.0.0.1:{r.port},username=mallory,password=x",
            "refused the login (user 'mallory')",
        ),
        "no_password": (f"127.0.0.1:{r.port},db=3", "refused the login"),
        "wrong_ca": (
            f"127.0.0.1:{r.tls_port},password={PASSWORD},ssl=true,ssl_ca_certs={r.other_ca}",
            "TLS failed",
        ),
    }


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.env_vars(), "FEATURELINE_HOME": str(settings.home)}
    return subprocess.run([sys.executable, "-m", "featureline.cli", *args, "--repo", str(settings.repo)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip


@pytest.mark.parametrize("case", ["wrong_password", "unknown_user", "no_password", "wrong_ca"])
def test_bad_login_or_tls_is_one_line_at_start_up(
    secure_redis: SecureRedis, secure_repo: Settings, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn, message = _bad_cases(secure_redis)[case]
    _write_yaml(secure_repo, conn)
    port = secure_redis.tls_port if case == "wrong_ca" else secure_redis.port
    assert _materialize(secure_repo) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Redis at 127.0.0.1:{port}") and message in err, err
    commands = [("serve", "--http-port", str(free_port()), "--grpc-port", str(free_port())),
                ("consistency", "--sample", "3")]  # fmt: skip
    for command in commands:
        done = _cli(secure_repo, *command)
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith(f"error: Redis at 127.0.0.1:{port}") and message in lines[-1], done.stderr
        assert "Traceback" not in done.stderr
