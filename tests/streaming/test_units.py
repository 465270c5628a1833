"""Pure logic of the streaming job (no services), and the shared LWW writer on real Redis."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pyarrow as pa
import pytest
from tile_figures import oracle_tiles, same_figures, state_figures

from featureline.aggregations import DISTINCT, AggState
from featureline.offline import TS_TYPE
from featureline.online.feast_format import decode_timestamp, decode_value, feature_field
from featureline.online.tiles import tile_field, tile_key_for, tile_parts
from featureline.online.writer import LatestRow, LatestValueWriter, reduce_latest
from featureline.semantics import US, tile_start_us
from featureline.specs import AggregationSpec, FieldSpec, KafkaSourceSpec, ViewSpec
from featureline.streaming.batches import RawBatch
from featureline.streaming.parse import BatchParser
from featureline.streaming.schema import parse_ddl, source_schema
from featureline.streaming.tiles import key_encoder, view_update

NOW_US = 1_790_000_000 * US
SOURCE = KafkaSourceSpec(
    name="tx", bootstrap_servers="", topic="tx", message_format="json",
    schema="user_id long, merchant_id string, amount double, event_timestamp timestamp",
    timestamp_field="event_timestamp",
)  # fmt: skip
AGG_VIEW = ViewSpec(
    name="stats", kind="stream", entities=("user",), join_keys=(FieldSpec("user_id", "int64"),),
    features=(), ttl_s=0, timestamp_field="event_timestamp", stream_source=SOURCE,
    aggregations=(
        AggregationSpec("amount", "sum", 3600, 0, "sum_1h"),
        AggregationSpec("amount", "max", 600, 60, "max_10m"),
        AggregationSpec("merchant_id", "count_distinct", 86400, 0, "d_24h"),
        AggregationSpec("amount", "var", 3600, 0, "var_1h"),  # shares sum_1h's tiles
        AggregationSpec("amount", "stddev", 600, 60, "std_10m"),
    ),
    input_fields=(FieldSpec("amount", "float64"), FieldSpec("merchant_id", "string")),
)  # fmt: skip
LATEST_VIEW = ViewSpec(
    name="last", kind="stream", entities=("user",), join_keys=(FieldSpec("user_id", "int64"),),
    features=(FieldSpec("amount", "float64"), FieldSpec("merchant_id", "string")), ttl_s=0,
    timestamp_field="event_timestamp", stream_source=SOURCE,
)  # fmt: skip


def _parser() -> BatchParser:
    return BatchParser(source_schema([AGG_VIEW, LATEST_VIEW]), now=lambda: NOW_US / US)


def _raw(values: list[bytes], start: int = 0) -> RawBatch:
    n = len(values)
    return RawBatch("tx", 1, list(range(start, start + n)), list(values), [1000 * i for i in range(n)])


def test_parse_keeps_valid_rows_and_dead_letters_each_bad_one() -> None:
    good = {"user_id": 1, "merchant_id": "m", "amount": 2.5, "event_timestamp": "2026-09-21T10:00:00Z"}
    values = [
        orjson.dumps(good),
        b"{oops",
        orjson.dumps({**good, "amount": "x"}),
        orjson.dumps({k: v for k, v in good.items() if k != "merchant_id"}),
        orjson.dumps({**good, "user_id": None}),
        orjson.dumps({**good, "event_timestamp": "2099-01-01T00:00:00"}),
        orjson.dumps({**good, "event_timestamp": "2026-09-21T12:00:00+02:00", "amount": None}),
        orjson.dumps({**good, "event_timestamp": 1_790_000_000.5}),
        orjson.dumps([1, 2]),
    ]
    parsed = _parser().parse(_raw(values, start=10))
    assert parsed.table["kafka_offset"].to_pylist() == [10, 16, 17]
    assert parsed.table["amount"].to_pylist() == [2.5, None, 2.5]
    ts = parsed.table["event_timestamp"].cast(pa.int64()).to_pylist()
    assert ts[0] == ts[1]  # 12:00+02:00 is 10:00 UTC
    assert ts[2] == 1_790_000_000_500_000
    assert parsed.table["created"].type == TS_TYPE
    errors = {d.offset: d.error for d in parsed.dead}
    assert sorted(errors) == [11, 12, 13, 14, 15, 18]
    assert "malformed JSON" in errors[11]
    assert "field 'amount'" in errors[12]
    assert "missing field(s): merchant_id" in errors[13]
    assert "'user_id' is null" in errors[14]
    assert "in the future" in errors[15]
    assert "not a JSON object" in errors[18]
    assert parsed.dead[0].raw == b"{oops"


def test_ddl_names_the_bad_entry() -> None:
    from featureline.errors import BadInputError

    assert parse_ddl("a long, b timestamp", "s") == (("a", pa.int64()), ("b", TS_TYPE))
    with pytest.raises(BadInputError, match="'b decimal'"):
        parse_ddl("a long, b decimal", "s")


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "merchant_id": pa.array([r["merchant_id"] for r in rows], pa.string()),
        "amount": pa.array([r["amount"] for r in rows], pa.float64()),
        "event_timestamp": pa.array([r["ts"] for r in rows], pa.int64()).cast(TS_TYPE),
        "created": pa.array([r["created"] for r in rows], pa.int64()).cast(TS_TYPE),
    })  # fmt: skip


def _rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    return [
        {"user_id": rng.randrange(5), "merchant_id": rng.choice(["a", "b", None]),
         "amount": None if rng.random() < 0.1 else rng.choice([0.1, 1e-300, 3.75, -2.0, 1e20, 1e9 + 1]),
         "ts": NOW_US - rng.randrange(0, 30 * 3600 * US), "created": rng.randrange(10) * US}
        for _ in range(n)
    ]  # fmt: skip


def test_vectorized_tiles_equal_event_by_event_states() -> None:
    rng = random.Random(3)
    rows = _rows(rng, 2000)
    update = view_update("p", AGG_VIEW, _table(rows), 4, now_us=NOW_US, margin_s=3600)
    encode = key_encoder("p", AGG_VIEW)
    by_tile: dict[int, list[AggregationSpec]] = {}
    for agg in AGG_VIEW.aggregations:  # tiles: 60 s (max), 300 s (sum 1 h), 3600 s (distinct)
        by_tile.setdefault(agg.tile_s, []).append(agg)
    assert sorted(by_tile) == [60, 300, 3600]
    expected: dict[tuple[bytes, bytes], dict[str, AggState]] = {}
    late = 0
    for r in rows:
        kept_any = False
        for tile_s, aggs in by_tile.items():
            start = tile_start_us(r["ts"], tile_s)
            window_s = max(a.window_s for a in aggs)
            if start + (window_s + tile_s + 3600) * US <= NOW_US:
                continue  # older than w + s + margin: no window can still ask for it
            kept_any = True
            ekey = encode((r["user_id"],))
            ident = (tile_key_for("p", "stats", tile_s, ekey), tile_field(start // US, 4))
            for column, parts in tile_parts(AGG_VIEW, tile_s).items():
                state = expected.setdefault(ident, {}).setdefault(column, AggState())
                state.add(r[column], parts=parts)
        late += not kept_any
    assert update.tiles == expected
    assert update.late_events == late > 0


def test_stream_tiles_equal_the_oracles_figures() -> None:
    """The stream job's tiles hold the naive oracle's exact figures: counts, sums and,
    for var/std, the exact sum of exact squares (1e9 + 1 among the values)."""
    rows = _rows(random.Random(8), 1500)
    update = view_update("p", AGG_VIEW, _table(rows), 4, now_us=NOW_US, margin_s=10 * 86400)
    encode = key_encoder("p", AGG_VIEW)
    events = [{**r, "_ts_us": r["ts"]} for r in rows]
    want = oracle_tiles(AGG_VIEW, events)
    assert len(update.tiles) == len(want)
    for (user, tile_s, start_s), figures in want.items():
        ident = (tile_key_for("p", "stats", tile_s, encode((user,))), tile_field(start_s, 4))
        assert same_figures(state_figures(AGG_VIEW, tile_s, update.tiles[ident]), figures)


def test_latest_rows_take_largest_event_then_created() -> None:
    rows = [
        {"user_id": 1, "merchant_id": "a", "amount": 1.0, "ts": 5, "created": 1},
        {"user_id": 1, "merchant_id": "b", "amount": 2.0, "ts": 5, "created": 3},
        {"user_id": 1, "merchant_id": "c", "amount": 3.0, "ts": 4, "created": 9},
        {"user_id": 2, "merchant_id": None, "amount": None, "ts": 1, "created": 0},
    ]
    update = view_update("p", LATEST_VIEW, _table(rows), 0, now_us=NOW_US, margin_s=0)
    got = {r.redis_key: (r.event_us, r.created_us, dict(r.values)) for r in update.latest}
    encode = key_encoder("p", LATEST_VIEW)
    assert got == {
        encode((1,)): (5, 3, {"amount": 2.0, "merchant_id": "b"}),
        encode((2,)): (1, 0, {"amount": None, "merchant_id": None}),
    }


def test_lww_writer_keeps_the_newest_row_in_feast_format(redis_client: Any) -> None:
    writer = LatestValueWriter(redis_client, LATEST_VIEW)
    key = key_encoder("p", LATEST_VIEW)((7,))

    def row(event_us: int, created_us: int | None, amount: float) -> LatestRow:
        return LatestRow(key, event_us, created_us, {"amount": amount, "merchant_id": "m"})

    assert writer.write([row(2_000_000, 5, 1.0)]) == 1
    assert writer.write([row(1_000_000, 99, 2.0)]) == 0  # older event: ignored
    assert writer.write([row(2_000_000, 4, 3.0)]) == 0  # same event, older created
    assert writer.write([row(2_000_000, None, 3.5)]) == 0  # no created loses to any
    assert writer.write([row(2_000_000, 6, 4.0)]) == 1  # newer created wins
    assert writer.write([row(2_000_000, 6, 4.0)]) == 1  # a replay rewrites the same row
    amount = redis_client.hget(key, feature_field("last", "amount"))
    assert decode_value(amount) == 4.0
    assert decode_timestamp(redis_client.hget(key, b"_ts:last")) == 2_000_000
    # Many keys in one call (chunked), each decided on its own.
    rows = [LatestRow(key_encoder("p", LATEST_VIEW)((i,)), i, None, {"amount": float(i)})
            for i in range(1200)]  # fmt: skip
    # key 7 holds a newer row (event 2 s) than the one here (event 7 us)
    assert writer.write(reduce_latest(rows + rows[:10])) == 1199


def test_tile_encoding_round_trips_exactly() -> None:
    from featureline.online.tiles import decode_tile, encode_tile

    rng = random.Random(5)
    for _ in range(200):
        amount = AggState()
        merchant = AggState()
        for _ in range(rng.randrange(0, 6)):
            amount.add(rng.choice([0.1, -3.5, 1e20, 5e-324, 7.0, None]), parts={"sum", "sumsq"})
            merchant.add(rng.choice(["a", "é", None]), parts=(DISTINCT,))
        states = {"amount": amount, "merchant_id": merchant}
        assert decode_tile(encode_tile(states)) == states


def test_avro_messages_parse_like_json() -> None:
    import io

    import fastavro

    schema = {
        "type": "record", "name": "tx",
        "fields": [
            {"name": "user_id", "type": "long"},
            {"name": "merchant_id", "type": ["null", "string"]},
            {"name": "amount", "type": "double"},
            {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }  # fmt: skip
    source = KafkaSourceSpec(
        name="tx", bootstrap_servers="", topic="tx", message_format="avro",
        schema=orjson.dumps(schema).decode(), timestamp_field="event_timestamp",
    )  # fmt: skip
    view = ViewSpec(**{**LATEST_VIEW.__dict__, "stream_source": source})
    parser = BatchParser(source_schema([view]), now=lambda: NOW_US / US)
    out = io.BytesIO()
    record = {"user_id": 3, "merchant_id": None, "amount": 1.5, "event_timestamp": NOW_US}
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    parsed = parser.parse(_raw([out.getvalue(), b"\x01"]))
    assert parsed.table.select(["user_id", "merchant_id", "amount"]).to_pylist() == [
        {"user_id": 3, "merchant_id": None, "amount": 1.5}
    ]
    assert parsed.table["event_timestamp"].cast(pa.int64()).to_pylist() == [NOW_US]
    assert [d.offset for d in parsed.dead] == [1]
    assert "malformed AVRO" in parsed.dead[0].error
