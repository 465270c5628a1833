"""Data-quality expectations in the stream job (featureline.expectations): on the demo
repo, user_last_txn declares `amount >= 0` and `country in DE,FR,NL` with the
dead_letter policy, user_txn_stats declares `amount <= 400` with the count policy.
Events breaking the first go to `<topic>.dlq` with the reason and are applied nowhere;
those breaking the second are counted and applied; what is served equals the oracle
over the events kept."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from serve_process import start_server
from stream_helpers import (
    DEMO_REPO,
    StreamCase,
    assert_online_equals_oracle,
    dlq_messages,
    make_events,
    now_us,
    run_until_applied,
)

from benchmarks.stream.repo import isolated_repo
from featureline.settings import Settings

_AMOUNT = '        Field(name="amount", dtype=Float64),\n'
_COUNTRY = '        Field(name="country", dtype=String),\n'


def _with_expectations(text: str) -> str:
    """The demo's features.py with the tests' expectations on two of its views."""
    stats_at = text.index("user_txn_stats = StreamFeatureView(")
    last_at = text.index("user_last_txn = StreamFeatureView(")
    end = text.index("user_profile = FeatureView(")
    stats, last = text[stats_at:last_at], text[last_at:end]
    assert _AMOUNT in stats and _AMOUNT in last and _COUNTRY in last
    # The first amount field of the slice is user_txn_stats' (merchant_txn_stats follows).
    stats = stats.replace(_AMOUNT, _AMOUNT.replace("Float64)", 'Float64, tags={"dq.max": "400"})'), 1)
    last = last.replace(_AMOUNT, _AMOUNT.replace("Float64)", 'Float64, tags={"dq.min": "0"})'))
    last = last.replace(_COUNTRY, _COUNTRY.replace("String)", 'String, tags={"dq.allowed": "DE,FR,NL"})'))
    last = last.replace(
        'tags={"freshness_slo": "1m"}', 'tags={"freshness_slo": "1m", "dq.policy": "dead_letter"}'
    )
    assert "dq.policy" in last
    return text[:stats_at] + stats + last + text[end:]


@pytest.fixture
def dq_case(stack: Settings, tmp_path: Path) -> Iterator[StreamCase]:
    from featureline.cli.devstack import ensure_topic
    from featureline.repo import load_repo

    name = f"dq{uuid.uuid4().hex[:8]}"
    settings = isolated_repo(dataclasses.replace(stack, repo=DEMO_REPO), tmp_path, name)
    features = settings.repo / "features.py"
    features.write_text(_with_expectations(features.read_text()))
    ensure_topic(settings, name, 3)
    yield StreamCase(settings, load_repo(settings), name)


@pytest.mark.beam
def test_breaking_events_are_dead_lettered_with_the_reason_or_counted(
    dq_case: StreamCase, redis_client: Any, tmp_path: Path
) -> None:
    assert dq_case.repo.view("user_last_txn").field_tags["amount"] == {"dq.min": "0"}
    rng = random.Random(11)
    events = make_events(rng, 600, users=20, t0_us=now_us())
    for e in rng.sample(events, 15):
        e["amount"] = -5.0
    for e in rng.sample([e for e in events if e["amount"] != -5.0], 10):
        e["country"] = "XX"
    bad = [e for e in events if e["amount"] == -5.0 or e["country"] == "XX"]
    good = [e for e in events if e not in bad]
    over = sum(1 for e in events if e["amount"] is not None and e["amount"] > 400)
    summary = run_until_applied(
        redis_client, dq_case, events, tmp_path / "stats.json", "--max-records", "100"
    )
    assert summary["dead_letters"] == len(bad)
    assert summary["events"] == len(good)
    assert summary["expectation_violations"] == {
        "user_last_txn/amount/min/dead_letter": 15,
        "user_last_txn/country/allowed/dead_letter": 10,
        "user_txn_stats/amount/max/count": over,
    }
    by_txn = {e["txn_id"]: e for e in bad}
    letters = dlq_messages(dq_case)
    assert len(letters) == len(bad)
    for m in letters:
        error = dict(m.headers)["error"].decode()
        event = by_txn[orjson.loads(m.value)["txn_id"]]
        if event["amount"] == -5.0:
            assert error == "expectation failed: view 'user_last_txn', field 'amount' = -5.0 breaks min 0"
        else:
            assert error == (
                "expectation failed: view 'user_last_txn', field 'country' = 'XX' breaks allowed DE,FR,NL"
            )
    # Served (REST and gRPC): every view equals the oracle over the events kept, the
    # counted ones (amount > 400) included.
    server = start_server(dq_case.settings)
    try:
        assert assert_online_equals_oracle(server, dq_case, good) > 0
    finally:
        server.stop()
