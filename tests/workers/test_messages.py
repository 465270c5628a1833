"""Scoring requests, score records and commit bookkeeping (pure logic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featureline.serving_api.workers.messages import (
    CommitTracker,
    Rejected,
    ScoringRequest,
    entity_columns,
    parse_request,
    score_records,
)

FIELDS = [("user_id", "int64"), ("merchant_id", "string")]


def _event(**fields: object) -> bytes:
    base: dict[str, object] = {"txn_id": "t1", "user_id": 7, "merchant_id": "m-1", "amount": 9.5}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_a_transaction_event_becomes_a_request_with_the_layouts_fields() -> None:
    request = parse_request(_event(), FIELDS, received_ns=123, partition=2, offset=40)
    assert request == ScoringRequest("t1", (7, "m-1"), 123, 2, 40)


def test_events_that_cannot_be_scored_are_rejected_with_the_reason() -> None:
    cases = {
        b"{not json": "not JSON",
        b"[1, 2]": "not a JSON object",
        _event(txn_id=None): "'txn_id'",
        _event(user_id=None): "'user_id' is missing or not int64",
        _event(user_id="7"): "'user_id' is missing or not int64",
        _event(user_id=True): "'user_id' is missing or not int64",
        _event(merchant_id=5): "'merchant_id' is missing or not string",
        b"\xff\xfe": "not JSON",
    }
    for raw, reason in cases.items():
        rejected = parse_request(raw, FIELDS, received_ns=0, partition=1, offset=9)
        assert isinstance(rejected, Rejected), raw
        assert (rejected.partition, rejected.offset) == (1, 9)
        assert reason in rejected.reason, (raw, rejected.reason)


def test_requests_become_entity_columns_in_field_order() -> None:
    requests = [ScoringRequest(f"t{i}", (i, f"m{i}"), 0, 0, i) for i in range(3)]
    assert entity_columns(requests, FIELDS) == {"user_id": [0, 1, 2], "merchant_id": ["m0", "m1", "m2"]}


@pytest.mark.parametrize("ids", ["txn-{}", 't"{}', "tx\\n{}", "été-{}", "line\n{}"])
def test_score_records_are_json_and_round_trip_float32_scores_exactly(ids: str) -> None:
    scores = np.random.default_rng(0).random(200).astype(np.float32)
    requests = [ScoringRequest(ids.format(i), (i, "m"), 1_000_000, 0, i) for i in range(200)]
    records = [json.loads(r) for r in score_records(requests, scores, "abcd", done_ns=3_500_000)]
    assert [r["txn_id"] for r in records] == [r.txn_id for r in requests]
    assert np.array_equal(np.array([r["score"] for r in records], dtype=np.float32), scores)
    assert {r["model"] for r in records} == {"abcd"}
    assert {r["latency_ms"] for r in records} == {2.5}


def _requests(partition: int, offsets: range) -> list[ScoringRequest]:
    return [ScoringRequest("t", (), 0, partition, o) for o in offsets]


def test_offsets_are_committed_only_up_to_the_first_unfinished_batch() -> None:
    tracker = CommitTracker()
    first = tracker.open(_requests(0, range(0, 10)) + _requests(1, range(0, 5)))
    second = tracker.open(_requests(0, range(10, 20)))
    third = tracker.open(_requests(1, range(5, 8)))
    tracker.done(second)
    tracker.done(third)
    assert tracker.take() == {}  # the first batch is still out: nothing is safe
    tracker.done(first)
    assert tracker.take() == {0: 20, 1: 8}
    assert tracker.take() == {}
    assert len(tracker) == 0
