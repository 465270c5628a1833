"""The failover run both tests share: stream job and server up, events flowing, a reader
recording, one primary SIGKILLed, the promotion awaited, the killed node back as a
replica, then every check (failover_helpers says what an answer may be)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from failover_helpers import Producer, Reader, check_replies, child_env, histories, now_us, start_job
from redis_sentinel_helpers import eventually
from serve_process import start_server
from stream_helpers import StreamCase, offline_rows

from featureline.online.tiles import offsets_key

BEFORE_KILL_S = 3.0  # events applied and answers recorded before the kill
AFTER_PROMOTION_S = 3.0  # events produced after the new primary took over
# WAIT for 1 replica within 300 ms: a batch whose primary lost its replica fails fast
# and is retried, rather than blocking the job for the default 1 s each time.
WAIT_ENV = {"FEATURELINE_REDIS_WAIT_REPLICAS": "1", "FEATURELINE_REDIS_WAIT_TIMEOUT_MS": "300"}


@dataclass
class Target:
    """The Redis setup under test, as the run needs it."""

    kill: Callable[[], object]  # SIGKILL the primary
    wait_promoted: Callable[[], object]  # until its replica serves in its place
    restart: Callable[[], object]  # the killed node back, as a replica of the new primary
    get: Callable[[bytes], bytes | None]  # GET a key from whichever node serves it now


def watermarks(target: Target, case: StreamCase) -> dict[int, int]:
    raw = {p: target.get(offsets_key(case.project, case.topic, p)) for p in range(3)}
    return {p: int(v) for p, v in raw.items() if v is not None}


def run_failover(case: StreamCase, tmp_path: Path, target: Target, *, near_cache: bool = True) -> None:
    """An answer never reads a view's tile sizes at different prefixes
    (failover_helpers.Findings.mixed): an entity's tile hashes share a hash tag, so one
    slot, and the stream job writes them in one script call (online.tiles.tile_key).
    `near_cache`: serve with `--near-cache-keys` (opt-in; its invalidations come on a
    second connection, so for a few ms after a write one tile size of an entity may be
    served from the cache and another fresh: the cluster test runs the default, off)."""
    began = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - began, 1)

    job_log, stats = tmp_path / "stream.log", tmp_path / "stats.json"
    job = start_job(case, job_log, stats, child_env(case, **WAIT_ENV))  # starts while the server does
    server = start_server(case.settings, *(["--near-cache-keys", "10000"] if near_cache else []))
    phase("server up")
    producer = Producer(case, seed=13)
    reader = Reader(case, server.url, server.target)
    try:
        producer.tick(30)  # a few events every partition has: the job is up once it applied them
        first = dict(producer.last)
        up = lambda: _caught_up(target, case, first, job, job_log)  # noqa: E731
        eventually(up, 90, "the job's first batches")
        phase("job up")
        producer.start()
        reader.start()
        time.sleep(BEFORE_KILL_S)
        killed_at = now_us()
        target.kill()
        target.wait_promoted()
        promoted_at = now_us()
        phase("promoted")
        # With WAIT on, the new primary acknowledges nothing until it has a replica
        # again: the job retries its batch meanwhile. The killed node comes back as one.
        target.restart()
        time.sleep(AFTER_PROMOTION_S)
        producer.stop.set()
        producer.join(10)
        assert producer.error is None, producer.error
        last = producer.last
        eventually(lambda: _caught_up(target, case, last, job, job_log), 60, f"offsets {last} applied")
        phase("caught up")
        reader.stop.set()
        reader.join(10)
        assert reader.error is None, reader.error
        assert job.poll() is None, job_log.read_text()[-3000:]
        assert server.proc.poll() is None and "restarting" not in server.log_text(), server.log_text()
        events = producer.events
        known = histories(events)
        found = check_replies(reader.replies, known, case.repo)
        problems = found.wrong
        assert not problems, f"{len(problems)} wrong answers, first: {problems[:5]}; {server.log_text()}"
        assert not found.mixed, f"{len(found.mixed)} answers mixed prefixes: {found.mixed[:5]}"
        after = [r for r in reader.replies if r.outcome == "ok" and r.before_us > promoted_at]
        assert len(after) >= 10, "serving did not recover after the promotion"
        assert any(r.before_us > killed_at for r in reader.replies)
        final = check_replies(reader.ask_all(), known, case.repo, complete=True).wrong
        assert not final, f"after the run, {len(final)} answers differ from the oracle: {final[:5]}"
        phase("checked")
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
    unavailable = sum(r.outcome == "unavailable" for r in reader.replies)
    print(f"failover: {len(events)} events, {len(reader.replies)} answers ({unavailable} unavailable, "
          f"{len(found.mixed)} of a view's tile sizes at different prefixes), "
          f"{summary['online_retries']} online retries; seconds: {phases}")  # fmt: skip


def _caught_up(target: Target, case: StreamCase, last: dict[int, int], job: Any, log: Path) -> bool | None:
    if job.poll() is not None:
        pytest.fail(f"the stream job exited ({job.returncode}): {log.read_text()[-3000:]}")
    try:
        marks = watermarks(target, case)
    except Exception:  # a node still starting: try again
        return None
    return True if all(marks.get(p, -1) >= o for p, o in last.items()) else None


def _stop(job: Any) -> None:
    if job.poll() is None:
        job.terminate()
        try:
            job.wait(30)
        except Exception:
            job.kill()
            job.wait()
