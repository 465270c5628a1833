"""The streaming job end to end: real Tansu broker, real Redis, Beam DirectRunner, run
as `featureline stream` subprocesses. Online aggregates must equal the naive oracle
exactly at query time, also after repeated SIGKILLs."""

from __future__ import annotations

import json
import random
import signal
import time
from typing import Any

import orjson
import pytest
from serve_process import ServerProcess
from stream_helpers import (
    StreamCase,
    assert_online_equals_oracle,
    dlq_messages,
    make_events,
    now_us,
    offline_rows,
    send,
    stop_job,
    wait_applied,
)

from featureline.semantics import US

pytestmark = pytest.mark.beam
HOUR_US = 3600 * US


BAD = [
    (0, b'{"txn_id": "x", "user_id": 1,'),  # malformed JSON
    (1, orjson.dumps({"txn_id": "y", "user_id": 2, "merchant_id": "m1", "currency": "EUR",
                      "country": "DE", "event_timestamp": "2026-01-01T00:00:00Z"})),  # no amount
    (2, orjson.dumps({"txn_id": "z", "user_id": 3, "merchant_id": "m1", "amount": "lots",
                      "currency": "EUR", "country": "DE",
                      "event_timestamp": "2026-01-01T00:00:00Z"})),  # mistyped
    (0, orjson.dumps({"txn_id": "w", "user_id": None, "merchant_id": "m1", "amount": 1.0,
                      "currency": "EUR", "country": "DE",
                      "event_timestamp": "2026-01-01T00:00:00Z"})),  # null key
    (1, orjson.dumps({"txn_id": "v", "user_id": 4, "merchant_id": "m1", "amount": 1.0,
                      "currency": "EUR", "country": "DE",
                      "event_timestamp": "2099-01-01T00:00:00Z"})),  # far future
]  # fmt: skip
BAD_ERRORS = ["malformed JSON", "missing field(s): amount", "field 'amount': expected double",
              "field 'user_id' is null", "in the future"]  # fmt: skip


@pytest.mark.spread_functions  # var/variance/std/stddev too (tests/spread_repo.py)
def test_online_equals_oracle_with_late_and_dead_letters(
    stream_case: StreamCase, redis_client: Any, stream_server: ServerProcess, tmp_path: Any
) -> None:
    rng = random.Random(7)
    t_sent = now_us()
    first = make_events(rng, 1500, users=25, t0_us=t_sent, old=20)
    last = send(stream_case, first, BAD)
    stats = tmp_path / "stats.json"
    # Two worker processes share the partitions (--workers): stats are merged on exit.
    # A first join on Tansu takes half the session timeout (measured:
    # 5.0 s at the default 10 s, 2.0 s at 4 s); 4 s as in test_rebalance.
    job = stream_case.start_job("--stats-file", str(stats), "--max-records", "300", "--workers", "2",
                                "--session-timeout-s", "4")  # fmt: skip
    try:
        wait_applied(redis_client, stream_case, last, job)
        assert assert_online_equals_oracle(stream_server, stream_case, first) > 0
        # More out-of-order events while the job runs.
        second = make_events(rng, 700, users=30, t0_us=t_sent)
        last = send(stream_case, second)
        wait_applied(redis_client, stream_case, last, job)
        events = first + second
        assert_online_equals_oracle(stream_server, stream_case, events)
    finally:
        err = stop_job(job)
    assert "stopped after" in err
    summary = json.loads(stats.read_text())
    assert summary["events"] == len(events)
    assert summary["dead_letters"] == len(BAD)
    late = summary["late_events_by_view"]
    assert late["user_txn_stats"] == 20  # the 3-day-old ones
    # merchant_txn_stats (1 h window, 1 min tiles) keeps tiles 1 h + 1 min + 1 h margin.
    keep_us = (3600 + 60 + stream_case.settings.tile_retention_margin_s) * US
    ages = [t_sent - e["_ts_us"] for e in events]
    assert sum(a > keep_us + 120 * US for a in ages) <= late["merchant_txn_stats"]
    assert late["merchant_txn_stats"] <= sum(a > keep_us - 120 * US for a in ages)
    # Every valid event once offline, with its Kafka identity; the same columns the
    # generator writes for batch backfills.
    from featureline.cli.generator import RAW_SCHEMA

    table = offline_rows(stream_case)
    assert table.num_rows == len(events)
    ids = set(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True))
    assert len(ids) == len(events)
    assert sorted(table["txn_id"].to_pylist()) == sorted(e["txn_id"] for e in events)
    for field in RAW_SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    letters = dlq_messages(stream_case)
    assert sorted(m.value for m in letters) == sorted(raw for _, raw in BAD)
    for m in letters:
        headers = dict(m.headers)
        assert m.key == f"{stream_case.topic}/{int(headers['partition'])}/{int(headers['offset'])}".encode()
        expected = BAD_ERRORS[[raw for _, raw in BAD].index(m.value)]
        assert expected in headers["error"].decode(), headers["error"]


# On the cluster too (issue 13): tile applies are per-key compare-and-set on each key's
# own applied-offset mark, so a kill between two keys' writes must still replay exactly.
# One kill there, not three: each round streams 12,000 events (~50 s on a loaded 2-core
# machine); the three rounds of one node cover kills at different points.
@pytest.mark.parametrize(("online_kind", "rounds"), [("redis", 3), ("redis_cluster", 1)])
def test_sigkill_and_restart_neither_lose_nor_double_count(
    stream_case: StreamCase, online_client: Any, stream_server: ServerProcess, rounds: int
) -> None:
    rng = random.Random(11)
    events: list[dict[str, Any]] = []
    kills = 0
    args = ("--max-records", "400", "--flush-s", "0.3")
    job = None
    for round_ in range(rounds):
        batch = make_events(rng, 12_000, users=40, t0_us=now_us())
        last = send(stream_case, batch)
        events += batch
        job = stream_case.start_job(*args)
        marks = _wait_progress(online_client, stream_case)
        time.sleep(rng.uniform(0.0, 0.6))
        if _marks(online_client, stream_case) == last:
            pytest.fail(f"round {round_}: the job finished before the kill; raise the event count")
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=10)
        kills += 1
        assert marks  # it made progress before the kill
    job = stream_case.start_job(*args)
    try:
        wait_applied(online_client, stream_case, last, job, timeout_s=90)
        assert_online_equals_oracle(stream_server, stream_case, events)
    finally:
        stop_job(job)
    assert kills == rounds
    table = offline_rows(stream_case)
    ids = list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == len(events)


def _marks(client: Any, case: StreamCase) -> dict[int, int]:
    from featureline.online.tiles import offsets_key

    out = {}
    for p in range(3):
        raw = client.get(offsets_key(case.project, case.topic, p))
        if raw is not None:
            out[p] = int(raw)
    return out


def _wait_progress(client: Any, case: StreamCase, timeout_s: float = 60) -> dict[int, int]:
    before = _marks(client, case)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _marks(client, case)
        if now != before:
            return now
        time.sleep(0.05)
    raise AssertionError("the job made no progress")
