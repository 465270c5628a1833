"""A Sentinel failover under load: `featureline stream` (WAIT for 1 replica before it
commits) and `featureline serve` on a `redis_type: redis_sentinel` repo; events flow
at a steady rate and a reader records every REST and gRPC answer while the primary is
SIGKILLed and the sentinels promote the replica. Neither process restarts; every
answer in between is 503/UNAVAILABLE or some prefix's values (failover_helpers); once
every event is consumed, every aggregate and latest value equals the naive oracle and
every event is once offline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from failover_helpers import (
    Producer,
    Reader,
    check_replies,
    child_env,
    failover_case,
    histories,
    now_us,
    start_job,
)
from redis_sentinel_helpers import PASSWORD, eventually, fresh_sentinel_setup_fixture  # noqa: F401
from serve_process import start_server
from stream_helpers import offline_rows

from featureline.cli.devstack.redis_sentinel import SentinelSetup
from featureline.online.tiles import offsets_key
from featureline.online_store.redis.sentinel import discover_primary

pytestmark = [pytest.mark.beam, pytest.mark.slow]

BEFORE_KILL_S = 3.0  # events applied before the kill
AFTER_PROMOTION_S = 3.0  # events produced after the new primary took over


def _online_yaml(setup: SentinelSetup) -> str:
    return (
        "online_store:\n  type: redis\n  redis_type: redis_sentinel\n"
        f"  sentinel_master: {setup.master_name}\n"
        f'  connection_string: "{setup.connection_string()}"\n'
    )


def _watermarks(setup: SentinelSetup, case: Any, port: int) -> dict[int, int]:
    node = setup.primary if setup.primary.port == port else setup.replica
    client = setup.data_client(node, socket_timeout=2.0)
    try:
        raw = {p: client.get(offsets_key(case.project, case.topic, p)) for p in range(3)}
    finally:
        client.close()
    return {p: int(v) for p, v in raw.items() if v is not None}


def test_sentinel_failover_loses_nothing_and_serves_no_wrong_value(
    stack: Any, fresh_sentinel_setup: SentinelSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = fresh_sentinel_setup
    case = failover_case(stack, tmp_path, _online_yaml(setup), monkeypatch)
    env = child_env(case, FEATURELINE_REDIS_WAIT_REPLICAS="1", FEATURELINE_REDIS_WAIT_TIMEOUT_MS="300")
    job_log, stats = tmp_path / "stream.log", tmp_path / "stats.json"
    job = start_job(case, job_log, stats, env)  # starts while the server does
    server = start_server(case.settings, "--near-cache-keys", "10000")
    producer = Producer(case, seed=13)
    reader = Reader(case, server.url, server.target)
    try:
        producer.start()
        old = setup.primary
        eventually(lambda: _watermarks(setup, case, old.port) or None, 60, "the job's first batches")
        reader.start()
        time.sleep(BEFORE_KILL_S)
        killed_at = now_us()
        setup.kill(old)
        new_port = eventually(lambda: _promoted(setup, old.port), 20, "the sentinels to promote the replica")
        promoted_at = now_us()
        # With WAIT on, the new primary acknowledges nothing until it has a replica
        # again: the job retries its batch meanwhile. The killed node comes back as one.
        setup.restart_as_replica(old, setup.replica)
        time.sleep(AFTER_PROMOTION_S)
        producer.stop.set()
        producer.join(10)
        assert producer.error is None, producer.error
        last = producer.last
        caught_up = lambda: _caught_up(setup, case, new_port, last, job, job_log)  # noqa: E731
        eventually(caught_up, 60, f"offsets {last} applied")
        reader.stop.set()
        reader.join(10)
        assert reader.error is None, reader.error
        assert job.poll() is None, job_log.read_text()[-3000:]
        assert server.proc.poll() is None and "restarting" not in server.log_text(), server.log_text()
        events = producer.events
        known = histories(events)
        problems = check_replies(reader.replies, known, case.repo)
        assert not problems, f"{len(problems)} wrong answers, first: {problems[:5]}; {server.log_text()}"
        after = [r for r in reader.replies if r.outcome == "ok" and r.before_us > promoted_at]
        assert len(after) >= 10, "serving did not recover after the promotion"
        assert any(r.before_us > killed_at for r in reader.replies)
        final = check_replies(reader.ask_all(), known, case.repo, complete=True)
        assert not final, f"after the run, {len(final)} answers differ from the oracle: {final[:5]}"
    finally:
        reader.close()
        producer.stop.set()
        _stop(job)
        server.stop()
    summary = json.loads(stats.read_text())
    assert summary["events"] == len(events), job_log.read_text()[-3000:]
    assert summary["online_retries"] > 0, "the kill failed no write: nothing was tested"
    table = offline_rows(case)
    ids = list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == len(events)


def _promoted(setup: SentinelSetup, old_port: int) -> int | None:
    try:
        host, port = discover_primary(setup.redis_config())
    except Exception:
        return None
    return port if port != old_port else None


def _caught_up(
    setup: SentinelSetup, case: Any, port: int, last: dict[int, int], job: Any, log: Path
) -> bool | None:
    if job.poll() is not None:
        pytest.fail(f"the stream job exited ({job.returncode}): {log.read_text()[-3000:]}")
    marks = _watermarks(setup, case, port)
    return True if all(marks.get(p, -1) >= o for p, o in last.items()) else None


def _stop(job: Any) -> None:
    if job.poll() is None:
        job.terminate()
        try:
            job.wait(30)
        except Exception:
            job.kill()
            job.wait()
