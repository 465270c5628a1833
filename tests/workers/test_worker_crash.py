"""`featureline worker` killed mid-stream and restarted loses no request (at-least-once),
on real services: Redis, the Kafka broker, `featureline serve`, the worker as a process.

The worker assigns itself every partition by hand (a group join on Tansu takes ~20 s)
and commits offsets under its group after the scores they cover are flushed, so what
this test checks exactly, per input partition p with committed offset c[p] when the
first worker died:
- every request at an offset < c[p] had its score written before the kill (an offset
  committed before its scores were flushed would show up here as a missing score);
- the restarted worker scores exactly the requests at offsets >= c[p]: it resumes from
  the group's offsets, neither skipping nor re-reading committed ones;
- so duplicates are only requests after the last commit whose scores the first worker
  had written, and a duplicate's two scores are equal.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.worker.env import ServeProcess
from benchmarks.worker.synthetic import EntityDomain, request_rows
from featureline.serving_api.workers.layout import FeatureLayout
from featureline.serving_api.workers.train import TrainResult
from featureline.serving_api.workers.worker import COMMIT_INTERVAL_S
from featureline.settings import Settings

REQUESTS = 8000
# Produced before the worker starts: the worker reads it at once and holds much of it
# read but unscored when it first commits (a commit covering read offsets rather than
# written scores loses those). The rest arrives at PACE_PER_S while the worker runs,
# so the kill, right after the first commit (~1 s in), lands mid-stream however fast
# the worker is.
BACKLOG = 5000
PACE_PER_S = 1000
WORKER_START_TIMEOUT_S = 60.0  # torch + grpc + kafka imports on a loaded 2-core machine
IDLE_EXIT_S = 3.0

MAX_BATCH, INFLIGHT = 4, 2
Score = tuple[str, float]  # (txn_id, score)


class _PacedProducer(threading.Thread):
    """Produces the requests round-robin on 2 partitions: a backlog at once, the rest
    paced; remembers where each request landed."""

    def __init__(self, settings: Settings, topic: str, events: list[tuple[str, bytes]]) -> None:
        from kafka import KafkaProducer

        super().__init__(name="paced-producer", daemon=True)
        self.topic = topic
        self.events = events
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        self.futures: list[tuple[str, Any]] = []
        self.sent = 0

    def send(self, n: int) -> None:
        for txn_id, event in self.events[self.sent : self.sent + n]:
            future = self.producer.send(self.topic, event, partition=self.sent % 2)
            self.futures.append((txn_id, future))
            self.sent += 1
        self.producer.flush()

    def run(self) -> None:
        chunk = PACE_PER_S // 20
        started = time.monotonic()
        while self.sent < len(self.events):
            self.send(chunk)
            time.sleep(max(0.0, started + (self.sent - BACKLOG) / PACE_PER_S - time.monotonic()))

    def placement(self) -> dict[str, tuple[int, int]]:
        """txn_id -> (partition, offset), from the broker's produce answers."""
        self.producer.close()
        placed = {}
        for txn_id, future in self.futures:
            meta = future.get(timeout=10)
            placed[txn_id] = (meta.partition, meta.offset)
        return placed


class _ScoreReader:
    """Reads the scores topic from the start, keeping every record in arrival order."""

    def __init__(self, settings: Settings, topic: str, fingerprint: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.fingerprint = fingerprint
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        self.consumer.assign([TopicPartition(topic, p) for p in (0, 1)])
        self.records: list[Score] = []
        self._taken = 0  # records already returned by until_quiet

    def poll(self) -> int:
        """Reads what is there; the number of new records."""
        new = 0
        for batch in self.consumer.poll(timeout_ms=100).values():
            for record in batch:
                body = json.loads(record.value)
                assert record.key == body["txn_id"].encode()
                assert body["model"] == self.fingerprint
                self.records.append((body["txn_id"], body["score"]))
                new += 1
        return new

    def wait_for(self, count: int, worker: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.records) < count:
            self.poll()
            if worker.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.records)} of {count} scores; worker exit code {worker.returncode}; "
                    f"its log: {log.read_text()[-3000:]}"
                )

    def until_quiet(self, quiet_s: float, at_least: int = 0, timeout_s: float = 30.0) -> list[Score]:
        """Reads until nothing new came for `quiet_s` (and at least `at_least` records
        are in); the records not returned by an earlier call."""
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll():
                last_new = time.monotonic()
            elif time.monotonic() - last_new > quiet_s and len(self.records) >= at_least:
                break
        taken, self._taken = self._taken, len(self.records)
        return self.records[taken:]

    def close(self) -> None:
        self.consumer.close()


def _committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets (0 where none): what a restarted worker resumes from."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    committed = {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1)}
    consumer.close()
    return committed


def _start_worker(argv: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.env_vars()}
    with open(log, "wb") as err:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)


def _worker_argv(
    settings: Settings, serve: ServeProcess, model: Path, in_topic: str, out_topic: str, group: str
) -> list[str]:
    return [
        sys.executable, "-m", "featureline.cli", "worker", "--repo", str(settings.repo),
        "--model", str(model), "--serving", serve.grpc_target,
        "--in-topic", in_topic, "--out-topic", out_topic, "--group-id", group,
        "--max-batch", str(MAX_BATCH), "--inflight", str(INFLIGHT), "--idle-exit-s", str(IDLE_EXIT_S),
    ]  # fmt: skip


def _events(layout: FeatureLayout, online: EntityDomain) -> list[tuple[str, bytes]]:
    names = [name for name, _ in layout.entity_fields]
    rows = request_rows(layout, online, REQUESTS, seed=17)
    events = []
    for i, row in enumerate(rows):
        txn_id = f"crash-{i}"
        events.append((txn_id, json.dumps({"txn_id": txn_id, **dict(zip(names, row, strict=True))}).encode()))
    return events


def _kill_after_first_commit(
    argv: list[str],
    settings: Settings,
    producer: _PacedProducer,
    scores: _ScoreReader,
    group: str,
    log: Path,
) -> float:
    """Starts the worker, starts the paced stream once it scores, SIGKILLs the worker as
    at a random moment after its group first committed offsets; seconds from its first
    score to the kill."""
    from kafka import KafkaConsumer, TopicPartition

    worker = _start_worker(argv, settings, log)
    # Reads the group's offsets without joining it (no subscribe): no 20 s join.
    watcher = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    tps = [TopicPartition(producer.topic, p) for p in (0, 1)]
    try:
        scores.wait_for(1, worker, log, WORKER_START_TIMEOUT_S)
        first_score = time.monotonic()
        producer.start()
        while not any(watcher.committed(tp) for tp in tps):
            assert worker.poll() is None and time.monotonic() - first_score < 30, log.read_text()[-3000:]
            time.sleep(0.02)
        # Anywhere in the commit interval: scores written but not yet committed, batches
        # in flight, requests read but not batched are all there to lose.
        time.sleep(random.uniform(0.0, COMMIT_INTERVAL_S))
        killed = time.monotonic()
    finally:
        worker.kill()
        worker.wait(10)
        watcher.close()
    assert worker.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    return killed - first_score


def test_a_worker_killed_mid_stream_and_restarted_loses_no_request(
    served: ServeProcess,
    workers_settings: Settings,
    layout: FeatureLayout,
    online: EntityDomain,
    trained: TrainResult,
    tmp_path: Path,
) -> None:
    from featureline.cli.devstack import ensure_topic

    run_id = random.getrandbits(24)
    in_topic, out_topic, group = f"crash-scoring-{run_id}", f"crash-scores-{run_id}", f"crash-{run_id}"
    argv = _worker_argv(workers_settings, served, trained.path, in_topic, out_topic, group)
    for topic in (in_topic, out_topic, f"{in_topic}.dlq"):
        ensure_topic(workers_settings, topic, 2)
    producer = _PacedProducer(workers_settings, in_topic, _events(layout, online))
    producer.send(BACKLOG)
    scores = _ScoreReader(workers_settings, out_topic, trained.meta.fingerprint)
    try:
        took = _kill_after_first_commit(
            argv, workers_settings, producer, scores, group, tmp_path / "worker-1.log"
        )
        first = scores.until_quiet(1.0)  # what the killed worker got to the broker
        at_kill = _committed(workers_settings, group, in_topic)
        restarted = _start_worker(argv, workers_settings, tmp_path / "worker-2.log")
        try:
            # It exits by itself once the stream is done (--idle-exit-s), printing its figures.
            out, _ = restarted.communicate(timeout=WORKER_START_TIMEOUT_S + 30)
        finally:
            restarted.kill()  # only if it did not exit by itself
            restarted.wait(10)
        assert restarted.returncode == 0, (tmp_path / "worker-2.log").read_text()[-3000:]
        producer.join(5)
        placed = producer.placement()
        after_commit = {t for t, (p, offset) in placed.items() if offset >= at_kill[p]}
        second = scores.until_quiet(1.0, at_least=len(first) + len(after_commit))
    finally:
        scores.close()

    assert producer.sent == REQUESTS and len(set(placed.values())) == REQUESTS
    assert 0 < sum(at_kill.values()) < REQUESTS  # killed after a commit, mid-stream
    assert json.loads(out.splitlines()[-1])["scored"] == len(second)
    # What the first worker had written past its last commit: at most what it writes
    # between two commits (1 s apart; up to ~2 s while the consumer waits for room in
    # the pipeline's queue) plus the batches in flight.
    max_duplicated = len(first) / took * 2 * COMMIT_INTERVAL_S + MAX_BATCH * INFLIGHT
    duplicated = _check_at_least_once(set(placed), after_commit, first, second, max_duplicated)
    # The restarted worker committed everything: a third one would have nothing to do.
    produced = {p: sum(1 for q, _ in placed.values() if q == p) for p in (0, 1)}
    assert _committed(workers_settings, group, in_topic) == produced
    print(
        f"crash test: {sum(at_kill.values())} committed at the kill, {len(first)} scores before, "
        f"{len(second)} after, {duplicated} duplicated (at most {max_duplicated:.0f}), "
        f"killed {took:.2f} s after the first score"
    )


def _check_at_least_once(
    produced: set[str], after_commit: set[str], first: list[Score], second: list[Score], max_duplicated: float
) -> int:
    """The killed run's and the restarted run's scores against the requests produced
    and those after the kill-time commit; the number of duplicated requests."""
    first_ids, second_ids = Counter(t for t, _ in first), Counter(t for t, _ in second)
    assert max(first_ids.values()) == 1 and max(second_ids.values()) == 1  # no run scores twice
    # Everything committed had been written; the restart resumed exactly at the commit.
    assert produced - after_commit <= set(first_ids)
    assert set(second_ids) == after_commit
    # At-least-once: nothing lost, repeats only among the requests after the commit
    # that the first worker had already scored, each with the same score both times.
    assert set(first_ids) | set(second_ids) == produced
    duplicated = set(first_ids) & set(second_ids)
    assert duplicated == set(first_ids) & after_commit
    assert len(duplicated) <= max_duplicated
    assert {t: s for t, s in first if t in duplicated} == {t: s for t, s in second if t in duplicated}
    return len(duplicated)
