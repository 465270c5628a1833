"""`featureline stream` into a Redis with a password and db 3, given by
FEATURELINE_REDIS_PORT/_PASSWORD/_DB over the demo repo's feature_store.yaml: the
online values equal the oracle's in db 3 of that Redis; a wrong password stops the job
at start-up with one line."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from secure_redis_helpers import PASSWORD, SecureRedis, running_secure_redis
from serve_process import start_server
from stream_helpers import (
    StreamCase,
    assert_online_equals_oracle,
    make_events,
    now_us,
    send,
    stop_job,
    wait_applied,
)

pytestmark = pytest.mark.beam


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    with running_secure_redis(tmp_path_factory.mktemp("secure-redis")) as server:
        yield server


def _secure_env(secure: SecureRedis, password: str) -> dict[str, str]:
    return {"FEATURELINE_REDIS_PORT": str(secure.port), "FEATURELINE_REDIS_PASSWORD": password,
            "FEATURELINE_REDIS_DB": "3"}  # fmt: skip


def _job(case: StreamCase, secure: SecureRedis, password: str) -> subprocess.Popen[bytes]:
    env = {**case.env(), **_secure_env(secure, password)}
    _cache_specs(env)
    cmd = [sys.executable, "-m", "featureline.cli", "stream", "--repo", str(case.settings.repo),
           "--progress", "off"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)


def _cache_specs(env: dict[str, str]) -> None:
    """The repo's specs in featureline.repo's cache under the key the child computes:
    the Redis variables are part of that key, so the fixture's load does not cover
    them, and each child (two stream jobs, a server) would parse the repo with Feast
    itself (~10-15 s of CPU to import feast, 2.5x on a loaded machine). Parsed here,
    where Feast is already imported; the children read the same specs."""
    from featureline.repo import load_repo
    from featureline.settings import Settings

    load_repo(Settings.from_env(env))


def test_stream_writes_to_the_configured_db_with_auth(
    stream_case: StreamCase, secure_redis: SecureRedis, tmp_path: Path
) -> None:
    client, db0 = secure_redis.admin(3), secure_redis.admin(0)
    client.flushall()
    events = make_events(random.Random(5), 300, users=12, t0_us=now_us())
    last = send(stream_case, events)
    job = _job(stream_case, secure_redis, PASSWORD)
    try:
        wait_applied(client, stream_case, last, job)
    finally:
        stop_job(job)
    # Read back the way users read: `featureline serve` on the same Redis, db and login.
    server = start_server(stream_case.settings, env_extra=_secure_env(secure_redis, PASSWORD))
    try:
        assert assert_online_equals_oracle(server, stream_case, events) > 0
    finally:
        server.stop()
    assert db0.dbsize() == 0


def test_stream_with_a_wrong_password_is_one_line(stream_case: StreamCase, secure_redis: SecureRedis) -> None:
    job = _job(stream_case, secure_redis, "wrong")
    _, err = job.communicate(timeout=120)
    text = err.decode()
    assert job.returncode == 2, text
    assert f"error: Redis at 127.0.0.1:{secure_redis.port} refused the login (password)" in text
    assert "Traceback" not in text
