"""A StreamFeatureView udf that raises (or returns too little) does not fail the job:
the events it refuses go to `<topic>.dlq`, the others are applied exactly once.

Unit tests of the bisection on a parsed batch; then the job end to end on a repo copy
with such a view, real broker and Redis."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
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
    served_latest,
)

from benchmarks.stream.repo import isolated_repo
from featureline.offline import read_table
from featureline.settings import Settings
from featureline.specs import FieldSpec, KafkaSourceSpec, ViewSpec
from featureline.streaming.batches import RawBatch
from featureline.streaming.parse import BatchParser
from featureline.streaming.schema import source_schema
from featureline.streaming.udf import ViewInputs

# Raises on currency XXX; drops its declared output on currency YYY.
UDF_SOURCE = """
@stream_feature_view(
    entities=[user],
    ttl=timedelta(days=7),
    mode="pandas",
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="amount", dtype=Float64),
        Field(name="amount_x2", dtype=Float64),
    ],
    timestamp_field="event_timestamp",
    source=transactions_stream,
)
def user_amount_x2(df):
    if (df["currency"] == "XXX").any():
        raise ValueError("poisoned currency XXX")
    df["amount_x2"] = df["amount"] * 2
    if (df["currency"] == "YYY").any():
        return df.drop(columns=["amount_x2"])
    return df
"""
RAISES = "udf of stream feature view 'user_amount_x2' raised ValueError: poisoned currency XXX"
NO_COLUMN = "udf of stream feature view 'user_amount_x2' returned no column(s) amount_x2"


# --- the bisection, on a parsed batch (no services) ------------------------------------

SOURCE = KafkaSourceSpec(
    name="tx", bootstrap_servers="", topic="tx", message_format="json",
    schema="user_id long, currency string, amount double, event_timestamp timestamp",
    timestamp_field="event_timestamp",
)  # fmt: skip
UDF_VIEW = ViewSpec(
    name="user_amount_x2", kind="stream", entities=("user",),
    join_keys=(FieldSpec("user_id", "int64"),),
    features=(FieldSpec("amount", "float64"), FieldSpec("amount_x2", "float64")),
    ttl_s=0, timestamp_field="event_timestamp", stream_source=SOURCE, udf_source=UDF_SOURCE,
)  # fmt: skip


def _batch(currencies: list[str]) -> Any:
    values = [
        orjson.dumps(
            {"user_id": i, "currency": c, "amount": float(i), "event_timestamp": "2026-09-21T10:00:00Z"}
        )  # fmt: skip
        for i, c in enumerate(currencies)
    ]
    schema = source_schema([UDF_VIEW])
    raw = RawBatch("tx", 2, list(range(100, 100 + len(values))), values, [1000] * len(values))
    return BatchParser(schema, now=lambda: 1_790_000_000.0).parse(raw), schema


@pytest.mark.parametrize("bad_at", [[], [0], [7], [3, 4, 12], list(range(16))])
def test_only_the_events_the_udf_refuses_are_dead_lettered(bad_at: list[int]) -> None:
    currencies = [("YYY" if i % 2 else "XXX") if i in bad_at else "EUR" for i in range(16)]
    batch, schema = _batch(currencies)
    views = ViewInputs([UDF_VIEW], schema.raw_arrow_schema()).prepare(batch)
    table = views.tables["user_amount_x2"]
    good = [i for i in range(16) if i not in bad_at]
    assert table["user_id"].to_pylist() == good
    assert table["amount_x2"].to_pylist() == [2.0 * i for i in good]
    # The identity columns survive the pandas round trip with their types.
    assert table.schema.field("event_timestamp").type == batch.table.schema.field("event_timestamp").type
    assert table["kafka_offset"].to_pylist() == [100 + i for i in good]
    assert [d.offset for d in views.dead] == [100 + i for i in bad_at]
    for d in views.dead:
        i = d.offset - 100
        assert (d.topic, d.partition, d.raw) == ("tx", 2, batch.raw_value(d.offset))
        assert d.error == (RAISES if currencies[i] == "XXX" else NO_COLUMN)


def test_a_udf_that_cannot_compile_fails_at_start() -> None:
    from featureline.errors import BadInputError

    view = dataclasses.replace(UDF_VIEW, udf_source="def f(df):\n    return nope(df)\n")
    with pytest.raises(BadInputError, match="nope"):
        ViewInputs([view], source_schema([UDF_VIEW]).raw_arrow_schema())


# --- end to end --------------------------------------------------------------------------


@pytest.fixture
def udf_case(stack: Settings, tmp_path: Path) -> Iterator[StreamCase]:
    """The demo repo copy of stream_case, plus the udf view above."""
    from featureline.cli.devstack import ensure_topic
    from featureline.repo import load_repo

    name = f"su{uuid.uuid4().hex[:8]}"
    settings = isolated_repo(dataclasses.replace(stack, repo=DEMO_REPO), tmp_path, name)
    features = settings.repo / "features.py"
    features.write_text(
        features.read_text()
        + "\n\nfrom feast.stream_feature_view import stream_feature_view\n\n"
        + UDF_SOURCE
    )
    ensure_topic(settings, name, 3)
    yield StreamCase(settings, load_repo(settings), name)


@pytest.mark.beam
def test_udf_failures_go_to_the_dlq_and_the_job_goes_on(
    udf_case: StreamCase, redis_client: Any, tmp_path: Path
) -> None:
    rng = random.Random(5)
    events = make_events(rng, 1200, users=30, t0_us=now_us())
    for e in rng.sample(events, 40):
        e["currency"] = rng.choice(["XXX", "YYY"])
    bad = [e for e in events if e["currency"] in ("XXX", "YYY")]
    good = [e for e in events if e["currency"] not in ("XXX", "YYY")]
    # Small batches: most batches hold a bad event, many also good ones. Stopped once
    # every offset is applied: an --idle-exit-s of 3 s, counted from start-up, once ended
    # the job after 1 of its 40 dead letters on a busy 2-core machine.
    summary = run_until_applied(
        redis_client, udf_case, events, tmp_path / "stats.json", "--max-records", "60"
    )
    assert summary["dead_letters"] == len(bad)
    assert summary["events"] == len(good)
    # Read through `featureline serve`: the views without udf have every event, exactly
    # once; the udf view has the good ones, with amount_x2 = 2 * amount.
    server = start_server(udf_case.settings)
    try:
        assert_online_equals_oracle(server, udf_case, events)
        doubled_events = [{**e, "amount_x2": None if e["amount"] is None else 2 * e["amount"]}
                          for e in good]  # fmt: skip
        assert served_latest(server, udf_case.repo.view("user_amount_x2"), doubled_events, "rest") > 0
        assert served_latest(server, udf_case.repo.view("user_amount_x2"), doubled_events, "grpc") > 0
    finally:
        server.stop()
    by_txn = {e["txn_id"]: e for e in bad}
    letters = dlq_messages(udf_case)
    assert sorted(m.value for m in letters) == sorted(orjson.dumps(_payload(e)) for e in bad)
    for m in letters:
        headers = {k: v.decode() for k, v in m.headers}
        event = by_txn[orjson.loads(m.value)["txn_id"]]
        assert headers["error"] == (RAISES if event["currency"] == "XXX" else NO_COLUMN)
        assert m.key.decode() == f"{udf_case.topic}/{headers['partition']}/{headers['offset']}"
    # Offline: the view's computed rows are the good events, once each.
    rows = read_table(udf_case.settings.resolved_offline_dir / "user_amount_x2")
    ids = list(zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == len(good)
    ts_us = pc.cast(rows["event_timestamp"], pa.int64()).to_pylist()
    got_rows = sorted(
        zip(rows["user_id"].to_pylist(), ts_us, rows["amount"].to_pylist(), strict=True), key=repr
    )
    assert got_rows == sorted(((e["user_id"], e["_ts_us"], e["amount"]) for e in good), key=repr)
    doubled = pc.multiply(rows["amount"], pa.scalar(2.0))
    assert rows["amount_x2"].to_pylist() == doubled.to_pylist()


def _payload(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}
