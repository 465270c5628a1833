"""Unit tests of the read path's pure parts: plans, reply decoding, tiles, ODFVs, codecs.

Redis replies are built with the shared core's encoders; the integration tests check
the same paths against the real Redis.
"""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest
from oracle.naive import US, aggregate, same, window_start_us
from serving_data import build_tiles

from featureline.errors import BadInputError, NotFoundError
from featureline.odfv import OnDemandError, OnDemandRunner
from featureline.online.feast_format import encode_timestamp, encode_value
from featureline.online.tiles import encode_tile, tile_field
from featureline.serving_api.codec_json import frame_to_feast_dict, frame_to_feast_json
from featureline.serving_api.codec_proto import encode_online_response
from featureline.serving_api.entities import coerce_column
from featureline.serving_api.frame import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT
from featureline.serving_api.online_reader import assemble, prepare
from featureline.serving_api.plans import build_plan
from featureline.serving_api.proto import pb
from featureline.serving_api.tensor import frame_to_tensor
from featureline.specs import (
    AggregationSpec,
    EntitySpec,
    FieldSpec,
    OnDemandViewSpec,
    ProjectionSpec,
    RepoSpec,
    ServiceSpec,
    ViewSpec,
)

DAY_US = 86_400 * US
T = 1_790_000_000 * US + 123_456  # a fixed serving time


def _repo() -> RepoSpec:
    user_key = (FieldSpec("user_id", "int64"),)
    profile = ViewSpec(
        name="profile",
        kind="batch",
        entities=("user",),
        join_keys=user_key,
        features=(FieldSpec("age", "int64"), FieldSpec("limit_eur", "float64")),
        ttl_s=2 * 86_400,
        timestamp_field="event_timestamp",
    )
    aggs = tuple(
        AggregationSpec("amount", fn, 3600, 3600, f"{fn}_1h") for fn in ("count", "sum", "mean", "min", "max")
    ) + (
        AggregationSpec("amount", "sum", 600, 60, "sum_10m"),
        AggregationSpec("merchant", "count_distinct", 86_400, 86_400, "merchants_24h"),
        # var/std: one merged state with sum_1h's tiles, one of their own (10 min / 1 min)
        AggregationSpec("amount", "var", 3600, 3600, "var_1h"),
        AggregationSpec("amount", "stddev", 600, 60, "stddev_10m"),
    )
    stats = ViewSpec(
        name="stats",
        kind="stream",
        entities=("user",),
        join_keys=user_key,
        features=tuple(FieldSpec(a.name, "int64" if "count" in a.function else "float64") for a in aggs),
        ttl_s=86_400,
        timestamp_field="event_timestamp",
        aggregations=aggs,
        input_fields=(FieldSpec("amount", "float64"), FieldSpec("merchant", "string")),
    )
    ratio = OnDemandViewSpec(
        name="ratio",
        mode="python",
        sources=(("profile", ("limit_eur",)),),
        request_fields=(FieldSpec("amount", "float64"),),
        features=(FieldSpec("over", "float64"),),
        udf_name="ratio",
        udf_source=(
            "@on_demand_feature_view(sources=[profile], schema=[], mode='python')\n"
            "def ratio(inputs: dict[str, Any]) -> dict[str, Any]:\n"
            "    return {'over': [a / b if b else None for a, b in\n"
            "                     zip(inputs['amount'], inputs['profile__limit_eur'])]}\n"
        ),
    )
    service = ServiceSpec(
        "svc",
        (
            ProjectionSpec("stats", "stats", ("sum_1h", "count_1h")),
            ProjectionSpec("profile", "profile", ("age",)),
            ProjectionSpec("ratio", "ratio", ("over",)),
        ),
    )
    return RepoSpec(
        project="unit",
        entities={"user": EntitySpec("user", "user_id", "int64")},
        views={"profile": profile, "stats": stats},
        on_demand_views={"ratio": ratio},
        services={"svc": service},
    )


REPO = _repo()
RUNNERS = {n: OnDemandRunner.build(s) for n, s in REPO.on_demand_views.items()}


def _plan(refs: list[str] | None = None, service: str | None = None, full: bool = False):
    return build_plan(REPO, RUNNERS, refs, service, full)


def _hmget(age: int | None, limit: float | None, event_us: int | None) -> list[bytes | None]:
    if event_us is None:
        return [None, None, None]
    return [encode_value("int64", age), encode_value("float64", limit), encode_timestamp(event_us)]


def test_plain_view_statuses_follow_ttl_and_presence() -> None:
    plan = _plan(["profile:age", "profile:limit_eur"])
    ttl = 2 * DAY_US
    prepared = prepare(plan, {"user_id": [1, 2, 3, 4, 5]})
    assert prepared.expected_replies == 5
    replies = [
        _hmget(30, 1.5, T - ttl),  # exactly t - ttl: still valid (semantics.md 1)
        _hmget(31, 2.5, T - ttl - 1),  # one microsecond older: outside max age
        _hmget(None, 3.5, T - 10),  # stored null
        _hmget(None, None, None),  # no row
        _hmget(33, 4.5, T),
    ]
    frame = assemble(prepared, replies, T)
    age, limit = frame.columns
    assert [c.name for c in frame.key_columns] == ["user_id"]
    assert age.statuses == [PRESENT, OUTSIDE_MAX_AGE, NULL_VALUE, NOT_FOUND, PRESENT]
    assert age.values == [30, None, None, None, 33]
    assert limit.values == [1.5, None, 3.5, None, 4.5]
    assert limit.event_us == [T - ttl, T - ttl - 1, T - 10, 0, T]


def test_one_row_json_is_the_frames_json_memoized_or_not() -> None:
    """frame_to_feast_json keeps one-row columns' text by their stored bytes, status
    and event time: the response stays the one frame_to_feast_dict gives, each
    status, on a hit, and when only the event time or the status differs."""
    plan = _plan(["profile:age", "profile:limit_eur"])
    ttl = 2 * DAY_US
    rows = [
        _hmget(30, 1.5, T - ttl),
        _hmget(30, 1.5, T - ttl - 1),  # same bytes, outside max age
        _hmget(30, 1.5, T - 7),  # same bytes, another event time
        _hmget(None, 3.5, T - 10),
        _hmget(None, None, None),
        _hmget(33, float("nan"), T),
    ]
    texts = set()
    for _ in range(2):  # the second round answers from the memo
        for user, reply in enumerate(rows):
            frame = assemble(prepare(plan, {"user_id": [user]}), [list(reply)], T)
            text = frame_to_feast_json(frame)
            assert text == orjson.dumps(frame_to_feast_dict(frame))
            texts.add(text)
    assert len(texts) == len(rows)
    # A stored null served within its ttl, then after it: the same bytes and event
    # time, NULL_VALUE then OUTSIDE_MAX_AGE.
    within, after = (
        assemble(prepare(plan, {"user_id": [9]}), [_hmget(None, 3.5, T - 10)], t_us) for t_us in (T, T + ttl)
    )
    assert within.columns[0].statuses == [NULL_VALUE] and after.columns[0].statuses == [OUTSIDE_MAX_AGE]
    for frame in (within, after):
        assert frame_to_feast_json(frame) == orjson.dumps(frame_to_feast_dict(frame))
    service = assemble(prepare(_plan(service="svc"), {"user_id": [1], "amount": [3.0]}),
                       [_hmget(30, 1.5, T)] + _tile_replies([]), T)  # fmt: skip
    assert frame_to_feast_json(service) == orjson.dumps(frame_to_feast_dict(service))


def test_repeated_entities_are_read_once_and_fanned_out() -> None:
    plan = _plan(["profile:age"])
    prepared = prepare(plan, {"user_id": [7, 8, 7, 7]})
    assert prepared.expected_replies == 2
    replies = [[encode_value("int64", 1), encode_timestamp(T)], [None, None]]
    frame = assemble(prepared, replies, T)
    assert frame.columns[0].values == [1, None, 1, 1]
    assert frame.columns[0].statuses == [PRESENT, NOT_FOUND, PRESENT, PRESENT]


def _tile_replies(events: list[tuple[int, dict]]) -> list[list[bytes]]:
    tiles = build_tiles(REPO.views["stats"], events)
    replies = []
    for tile_s in sorted(tiles):
        flat: list[bytes] = []
        for start, states in tiles[tile_s].items():
            flat += [tile_field(start, random.randrange(3)), encode_tile(states)]
        replies.append(flat)
    return replies


@pytest.mark.parametrize("seed", range(5))
def test_aggregates_equal_the_reference_over_the_window(seed: int) -> None:
    rng = random.Random(seed)
    # Random times over 26 h (denser in the last 2 h), plus each window's edges: its
    # first instant start(t), the instant before it, and t itself.
    times = [T - rng.randrange(0, 26 * 3600 * US) for _ in range(rng.randrange(0, 40))]
    times += [T - rng.randrange(0, 2 * 3600 * US) for _ in range(rng.randrange(0, 40))]
    for agg in REPO.views["stats"].aggregations:
        start = window_start_us(T, agg.window_s, agg.slide_s)
        times += [start, start - 1, T]
    if seed % 2:  # nothing in the last 3 h: the short windows are empty (mean, min, max null)
        times = [t for t in times if t < T - 3 * 3600 * US]
    events = [
        (
            ts,
            {
                # 1e9 + k: a variance where plain float64 arithmetic cancels to garbage
                "amount": rng.choice([None, round(rng.uniform(-50, 500), 2), 1e9 + rng.randrange(1, 4)]),
                "merchant": rng.choice(["a", "b", "c", "d", "e", None]),
            },
        )
        for ts in times
    ]
    plan = _plan([f"stats:{f}" for f in REPO.views["stats"].feature_names])
    prepared = prepare(plan, {"user_id": [1]})
    frame = assemble(prepared, _tile_replies(events), T)
    for agg, col in zip(REPO.views["stats"].aggregations, frame.columns, strict=True):
        start = window_start_us(T, agg.window_s, agg.slide_s)
        inside = [v[agg.column] for ts, v in events if start <= ts <= T]
        want = aggregate(inside, agg.function)
        assert len(col.values) == 1 and same(col.values[0], want), (agg.name, col.values, want)


def test_on_demand_view_runs_on_read_values_and_request_fields() -> None:
    plan = _plan(service="svc", full=True)
    prepared = prepare(plan, {"user_id": [1, 2], "amount": [10.0, 5.0]})
    # profile (plain) for both users, then each user's one tile hash (5-minute tiles).
    replies = [_hmget(40, 4.0, T), _hmget(None, None, None), [], []]
    frame = assemble(prepared, replies, T)
    names = [c.name for c in frame.columns]
    assert names == ["stats__sum_1h", "stats__count_1h", "profile__age", "ratio__over"]
    assert frame.columns[-1].values == [2.5, None]
    assert frame.columns[-1].statuses == [PRESENT, NULL_VALUE]
    assert frame.columns[1].values == [0, 0]  # empty window: count 0 (semantics.md 2)


def test_request_errors_name_the_problem() -> None:
    with pytest.raises(NotFoundError, match="no feature 'nope'"):
        _plan(["profile:nope"])
    with pytest.raises(NotFoundError, match="unknown feature service"):
        _plan(service="nope")
    with pytest.raises(BadInputError, match="missing join key column"):
        prepare(_plan(["profile:age"]), {"merchant": ["x"]})
    with pytest.raises(BadInputError, match="missing request field"):
        prepare(_plan(["ratio:over"]), {"user_id": [1]})
    with pytest.raises(BadInputError, match="different lengths"):
        prepare(_plan(["ratio:over"]), {"user_id": [1], "amount": [1.0, 2.0]})
    with pytest.raises(BadInputError, match="'user_id', row 1: expected an integer"):
        coerce_column("user_id", "int64", [1, "x"], False)
    with pytest.raises(BadInputError, match="int64 range"):
        coerce_column("user_id", "int64", [2**63], False)
    assert coerce_column("user_id", "int64", ["42"], False) == [42]  # as Feast accepts


def test_udf_without_serving_names_is_refused_at_startup() -> None:
    spec = REPO.on_demand_views["ratio"]
    bad = OnDemandViewSpec(**{**spec.__dict__, "udf_source": "def ratio(x):\n    return pd.x\n"})
    with pytest.raises(BadInputError, match="uses pd"):
        OnDemandRunner.build(bad)
    broken = OnDemandViewSpec(
        **{**spec.__dict__, "udf_source": "def ratio(x):\n    return {'over': [1 / 0]}\n"}
    )
    with pytest.raises(OnDemandError, match="ZeroDivisionError"):
        OnDemandRunner.build(broken).run({"amount": [1.0]}, 1)


def test_grpc_response_bytes_parse_as_the_frame() -> None:
    plan = _plan(service="svc")
    prepared = prepare(plan, {"user_id": [1, 2], "amount": [10.0, 5.0]})
    replies = [_hmget(40, 4.0, T), _hmget(None, None, None), [], []]
    frame = assemble(prepared, replies, T)
    message = pb.GetOnlineFeaturesResponse.FromString(encode_online_response(frame))
    assert list(message.metadata.feature_names.val) == frame.feature_names
    for col, vector in zip(frame.all_columns, message.results, strict=True):
        got = [getattr(v, v.WhichOneof("val")) if v.WhichOneof("val") else None
               for v in vector.values]  # fmt: skip
        assert got == col.values
        assert list(vector.statuses) == col.statuses
        assert [t.seconds * US + t.nanos // 1000 for t in vector.event_timestamps] == col.event_us


def test_tensor_keeps_order_masks_missing_and_decodes_exactly() -> None:
    plan = _plan(service="svc")
    prepared = prepare(plan, {"user_id": [1, 2, 3], "amount": [1.0, 2.0, 3.0]})
    age = 2**40 + 1  # exact in float64, not in float32: checks the int decode path
    replies = [_hmget(age, 4.0, T), _hmget(None, None, None), _hmget(-5, 0.0, T), [], [], []]
    frame = assemble(prepared, replies, T)
    parts = frame_to_tensor(frame, fill=-1.0)
    assert parts.column_names == ["sum_1h", "count_1h", "age", "over"]
    assert parts.values.dtype == np.float32 and parts.values.shape == (3, 4)
    assert parts.values[:, 2].tolist() == [np.float32(age), -1.0, -5.0]
    assert parts.present[:, 2].tolist() == [1, 0, 1]
    assert parts.present[:, 3].tolist() == [1, 0, 0]  # 2 / 0.0 -> None -> not present
    assert parts.values[0, 3] == np.float32(0.25)


def test_tile_keys_follow_the_shared_rule() -> None:
    from featureline.online.feast_format import redis_key
    from featureline.online.tiles import tile_key_for

    plan = _plan([f"stats:{f}" for f in REPO.views["stats"].feature_names])
    prepared = prepare(plan, {"user_id": [7, -3]})
    for user in (7, -3):
        feast_key = redis_key("unit", ["user_id"], ["int64"], [user])
        for tile_s in REPO.views["stats"].tile_sizes_s():
            key = tile_key_for("unit", "stats", tile_s, feast_key)
            assert b"$%d\r\n%s\r\n" % (len(key), key) in b"".join(prepared.commands)
            assert key in prepared.command_keys  # what the near cache files the reply under
